"""A synthetic city day in an issuer's store, for the console's benchmark and its screenshots.

Sites of every kind with capacities, two gates per site (entry and exit) with health reports, tour groups
registered with itineraries (their passes really signed), and taps shaped like gates' outbox rows — annual
passes entering and leaving scenic spots and museums, metro rides, group admissions at their stops, and the
refusals an operator looks at (forged, revoked, replayed, passback, a reservation used twice, a rider with no
tap-in) — all taken in through :func:`citypass.issuer.ingest.ingest`, the path gates' uploads take, so the
incidents, tallies and group positions are the ones ingest maintains.

    >>> city = populate(issuer, now=1_800_000_000, sites=20, taps=5_000, groups=10)   # doctest: +SKIP
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from citypass.credential.sites import SiteKind, SiteSettings
from citypass.issuer import groups as tour_groups
from citypass.issuer.ingest import ingest
from citypass.issuer.records import Device, DeviceHealth, TapEvent
from citypass.issuer.service import Issuer

BATCH = 500
DAY = 86_400
KINDS = (SiteKind.SCENIC, SiteKind.SCENIC, SiteKind.MUSEUM, SiteKind.METRO)
TITLES = ("西湖", "灵隐寺", "浙江省博物馆", "地铁站", "雷峰塔", "六和塔", "宋城", "西溪湿地")
AGENCIES = ("西湖国际旅行社", "钱塘旅行社", "Hangzhou Tours", "江南之旅", "Silk Road Travel")
REFUSALS = ("bad_signature", "revoked", "replayed_presentation", "expired", "passback", "unknown_key")


@dataclass
class SampleCity:
    """What :func:`populate` made: site numbers, gate ids, group ids, and the taps it ingested."""

    sites: list[int] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    taps: int = 0
    ingest_seconds: float = 0.0


def add_sites(issuer: Issuer, count: int, now: int, rng: random.Random) -> list[SiteSettings]:
    """``count`` sites (kinds mixed, capacities 300..5000, scenic and museum hours 08:00–18:00)."""
    made = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        number = issuer.store.next_site_number()
        transit = kind == SiteKind.METRO
        settings = SiteSettings(number=number, name=f"{kind.value.replace('_', '-')}-{number:03d}", kind=kind,
                                title=f"{TITLES[i % len(TITLES)]} {number}",
                                capacity=None if transit else rng.randrange(300, 5000, 50),
                                opens=None if transit else "08:00", closes=None if transit else "18:00")
        issuer.add_site(settings, now)
        made.append(settings)
    return made


def add_gates(issuer: Issuer, sites: list[SiteSettings], now: int, rng: random.Random) -> list[str]:
    """An entry and an exit gate per site, with a health report each (a few stale or behind the ledger)."""
    gates = []
    seq = issuer.store.ledger_seq()
    for site in sites:
        for direction in ("entry", "exit"):
            gate_id = f"{site.name}-{'in' if direction == 'entry' else 'out'}"
            issuer.store.add_device(Device(gate_id, site.number, direction, site.title, "enrolled", now - DAY))
            stale = rng.random() < 0.03
            issuer.store.record_health(DeviceHealth(
                gate_id, last_seen=now - (3600 if stale else rng.randrange(0, 60)),
                ledger_seq=seq - (rng.randrange(1, 5) if rng.random() < 0.05 else 0),
                outbox_backlog=rng.randrange(0, 400) if stale else rng.randrange(0, 3),
                clock_offset_s=round(rng.uniform(-0.8, 0.8), 2), reported_at=now,
                details={"version": "0.1.0", "link": "offline" if stale else "online"}))
            gates.append(gate_id)
    return gates


def add_groups(issuer: Issuer, sites: list[SiteSettings], count: int, now: int,
               rng: random.Random) -> list[tour_groups.Registration]:
    """``count`` tour groups, each with 2–3 stops at scenic spots and museums during the day."""
    venues = [s for s in sites if s.kind in (SiteKind.SCENIC, SiteKind.MUSEUM)]
    start_of_day = now - now % DAY - 8 * 3600 + 8 * 3600  # 08:00 local (UTC+8) is 00:00 UTC
    made = []
    for i in range(count):
        first = start_of_day + rng.randrange(0, 8) * 1800
        stops = []
        for n, site in enumerate(rng.sample(venues, rng.choice((2, 2, 3)))):
            begin = first + n * 2 * 3600
            stops.append(tour_groups.Stop(site.number, begin, begin + 5400))
        price = rng.choice((18_000, 25_000, 9_900, 3_000)) if i % 7 else 2_000
        made.append(tour_groups.register(issuer, agency=AGENCIES[i % len(AGENCIES)], guide=f"导游 {i:04d}",
                                         contact=f"+86 13{i % 10}{i:08d}"[:16], party=rng.randrange(8, 40),
                                         price_fen=price, stops=stops, now=now - 2 * DAY))
    return made


def _body(gate: str, site: int, direction: str, decision: str, reason: str | None, credential: str | None,
          product: int | None, persons: int, kind: str | None, at: int) -> dict[str, Any]:
    return {"gate_id": gate, "site": site, "direction": direction, "decision": decision, "reason": reason,
            "flags": [], "credential_id": credential, "product": product, "persons": persons, "kind": kind,
            "presentation_id": None, "at": at, "stages": {"decided": float(at)}}


def synthetic_taps(sites: list[SiteSettings], registrations: list[tour_groups.Registration], count: int, now: int,
                   rng: random.Random) -> Iterator[TapEvent]:
    """``count`` taps over the day up to ``now``, in time order (group admissions at their planned stops)."""
    day_start = now - now % DAY  # 08:00 local
    span = max(1, now - day_start)
    venues = [s for s in sites if s.kind != SiteKind.METRO]
    metro = [s for s in sites if s.kind == SiteKind.METRO] or venues
    events: list[tuple[int, dict[str, Any]]] = []
    for reg in registrations:
        for stop in reg.group.stops:
            at = stop.planned_from + rng.randrange(-600, 1800)
            if at < now and rng.random() < 0.9:
                site = next(s for s in sites if s.number == stop.site)
                events.append((at, _body(f"{site.name}-in", site.number, "entry", "allow", None, stop.credential_id,
                                         4, reg.group.party, "entry", at)))
    def gate(site: SiteSettings, direction: str) -> str:
        return f"{site.name}-{'in' if direction == 'entry' else 'out'}"

    def add(event: tuple[int, dict[str, Any]]) -> None:
        if event[0] <= now:  # a visit not over yet: its exit is still to come
            events.append(event)

    while len(events) < count:  # one visitor or rider at a time: their taps in order, as at real gates
        at = day_start + int(span * rng.random() ** 0.7)
        credential = f"{rng.getrandbits(64):016x}"
        roll = rng.random()
        if roll < 0.25:  # a metro ride: in at one station, out at another (one in fifty never tapped in)
            a, b = rng.sample(metro, 2) if len(metro) > 1 else (metro[0], metro[0])
            if rng.random() > 0.02:
                add((at, _body(gate(a, "entry"), a.number, "entry", "allow", None, credential, 3, 1,
                                         "tap_in", at)))
            out = at + rng.randrange(600, 2700)
            add((out, _body(gate(b, "exit"), b.number, "exit", "allow", None, credential, 3, 1,
                                      "tap_out", out)))
        elif roll < 0.97:  # an annual-pass visit, sometimes two sites in a day
            for _ in range(1 if rng.random() < 0.8 else 2):
                site = rng.choice(venues)
                add((at, _body(gate(site, "entry"), site.number, "entry", "allow", None, credential, 1, 1,
                                         "entry", at)))
                if rng.random() < 0.85:
                    at += rng.randrange(1800, 3 * 3600)
                    add((at, _body(gate(site, "exit"), site.number, "exit", "allow", None, credential,
                                             1, 1, "exit", at)))
                at += rng.randrange(1200, 3600)
        else:  # what an operator looks at: a refused code
            site = rng.choice(venues)
            reason = rng.choice(REFUSALS)
            add((at, _body(gate(site, "entry"), site.number, "entry", "deny", reason,
                                     None if reason == "bad_signature" else credential, 1, 0, None, at)))
    events.sort(key=lambda e: e[0])
    for i, (at, body) in enumerate(events[:count]):
        # time-ordered like the gates' UUIDv7 ids (milliseconds first), so the id indexes grow at their end
        tap_id = str(uuid.UUID(int=(at * 1000 << 80) | (i << 32) | rng.getrandbits(32)))
        yield TapEvent(f"{tap_id}-e", tap_id, "tap", body, at)


def ingest_all(issuer: Issuer, events: Iterator[TapEvent], received_at: Callable[[TapEvent], int],
               progress: Callable[[int], None] | None = None) -> int:
    """Take ``events`` in through ingest, in batches of :data:`BATCH`; how many taps were stored."""
    stored = 0
    batch: list[TapEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) == BATCH:
            stored += ingest(issuer.store, batch, None, received_at(batch[-1])).new_taps
            batch = []
            if progress is not None:
                progress(stored)
    if batch:
        stored += ingest(issuer.store, batch, None, received_at(batch[-1])).new_taps
    return stored


def populate(issuer: Issuer, *, now: int, sites: int, taps: int, groups: int, seed: int = 16,
             progress: Callable[[int], None] | None = None) -> SampleCity:
    """Fill ``issuer``'s store with a city day (see the module docstring)."""
    import time

    rng = random.Random(seed)
    made = add_sites(issuer, sites, now - 3 * DAY, rng)
    city = SampleCity(sites=[s.number for s in made], gates=add_gates(issuer, made, now, rng))
    registrations = add_groups(issuer, made, groups, now, rng)
    city.groups = [r.group.id for r in registrations]
    started = time.perf_counter()
    city.taps = ingest_all(issuer, synthetic_taps(made, registrations, taps, now, rng),
                           lambda e: min(now, e.created_at + 30), progress)
    city.ingest_seconds = time.perf_counter() - started
    return city
