"""A simulated city day with Hangzhou's shape, as gate outbox rows: what ``citypass bench city`` ingests.

The day is a list of *units* — (kind of place, site, local hour) with how many visits or rides start there
then — drawn from hourly profiles: metro rides with morning and evening peaks (a tap-in at one station, a
tap-out at another 5–55 minutes later), bus taps over the whole day with flatter peaks, scenic-spot visits in
the afternoon (entry, exit 1–4 hours later) and museum visits in hourly reservation slots. Shares of the day's
taps: metro 70 %, bus 22 %, scenic 6 %, museum 2 %; about 1 % of taps are refusals (revoked, expired codes),
0.5 % of admissions are annulled by their gate (the barrier opened, nobody passed).

Every row is an outbox row exactly as a gate uploads it (event id, tap id, kind, the body as JSON text with
its keys sorted, created_at), ids UUID-shaped like a gate's. Units are dealt to workers round robin; each
worker makes its units' rows (seeded: the same day every time) and hands them over per device, as a gate's
batch, to whoever stores them. A metro ride's tap-out belongs to another station's gate than its tap-in: the
worker that made the ride uploads both, as the shared subscription would hand any gate's batch to any worker.

    >>> day = CityDay(10_000, day_start=1_800_000_000 - 1_800_000_000 % 86_400 - 8 * 3600)
    >>> sum(u.taps for u in day.units) >= 10_000 * 0.95, len(day.gates()) > 500
    (True, True)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

HOUR = 3600
DAY = 86_400
ANNUAL, RESERVATION, TRANSIT = 1, 2, 3

#: Relative weight of each local hour 0..23.
METRO_HOURS = (1, .3, .1, .1, .2, 1.5, 5, 12, 14, 8, 5, 5, 5.5, 5, 5, 6, 8, 13, 14, 8, 5, 4, 3, 2)
BUS_HOURS = (.5, .1, .1, .1, .3, 2, 5, 9, 9, 7, 6, 6, 6, 6, 6, 7, 8, 9, 9, 7, 5, 4, 2, 1)
SCENIC_HOURS = (0, 0, 0, 0, 0, 0, .5, 2, 4, 6, 7, 8, 9, 11, 12, 11, 9, 6, 3, 2, 1, .5, 0, 0)
MUSEUM_HOURS = (0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 10, 10, 8, 10, 10, 10, 8, 4, 0, 0, 0, 0, 0, 0)

#: (kind, first site number, sites, gates per site and direction, share of the day's taps, taps per visit)
PLACES = (
    ("scenic", 1, 3, 6, 0.06, 2),
    ("museum", 4, 2, 2, 0.02, 2),
    ("metro", 6, 40, 4, 0.70, 2),
    ("bus", 46, 20, 10, 0.22, 1),
)
PROFILES = {"metro": METRO_HOURS, "bus": BUS_HOURS, "scenic": SCENIC_HOURS, "museum": MUSEUM_HOURS}

_BODY = ('{{"at":{at},"credential_id":"{cred}","decision":"{decision}","direction":"{direction}",'
         '"event_id":"{event}","flags":{flags},"gate_id":"{gate}","kind":{kind},"persons":{persons},'
         '"presentation_id":null,"product":{product},"reason":{reason},"site":{site},'
         '"stages":{{"decided":{at}.0}},"tap_id":"{tap}"}}')


class OutboxRow(NamedTuple):
    """One uploaded outbox event (what :func:`citypass.issuer.ingest.ingest` takes)."""

    event_id: str
    tap_id: str
    kind: str
    body: str
    created_at: int


@dataclass(frozen=True)
class Unit:
    """Visits (or rides, or bus taps) that start at ``site`` in local ``hour``: ``visits`` of them, ``taps`` taps."""

    index: int
    place: str
    site: int
    hour: int
    visits: int

    @property
    def taps(self) -> int:
        return self.visits * (1 if self.place == "bus" else 2)


@dataclass(frozen=True)
class Gate:
    id: str
    site: int
    direction: str


class CityDay:
    """``taps`` taps (about) over the local day starting at ``day_start`` (Unix s, a local midnight)."""

    def __init__(self, taps: int, day_start: int, seed: int = 19) -> None:
        self.taps = taps
        self.day_start = day_start
        self.seed = seed
        self.units = self._units()

    def _units(self) -> list[Unit]:
        units: list[Unit] = []
        for place, first, sites, _gates, share, per_visit in PLACES:
            profile = PROFILES[place]
            visits = self.taps * share / per_visit
            # Sites differ in size: the first of each kind is the busiest (West Lake, a hub station).
            site_weights = [1 / (1 + i * 0.15) for i in range(sites)]
            scale = visits / (sum(profile) * sum(site_weights))
            for hour, weight in enumerate(profile):
                for i, site_weight in enumerate(site_weights):
                    count = round(scale * weight * site_weight)
                    if count:
                        units.append(Unit(len(units), place, first + i, hour, count))
        return units

    def gates(self) -> list[Gate]:
        out = []
        for place, first, sites, gates, _share, _per in PLACES:
            directions = ("entry",) if place == "bus" else ("entry", "exit")
            for site in range(first, first + sites):
                for direction in directions:
                    out += [Gate(_gate_id(place, site, direction, k), site, direction) for k in range(gates)]
        return out

    def share(self, worker: int, workers: int) -> list[Unit]:
        """The units worker ``worker`` of ``workers`` makes, in hour order."""
        return sorted(self.units[worker::workers], key=lambda u: (u.hour, u.index))

    def rows(self, unit: Unit) -> Iterator[tuple[str, OutboxRow]]:
        """(device id, outbox row) for every tap of ``unit`` (and its annulments), seeded by the unit."""
        rng = random.Random(self.seed * 1_000_003 + unit.index)
        start = self.day_start + unit.hour * HOUR
        place, site = unit.place, unit.site
        counter = 0

        def tap(gate: str, site: int, direction: str, kind: str, at: int, cred: str, product: int,
                persons: int = 1, refused: str | None = None) -> Iterator[tuple[str, OutboxRow]]:
            # A metro exit gate never saw the tap-in (another station's gate did): it flags the tap-out, as the
            # gate's decision does (citypass.gate.decision), and the issuer pairs the ride across stations.
            flags = '["not_tapped_in"]' if kind == "tap_out" and not refused else "[]"
            nonlocal counter
            counter += 1
            base = (self.seed << 112) | (unit.index << 40) | (counter << 2)
            tap_id, event_id = _uuid(base), _uuid(base | 1)
            # A refusal admits nobody: no kind, no persons (what the gate records; anything else is quarantined).
            body = _BODY.format(at=at, cred=cred, decision="deny" if refused else "allow", direction=direction,
                                event=event_id, flags=flags, gate=gate, kind="null" if refused else f'"{kind}"',
                                persons=0 if refused else persons, product=product,
                                reason=f'"{refused}"' if refused else "null", site=site, tap=tap_id)
            yield gate, OutboxRow(event_id, tap_id, "tap", body, at)
            if refused is None and rng.random() < 0.005:  # the barrier opened, nobody passed
                annul = _uuid(base | 2)
                yield gate, OutboxRow(annul, tap_id, "annul", f'{{"at":{at + 5},"persons_unused":{persons}}}', at + 5)

        for _ in range(unit.visits):
            at = start + rng.randrange(HOUR)
            cred = f"{rng.getrandbits(64):016x}"
            refused = rng.choice(("revoked", "expired")) if rng.random() < 0.01 else None
            if place == "bus":
                yield from tap(_gate_id(place, site, "entry", rng.randrange(10)), site, "entry", "tap", at, cred,
                               TRANSIT, refused=refused)
                continue
            if place == "metro":
                gates, product, persons = 4, TRANSIT, 1
                kinds = ("tap_in", "tap_out")
                other = 6 + rng.randrange(40)
                out_site = other if other != site else 6 + (site - 6 + 1) % 40
                out_at = at + 300 + rng.randrange(3000)
            else:
                gates = 6 if place == "scenic" else 2
                product = ANNUAL if place == "scenic" else RESERVATION
                persons = 1 if place == "scenic" else 1 + rng.randrange(4)
                kinds = ("entry", "exit")
                out_site = site
                out_at = at + HOUR + rng.randrange(3 * HOUR) if place == "scenic" else at + HOUR + rng.randrange(HOUR)
            yield from tap(_gate_id(place, site, "entry", rng.randrange(gates)), site, "entry", kinds[0], at, cred,
                           product, persons, refused)
            if refused is None:
                yield from tap(_gate_id(place, out_site, "exit", rng.randrange(gates)), out_site, "exit", kinds[1],
                               out_at, cred, product, persons)


def _gate_id(place: str, site: int, direction: str, k: int) -> str:
    return f"{place}-{site}-{direction}-{k}"


def _uuid(value: int) -> str:
    text = f"{value & (2**128 - 1):032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
