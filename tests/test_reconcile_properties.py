"""Exactly-once, as a property: shuffling and duplicating the taps never changes what reconciliation says.

The random taps come from small pools (a few credentials, sites, gates, tap ids and minutes), so that
parties collide, passes travel, journeys pair and — because tap ids repeat — different copies of one
tap id meet, which :func:`citypass.issuer.reconcile.unique_taps` must resolve the same way in every order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from citypass.issuer.reconcile import FareTable, TapRecord, find_incidents, journeys, occupancy
from tests.helpers.reconcile import MINUTE, hexid, local

T = local(10)
FARES = FareTable(default_fare=300, pairs={(1, 2): 400}, zones={1: 1, 3: 2}, base=200, per_zone=100)
REASONS = ["passback", "bad_signature", "unknown_key", "revoked", "replayed_presentation", "expired", "already_used",
           "clock_untrusted"]
FLAGS = ["passback", "clock_untrusted", "ledger_stale", "not_tapped_in"]
KIND_DIRECTION = {"entry": "entry", "exit": "exit", "tap_in": "entry", "tap_out": "exit", "tap": "entry"}


def party_of(credential_id: str) -> int | None:
    return {hexid("c0"): 1, hexid("c1"): 2}.get(credential_id)


@st.composite
def tap_records(draw: st.DrawFn) -> TapRecord:
    allowed = draw(st.booleans())
    common: dict[str, Any] = dict(
        tap_id=f"t{draw(st.integers(0, 40))}", gate_id=draw(st.sampled_from(["g1", "g2", "g3"])),
        site=draw(st.integers(1, 3)), credential_id=hexid(f"c{draw(st.integers(0, 3))}"),
        product=draw(st.integers(1, 4)), presentation_id=None, at=T + draw(st.integers(-30, 600)) * MINUTE,
        received_at=draw(st.none() | st.integers(0, 3)),
        flags=tuple(draw(st.lists(st.sampled_from(FLAGS), max_size=2, unique=True))),
    )
    if not allowed:
        return TapRecord(**common, direction="entry", decision="deny", reason=draw(st.sampled_from(REASONS)),
                         persons=0, kind=None)
    kind = draw(st.sampled_from(list(KIND_DIRECTION)))
    persons = draw(st.integers(1, 3))
    return TapRecord(**common, direction=KIND_DIRECTION[kind], decision="allow", reason=None, persons=persons,
                     kind=kind, annulled=draw(st.integers(0, persons)))


scenarios = st.lists(tap_records(), max_size=30).flatmap(
    lambda taps: st.tuples(st.just(taps), st.permutations(taps + taps[: len(taps) // 2]))
)


@settings(max_examples=150, deadline=None)
@given(scenarios)
def test_shuffling_and_duplicating_never_changes_incidents(scenario: tuple[list[TapRecord], list[TapRecord]]) -> None:
    taps, shuffled = scenario
    found = find_incidents(taps, party_of)
    assert find_incidents(shuffled, party_of) == found
    assert [i.incident_id for i in find_incidents(shuffled, party_of)] == [i.incident_id for i in found]
    assert len({i.incident_id for i in found}) == len(found)  # no incident is reported twice
    assert [i.first_at for i in found] == sorted(i.first_at for i in found)


@settings(max_examples=150, deadline=None)
@given(scenarios, st.integers(1, 3), st.integers(-60, 660))
def test_shuffling_and_duplicating_never_changes_occupancy(
    scenario: tuple[list[TapRecord], list[TapRecord]], site: int, minutes: int
) -> None:
    taps, shuffled = scenario
    occ = occupancy(taps, site, T + minutes * MINUTE, hours=12)
    assert occupancy(shuffled, site, T + minutes * MINUTE, hours=12) == occ
    assert occ.inside >= 0 and occ.series[-1].inside_at_end == occ.inside


@settings(max_examples=150, deadline=None)
@given(scenarios, st.integers(0, 900))
def test_shuffling_and_duplicating_never_changes_journeys(
    scenario: tuple[list[TapRecord], list[TapRecord]], minutes: int
) -> None:
    taps, shuffled = scenario
    rides = journeys(taps, FARES, now=T + minutes * MINUTE)
    assert journeys(shuffled, FARES, now=T + minutes * MINUTE) == rides
    assert all((j.fare is not None) == j.complete and (j.flag is None or not j.complete) for j in rides)
    used = [i for j in rides for i in (j.tap_in_id, j.tap_out_id) if i is not None]
    assert len(used) == len(set(used))  # every tap is in at most one journey
