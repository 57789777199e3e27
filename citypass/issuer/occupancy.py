"""Occupancy: how many people are inside a site now, and how that went hour by hour.

Each gate keeps its own count for its capacity check; the issuer's count is the site-wide one, built
from every gate's taps. The arithmetic is the gate's (``citypass.gate.ledger.taps.add_occupancy``):

* an allowed ``entry`` adds its persons minus those annulled (the barrier opened, nobody passed);
* an allowed ``exit`` removes its persons minus those annulled;
* the count never goes below zero: an exit whose entry the issuer has not seen (or that happened
  before the site's history began) is not a person owed. The clamp is applied in time order, so the
  result depends on ``(at, tap_id)`` order only, never on arrival order.

Taps with ``at`` after ``now`` are ignored (a gate whose clock runs ahead cannot fill the future).
Local time matters for people: hours and "today" start at local boundaries, given as a UTC offset
(480 = UTC+8, Hangzhou), so a site can ask "entries today" at 00:30 and get the last half hour only.

    >>> occ = occupancy(taps, site=3, now=1_800_000_000)             # doctest: +SKIP
    >>> occ.inside, occ.entries_today, occ.series[-1].inside_at_end  # doctest: +SKIP
    (412, 2380, 412)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from citypass.errors import InvalidInput
from citypass.issuer.tap_records import ENTRY, EXIT, TapRecord, unique_taps

HOUR = 3600
DAY = 24 * HOUR
MAX_HOURS = 31 * 24


@dataclass(frozen=True)
class OccupancyPoint:
    """One local hour starting at ``hour_start`` (Unix s): persons in and out during it, and inside at
    its end (for the current hour: now)."""

    hour_start: int
    entries: int
    exits: int
    inside_at_end: int


@dataclass(frozen=True)
class Occupancy:
    """A site's occupancy at ``at``: ``inside`` now, ``entries_today`` since local midnight, and an hourly
    ``series`` oldest first whose last point is the current (partial) hour."""

    site: int
    at: int
    inside: int
    entries_today: int
    series: tuple[OccupancyPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "site": self.site, "at": self.at, "inside": self.inside, "entries_today": self.entries_today,
            "series": [vars(p) for p in self.series],
        }


def local_hour_start(at: int, utc_offset_minutes: int) -> int:
    """The Unix time at which the local hour containing ``at`` began (offsets like +05:30 included)."""
    offset = utc_offset_minutes * 60
    return (at + offset) // HOUR * HOUR - offset


def local_midnight(at: int, utc_offset_minutes: int) -> int:
    """The Unix time of the local midnight that began the day containing ``at``."""
    offset = utc_offset_minutes * 60
    return (at + offset) // DAY * DAY - offset


def _frame(now: int, hours: int, utc_offset_minutes: int) -> tuple[list[int], int]:
    """The series' local hour starts, oldest first, and the local midnight of ``now`` (arguments checked)."""
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidInput(f"hours must be 1..{MAX_HOURS}, not {hours}")
    if not -720 <= utc_offset_minutes <= 840:
        raise InvalidInput(f"utc_offset_minutes must be -720..840, not {utc_offset_minutes}")
    current = local_hour_start(now, utc_offset_minutes)
    return [current - HOUR * (hours - 1 - i) for i in range(hours)], local_midnight(now, utc_offset_minutes)


def occupancy(taps: Iterable[TapRecord], site: int, now: int, *, hours: int = 24,
              utc_offset_minutes: int = 480) -> Occupancy:
    """Occupancy of ``site`` at ``now`` from ``taps`` (any order, duplicates allowed), with ``hours``
    hourly points ending with the current local hour."""
    starts, midnight = _frame(now, hours, utc_offset_minutes)

    moves = [t for t in unique_taps(taps)
             if t.site == site and t.at <= now and t.allowed and t.kind in (ENTRY, EXIT) and t.net_persons > 0]
    inside = entries_today = 0
    entries = [0] * hours
    exits = [0] * hours
    inside_at_end = [0] * hours
    point = 0  # the first series hour not yet closed
    for tap in moves:
        while point < hours and tap.at >= starts[point] + HOUR:
            inside_at_end[point] = inside
            point += 1
        slot = point if point < hours and tap.at >= starts[point] else None  # None: before the series
        if tap.kind == ENTRY:
            inside += tap.net_persons
            entries_today += tap.net_persons if tap.at >= midnight else 0
            if slot is not None:
                entries[slot] += tap.net_persons
        else:
            inside = max(0, inside - tap.net_persons)
            if slot is not None:
                exits[slot] += tap.net_persons
    for rest in range(point, hours):
        inside_at_end[rest] = inside
    series = tuple(OccupancyPoint(starts[i], entries[i], exits[i], inside_at_end[i]) for i in range(hours))
    return Occupancy(site=site, at=now, inside=inside, entries_today=entries_today, series=series)


def occupancy_from_quarters(tallies: Iterable[Any], site: int, now: int, *, hours: int = 24,
                            utc_offset_minutes: int = 480) -> Occupancy:
    """:func:`occupancy` from the quarter-hour tallies ingest keeps (``QuarterTally``: ``site``, ``quarter``,
    ``entries``, ``exits``, annulled persons already left out) instead of the taps: what ``/v1/sites/{id}/occupancy``
    reads, so a report costs a few hundred rows however many taps a day brings (a city's busiest scenic site: 4 s
    read from its taps, milliseconds from its tallies). The clamp at zero is applied quarter by quarter, as the
    console's city view does — within a quarter, its entries before its exits — so an exit whose entry came before
    the counting began is forgiven at the quarter, not at the tap; every other figure is the same sum.

        >>> from types import SimpleNamespace as T
        >>> q = [T(site=3, quarter=1_799_996_400, entries=5, exits=0), T(site=3, quarter=1_800_000_000, entries=2,
        ...      exits=4), T(site=4, quarter=1_800_000_000, entries=9, exits=0)]
        >>> occ = occupancy_from_quarters(q, 3, 1_800_000_000, hours=2)
        >>> occ.inside, occ.entries_today, [(p.entries, p.exits, p.inside_at_end) for p in occ.series]
        (3, 7, [(5, 0, 5), (2, 4, 3)])
    """
    starts, midnight = _frame(now, hours, utc_offset_minutes)
    inside = entries_today = 0
    entries = [0] * hours
    exits = [0] * hours
    inside_at_end = [0] * hours
    point = 0
    for tally in sorted((t for t in tallies if t.site == site and t.quarter <= now), key=lambda t: t.quarter):
        while point < hours and tally.quarter >= starts[point] + HOUR:
            inside_at_end[point] = inside
            point += 1
        inside = max(0, inside + tally.entries - tally.exits)
        entries_today += tally.entries if tally.quarter >= midnight else 0
        if point < hours and tally.quarter >= starts[point]:
            entries[point] += tally.entries
            exits[point] += tally.exits
    for rest in range(point, hours):
        inside_at_end[rest] = inside
    series = tuple(OccupancyPoint(starts[i], entries[i], exits[i], inside_at_end[i]) for i in range(hours))
    return Occupancy(site=site, at=now, inside=inside, entries_today=entries_today, series=series)

