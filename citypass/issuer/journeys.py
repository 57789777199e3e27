"""Journeys and fares: metro tap-ins paired with tap-outs, and single-tap bus and water-bus rides.

A metro gate only knows its own station: a rider who taps in at station A and out at station B leaves
a ``tap_in`` in A's ledger and a ``tap_out`` (flagged ``not_tapped_in`` when B never heard of the tap-in)
in B's. Pairing is the issuer's job, per credential, in ``(at, tap_id)`` order, so it does not matter
which station's taps arrived first, or that the ride crossed midnight:

* a ``tap_in`` followed by a ``tap_out`` less than ``max_journey_s`` later is one complete journey,
  priced by :meth:`FareTable.fare` (the gate's ``not_tapped_in`` flag is its local view and is ignored);
* a ``tap_in`` followed by another ``tap_in``, by a too-late ``tap_out``, or by nothing for
  ``max_journey_s`` is a journey flagged ``no_tap_out``;
* a ``tap_out`` with no open ``tap_in`` before it is a journey flagged ``no_tap_in``;
* a ``tap_in`` younger than ``max_journey_s`` at ``now`` with nothing after it is *in progress*:
  ``complete`` False and ``flag`` None;
* a bus or water-bus ``tap`` is a complete journey on its own, from and to its site.

Incomplete journeys have no fare: what to charge for them is a policy the operator applies on top.
The limit matches the gate's (``GatePolicy.metro_max_journey_minutes``, 240): a gap of exactly the
limit is already too long, on the gate and here.

Fares are in fen. A fare table is looked up in order: an explicit pair (either direction when only one
is given), else zones (``base + per_zone × |zone difference|`` when both sites have a zone), else the
default::

    >>> fares = FareTable.from_dict({"default_fare": 300, "pairs": [[1, 2, 400]], "zones": {"5": 1, "6": 3},
    ...                              "base": 200, "per_zone": 100})
    >>> fares.fare(2, 1), fares.fare(5, 6), fares.fare(1, 9)
    (400, 400, 300)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from citypass.errors import InvalidInput
from citypass.issuer.tap_records import TAP, TAP_IN, TAP_OUT, TapRecord, unique_taps

_FARE_KEYS = frozenset({"default_fare", "pairs", "zones", "base", "per_zone"})


@dataclass(frozen=True)
class FareTable:
    """How much a ride costs, in fen. See the module docstring for the lookup order."""

    default_fare: int
    pairs: Mapping[tuple[int, int], int] = field(default_factory=dict)
    zones: Mapping[int, int] = field(default_factory=dict)
    base: int = 0
    per_zone: int = 0

    def __post_init__(self) -> None:
        for name in ("default_fare", "base", "per_zone"):
            _check_amount(name, getattr(self, name))
        for key, fare in self.pairs.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(_is_site(s) for s in key)):
                raise InvalidInput(f"fare pair {key!r} must be two site numbers")
            _check_amount(f"fare {key[0]}->{key[1]}", fare)
        for site, zone in self.zones.items():
            if not _is_site(site) or not _is_site(zone):
                raise InvalidInput(f"zone entry {site!r}: {zone!r} must map a site number to a zone number >= 0")

    def fare(self, from_site: int, to_site: int) -> int:
        if (from_site, to_site) in self.pairs:
            return self.pairs[from_site, to_site]
        if (to_site, from_site) in self.pairs:
            return self.pairs[to_site, from_site]
        if from_site in self.zones and to_site in self.zones:
            return self.base + self.per_zone * abs(self.zones[from_site] - self.zones[to_site])
        return self.default_fare

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FareTable:
        """Read the JSON-friendly form (see :meth:`to_dict`). Unknown keys, negative amounts, non-integer
        values and a pair given twice raise ValueError."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a fare table must be an object, not {type(data).__name__}")
        unknown = sorted(str(key) for key in set(data) - _FARE_KEYS)
        if unknown:
            raise InvalidInput(f"unknown fare table key(s): {', '.join(unknown)}")
        if "default_fare" not in data:
            raise InvalidInput("a fare table needs default_fare")
        raw_pairs = data.get("pairs", [])
        if not isinstance(raw_pairs, list | tuple):
            raise InvalidInput("pairs must be a list of [from_site, to_site, fare]")
        pairs: dict[tuple[int, int], int] = {}
        for row in raw_pairs:
            if not isinstance(row, list | tuple) or len(row) != 3 or not all(_is_int(v) for v in row):
                raise InvalidInput(f"fare pair {row!r} must be [from_site, to_site, fare] of integers")
            if (row[0], row[1]) in pairs:
                raise InvalidInput(f"fare pair {row[0]}->{row[1]} is given twice")
            pairs[row[0], row[1]] = row[2]
        raw_zones = data.get("zones", {})
        if not isinstance(raw_zones, Mapping):
            raise InvalidInput('zones must be an object: {"site": zone}')
        zones: dict[int, int] = {}
        for site, zone in raw_zones.items():
            number = _site_key(site)
            if number in zones:
                raise InvalidInput(f"site {number} has two zones")
            zones[number] = zone
        return cls(default_fare=data["default_fare"], pairs=pairs, zones=zones, base=data.get("base", 0),
                   per_zone=data.get("per_zone", 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, sorted so that equal tables serialise identically."""
        return {
            "default_fare": self.default_fare,
            "pairs": [[a, b, self.pairs[a, b]] for a, b in sorted(self.pairs)],
            "zones": {str(site): self.zones[site] for site in sorted(self.zones)},
            "base": self.base, "per_zone": self.per_zone,
        }


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_site(value: object) -> bool:
    return _is_int(value) and value >= 0


def _check_amount(name: str, value: object) -> None:
    if not _is_int(value) or value < 0:
        raise InvalidInput(f"{name} must be a whole, non-negative number of fen, not {value!r}")


def _site_key(key: object) -> int:
    if _is_int(key) and key >= 0:
        return key
    if isinstance(key, str) and key.isdigit() and key.isascii():
        return int(key)
    raise InvalidInput(f"zone key {key!r} must be a site number")


@dataclass(frozen=True)
class Journey:
    """One ride. Metro: ``tap_in_id``/``tap_out_id`` are the two taps (one is None when the journey is
    flagged); ``single_tap`` rides (bus, water bus) have ``tap_in_id`` only, and the same from/to site."""

    credential_id: str
    tap_in_id: str | None
    tap_out_id: str | None
    from_site: int | None
    to_site: int | None
    started_at: int | None
    ended_at: int | None
    fare: int | None
    complete: bool
    flag: str | None
    single_tap: bool = False
    #: the rider's concession category (senior, student) when the fare was a concession fare
    category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(vars(self))


def journeys(taps: Iterable[TapRecord], fares: FareTable, *, now: int, max_journey_s: int = 4 * 3600,
             category_of: Callable[[str], str | None] | None = None) -> list[Journey]:
    """Every journey in ``taps`` (any order, duplicates allowed), sorted by start (or end, for a
    ``no_tap_in``), then credential and tap ids. Only allowed taps with someone through the barrier
    count: a fully annulled tap-in never started a ride. ``category_of(credential_id)``: the rider's
    category (``resident``, ``senior``, ``student``; from the credential or the benefit card), whose
    :data:`CONCESSION` multiplier applies to the fare."""
    if max_journey_s <= 0:
        raise ValueError("max_journey_s must be positive")
    by_credential: dict[str, list[TapRecord]] = defaultdict(list)
    for tap in unique_taps(taps):
        if tap.allowed and tap.credential_id and tap.net_persons > 0 and tap.kind in (TAP_IN, TAP_OUT, TAP):
            by_credential[tap.credential_id].append(tap)
    found: list[Journey] = []
    for credential_id, rides in by_credential.items():
        paired = _pair(credential_id, rides, fares, now, max_journey_s)
        category = category_of(credential_id) if category_of is not None else None
        if category in CONCESSION and CONCESSION[category] != 1:
            share = CONCESSION[category]
            paired = [replace(j, fare=None if j.fare is None else round(j.fare * share), category=category)
                      for j in paired]
        found.extend(paired)
    return sorted(found, key=_journey_order)


#: Fare multiplier per rider category (concession fares, from the category on a transit credential): seniors
#: ride free, students at half fare, residents pay the table's fare.
CONCESSION: dict[str | None, float] = {"resident": 1.0, "senior": 0.0, "student": 0.5}


def _pair(credential_id: str, taps: list[TapRecord], fares: FareTable, now: int, limit: int) -> list[Journey]:
    """Walk one credential's taps in time order, keeping at most one open tap-in."""
    out: list[Journey] = []
    open_in: TapRecord | None = None
    for tap in taps:
        if tap.kind == TAP:
            out.append(Journey(credential_id, tap.tap_id, None, tap.site, tap.site, tap.at, tap.at,
                               fares.fare(tap.site, tap.site), True, None, single_tap=True))
        elif tap.kind == TAP_IN:
            if open_in is not None:
                out.append(_no_tap_out(credential_id, open_in))
            open_in = tap
        elif open_in is not None and tap.at - open_in.at < limit:
            out.append(Journey(credential_id, open_in.tap_id, tap.tap_id, open_in.site, tap.site, open_in.at,
                               tap.at, fares.fare(open_in.site, tap.site), True, None))
            open_in = None
        else:
            if open_in is not None:
                out.append(_no_tap_out(credential_id, open_in))
                open_in = None
            out.append(Journey(credential_id, None, tap.tap_id, None, tap.site, None, tap.at, None, False, "no_tap_in"))
    if open_in is not None:
        if now - open_in.at < limit:
            out.append(Journey(credential_id, open_in.tap_id, None, open_in.site, None, open_in.at, None, None,
                               False, None))
        else:
            out.append(_no_tap_out(credential_id, open_in))
    return out


def _no_tap_out(credential_id: str, tap_in: TapRecord) -> Journey:
    return Journey(credential_id, tap_in.tap_id, None, tap_in.site, None, tap_in.at, None, None, False, "no_tap_out")


def _journey_order(j: Journey) -> tuple[int, str, str, str]:
    start = j.started_at if j.started_at is not None else j.ended_at
    assert start is not None  # every journey has a start or an end
    return (start, j.credential_id, j.tap_in_id or "", j.tap_out_id or "")


# -- journeys kept at ingest -------------------------------------------------------------------------
#: The shapes of a :class:`Leg`.
SINGLE, COMPLETE, OPENED, NO_TAP_IN = "single", "complete", "opened", "no_tap_in"


@dataclass(frozen=True)
class Leg:
    """A journey as ingest keeps it (a row of the ``journeys`` table): the pairing of one credential's taps,
    before a report's window, clock, fares and concessions apply. :func:`window_journeys` turns legs into the
    :class:`Journey` values :func:`journeys` gives for the same taps.

    ``shape`` is ``single`` (a bus or water-bus tap), ``complete`` (a tap-in and the tap-out that ended it),
    ``no_tap_in`` (a tap-out with no open tap-in) or ``opened`` (a tap-in that no tap-out completed):
    ``closed_at`` is then the time of the tap that ended its chance of one (the next tap-in, or a tap-out too
    late), None while nothing has. ``at`` is when the leg starts (its tap-in, or its tap-out if it has none):
    legs are stored and read by it."""

    credential_id: str
    shape: str
    tap_in_id: str | None
    tap_out_id: str | None
    from_site: int | None
    to_site: int | None
    started_at: int | None
    ended_at: int | None
    closed_at: int | None = None

    @property
    def at(self) -> int:
        start = self.started_at if self.started_at is not None else self.ended_at
        assert start is not None  # every leg has a tap
        return start

    @property
    def last_at(self) -> int:
        """The time of the leg's last tap (what decides whether a recomputation replaces it)."""
        return max(t for t in (self.started_at, self.ended_at) if t is not None)

    def as_row(self) -> tuple[Any, ...]:
        return (self.credential_id, self.shape, self.tap_in_id, self.tap_out_id, self.from_site, self.to_site,
                self.started_at, self.ended_at, self.closed_at, self.at)


#: The ``journeys`` table's columns, in :meth:`Leg.as_row` order.
LEG_COLUMNS = ("credential_id, shape, tap_in_id, tap_out_id, from_site, to_site, started_at, ended_at, closed_at,"
               " at")


def legs(taps: Iterable[TapRecord], *, max_journey_s: int = 4 * 3600) -> list[Leg]:
    """Pair taps (any order, duplicates allowed) into legs, per credential in ``(at, tap_id)`` order, by the
    rules of :func:`journeys`; the taps that count are the ones :func:`journeys` counts."""
    by_credential: dict[str, list[TapRecord]] = defaultdict(list)
    for tap in unique_taps(taps):
        if tap.allowed and tap.credential_id and tap.net_persons > 0 and tap.kind in (TAP_IN, TAP_OUT, TAP):
            by_credential[tap.credential_id].append(tap)
    out: list[Leg] = []
    for credential_id in sorted(by_credential):
        open_in: TapRecord | None = None
        for tap in by_credential[credential_id]:
            if tap.kind == TAP:
                out.append(Leg(credential_id, SINGLE, tap.tap_id, None, tap.site, tap.site, tap.at, tap.at))
            elif tap.kind == TAP_IN:
                if open_in is not None:
                    out.append(_opened(credential_id, open_in, tap.at))
                open_in = tap
            elif open_in is not None and tap.at - open_in.at < max_journey_s:
                out.append(Leg(credential_id, COMPLETE, open_in.tap_id, tap.tap_id, open_in.site, tap.site, open_in.at,
                               tap.at))
                open_in = None
            else:
                if open_in is not None:
                    out.append(_opened(credential_id, open_in, tap.at))
                    open_in = None
                out.append(Leg(credential_id, NO_TAP_IN, None, tap.tap_id, None, tap.site, None, tap.at))
        if open_in is not None:
            out.append(_opened(credential_id, open_in, None))
    return out


def _opened(credential_id: str, tap_in: TapRecord, closed_at: int | None) -> Leg:
    return Leg(credential_id, OPENED, tap_in.tap_id, None, tap_in.site, None, tap_in.at, None, closed_at)


def window_journeys(stored: Iterable[Leg], fares: FareTable, *, since: int, until: int, now: int,
                    max_journey_s: int = 4 * 3600,
                    category_of: Callable[[str], str | None] | None = None) -> list[Journey]:
    """The journeys of ``[since, until)`` from legs kept at ingest: the same list :func:`journeys` gives for the
    taps of ``[since − max_journey_s, until)`` (the ``/v1/journeys`` window), filtered to those with a tap at or
    after ``since``. ``stored`` holds the legs starting in ``[since − max_journey_s, until)`` — or only those that
    give one of these journeys (:meth:`~citypass.issuer.repository.ControlRoomRepository.journey_legs` reads those:
    the legs starting in the window, and complete rides started before it that end in it).

    A tap at or after ``until`` does not exist for the window: a tap-in completed (or closed) by a later tap is
    still open at ``until``, and is *in progress* or ``no_tap_out`` by ``now`` as in :func:`journeys`."""
    found: list[Journey] = []
    for leg in stored:
        if leg.at >= until:
            continue
        cid = leg.credential_id
        if leg.shape == SINGLE:
            journey = Journey(cid, leg.tap_in_id, None, leg.from_site, leg.to_site, leg.started_at, leg.ended_at,
                              fares.fare(leg.from_site or 0, leg.to_site or 0), True, None, single_tap=True)
        elif leg.shape == NO_TAP_IN:
            journey = Journey(cid, None, leg.tap_out_id, None, leg.to_site, None, leg.ended_at, None, False,
                              NO_TAP_IN)
        elif leg.shape == COMPLETE and leg.ended_at is not None and leg.ended_at < until:
            journey = Journey(cid, leg.tap_in_id, leg.tap_out_id, leg.from_site, leg.to_site, leg.started_at,
                              leg.ended_at, fares.fare(leg.from_site or 0, leg.to_site or 0), True, None)
        else:  # a tap-in open at ``until`` (what ended it, if anything, came later) or closed before it
            closed = leg.shape == OPENED and leg.closed_at is not None and leg.closed_at < until
            started = leg.at
            in_progress = not closed and now - started < max_journey_s
            journey = Journey(cid, leg.tap_in_id, None, leg.from_site, None, started, None, None, False,
                              None if in_progress else "no_tap_out")
        if max(journey.started_at or 0, journey.ended_at or 0) >= since:
            found.append(journey)
    return sorted(_priced(found, category_of), key=_journey_order)


def _priced(found: list[Journey], category_of: Callable[[str], str | None] | None) -> list[Journey]:
    """Concession fares, as :func:`journeys` applies them."""
    if category_of is None:
        return found
    categories: dict[str, str | None] = {}
    out = []
    for j in found:
        if j.credential_id not in categories:
            categories[j.credential_id] = category_of(j.credential_id)
        category = categories[j.credential_id]
        if category in CONCESSION and CONCESSION[category] != 1:
            j = replace(j, fare=None if j.fare is None else round(j.fare * CONCESSION[category]), category=category)
        out.append(j)
    return out
