"""Journeys kept at ingest (:func:`citypass.issuer.journeys.legs`, :func:`window_journeys`) give what
:func:`citypass.issuer.journeys.journeys` gives for the same taps, for any report window and clock."""

from __future__ import annotations

import random

import pytest

from citypass.issuer.journeys import FareTable, Journey, Leg, journeys, legs, window_journeys
from citypass.issuer.tap_records import TapRecord
from tests.helpers.reconcile import TRANSIT, hexid, tap

FARES = FareTable(default_fare=300, pairs={(5, 6): 400}, zones={5: 1, 7: 3}, base=200, per_zone=100)
LIMIT = 4 * 3600
CATEGORIES = {hexid("c1"): "senior", hexid("c2"): "student"}


def old_report(taps: list[TapRecord], since: int, until: int, now: int) -> list[Journey]:
    """What ``/v1/journeys`` computed before journeys were kept: the window's taps read, then paired."""
    window = [t for t in taps if since - LIMIT <= t.at < until]
    rides = journeys(window, FARES, now=min(until, now), max_journey_s=LIMIT, category_of=CATEGORIES.get)
    return [j for j in rides if max(j.started_at or 0, j.ended_at or 0) >= since]


def kept_report(kept: list[Leg], since: int, until: int, now: int) -> list[Journey]:
    """The same from the legs kept at ingest, read as the store reads them (by start, from ``since − LIMIT``)."""
    read = [leg for leg in kept if since - LIMIT <= leg.at < until]
    return window_journeys(read, FARES, since=since, until=until, now=min(until, now), max_journey_s=LIMIT,
                           category_of=CATEGORIES.get)


def random_taps(rng: random.Random, n: int) -> list[TapRecord]:
    out = []
    for i in range(n):
        kind = rng.choice(["tap_in", "tap_in", "tap_out", "tap_out", "tap"])
        out.append(tap(f"t{i:03d}", kind=kind, at=rng.randrange(0, 3 * 86_400, 600), site=rng.choice([5, 6, 7]),
                       gate="g", cred=rng.choice(["c1", "c2", "c3"]), product=TRANSIT,
                       annulled=1 if rng.random() < 0.05 else 0))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_kept_legs_answer_every_window_as_the_taps_did(seed: int) -> None:
    rng = random.Random(seed)
    taps = random_taps(rng, rng.randrange(1, 60))
    kept = legs(taps, max_journey_s=LIMIT)
    for _ in range(25):
        since = rng.randrange(-86_400, 3 * 86_400, 300)
        until = since + rng.randrange(1, 2 * 86_400, 300)
        now = rng.randrange(since, since + 3 * 86_400, 300)
        assert kept_report(kept, since, until, now) == old_report(taps, since, until, now), (since, until, now)


def test_a_whole_day_is_the_same_list_whatever_the_order_taps_came_in() -> None:
    rng = random.Random(7)
    taps = random_taps(rng, 80)
    shuffled = list(taps) * 2
    rng.shuffle(shuffled)
    assert legs(shuffled, max_journey_s=LIMIT) == legs(taps, max_journey_s=LIMIT)
    assert kept_report(legs(taps), 0, 86_400, 10**9) == old_report(taps, 0, 86_400, 10**9)
