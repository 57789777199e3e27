"""Tour groups: registered by an agency, followed gate by gate along their itinerary.

A group is an agency's party — a guide (with a contact), ``party`` persons, a contract price per person, and
an itinerary: the sites it will visit, each with a planned window. Registering it (:func:`register`) issues
one group pass per stop (a ``group`` credential for that site and the party, valid over the planned window
with :data:`GRACE_S` either side); the guide shows it at each site and the gate admits the party.
Together the group's passes name every site of its itinerary; each names one, because a gate counts a party
ticket's admissions per credential.

Every tap of one of those passes (:mod:`citypass.issuer.watch`) recounts its stop (persons admitted, first
admission) and moves the group to where it was seen — so "which groups are inside this site now?" (the
emergency question) is one indexed read. Two settings, in the store's meta table, shape what is reported:

* ``group_price_floor_fen`` — registering a group whose contract price per person is below it is allowed
  but warned about (unreasonably cheap tours are how forced shopping starts); default :data:`PRICE_FLOOR_FEN`;
* ``group_overdue_minutes`` — a group whose next stop's planned start is more than this long past with
  nobody admitted there is *overdue*; default :data:`OVERDUE_MINUTES`.

    >>> stops = [Stop(1, 1_800_000_000, 1_800_007_200), Stop(2, 1_800_010_000, 1_800_017_200)]
    >>> g = TourGroup("g_1", "Agency", "Guide", "+86", 20, 9_000, 0,
    ...               tuple(GroupStop(i, s.site, s.planned_from, s.planned_to) for i, s in enumerate(stops)))
    >>> status(g, 1_800_000_000 + 31 * 60, 30 * 60).overdue_s
    60
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from citypass.issuer.control_records import GroupStop, TourGroup
from citypass.issuer.service import IssueError, Issuer

#: Fen per person below which a registration is warned about (50 yuan).
PRICE_FLOOR_FEN = 5_000
#: Minutes past a stop's planned start, with nobody admitted there, after which a group is overdue.
OVERDUE_MINUTES = 30
#: A stop's group pass is valid this long before and after its planned window.
GRACE_S = 3600
MAX_STOPS = 20


@dataclass(frozen=True)
class Stop:
    """A stop as registered: a site number and a planned window (Unix s)."""

    site: int
    planned_from: int
    planned_to: int


@dataclass(frozen=True)
class Registration:
    group: TourGroup
    codes: tuple[str, ...]  # the group pass of each stop, in itinerary order


@dataclass(frozen=True)
class GroupStatus:
    """What a group is doing at ``at``: stops visited, the next stop, and by how much it is overdue there."""

    group: TourGroup
    at: int
    visited: int
    next_stop: GroupStop | None
    overdue_s: int  # > 0: seconds beyond the allowed lateness at the next stop

    @property
    def overdue(self) -> bool:
        return self.overdue_s > 0

    def to_dict(self) -> dict[str, Any]:
        g = self.group
        return {
            "id": g.id, "agency": g.agency, "guide": g.guide, "contact": g.contact, "party": g.party,
            "price_fen": g.price_fen, "created_at": g.created_at, "warning": g.warning,
            "last_site": g.last_site, "last_at": g.last_at, "inside": g.inside,
            "visited": self.visited, "stops_total": len(g.stops),
            "next_stop": None if self.next_stop is None else self.next_stop.stop,
            "overdue": self.overdue, "overdue_s": max(0, self.overdue_s),
            "stops": [vars(s) for s in g.stops],
        }


def settings(issuer: Issuer) -> tuple[int, int]:
    """(price floor in fen, overdue minutes) as configured."""
    store = issuer.store
    return (int(store.get_meta("group_price_floor_fen") or PRICE_FLOOR_FEN),
            int(store.get_meta("group_overdue_minutes") or OVERDUE_MINUTES))


def set_settings(issuer: Issuer, price_floor_fen: int, overdue_minutes: int) -> None:
    if price_floor_fen < 0 or not 1 <= overdue_minutes <= 24 * 60:
        raise IssueError("the price floor is ≥ 0 fen and the overdue time 1..1440 minutes")
    issuer.store.set_meta("group_price_floor_fen", str(price_floor_fen))
    issuer.store.set_meta("group_overdue_minutes", str(overdue_minutes))


def register(issuer: Issuer, *, agency: str, guide: str, contact: str, party: int, price_fen: int,
             stops: Sequence[Stop], now: int) -> Registration:
    """Register a group and issue its passes (one per stop). A price below the floor is kept, with a warning."""
    if not 1 <= party <= 99:
        raise IssueError("party size must be 1..99")
    if not 1 <= len(stops) <= MAX_STOPS:
        raise IssueError(f"an itinerary has 1..{MAX_STOPS} stops")
    if price_fen < 0:
        raise IssueError("the contract price is not negative")
    names = {s.number: s.name for s in issuer.store.sites()}
    for stop in stops:
        if stop.site not in names:
            raise IssueError(f"unknown site {stop.site}")
        if stop.planned_to <= stop.planned_from:
            raise IssueError("a stop's planned window must end after it starts")
    if any(b.planned_from < a.planned_from for a, b in itertools.pairwise(stops)):
        raise IssueError("stops must be in the order of their planned windows")
    floor, _ = settings(issuer)
    warning = None
    if price_fen < floor:
        warning = (f"contract price {price_fen / 100:.2f} yuan per person is below the threshold of "
                   f"{floor / 100:.2f} yuan: an unreasonably cheap tour")
    codes, out = [], []
    for index, stop in enumerate(stops):
        code = issuer.mint_group(names[stop.site], party, now, valid_from=stop.planned_from - GRACE_S,
                                 valid_to=stop.planned_to + GRACE_S)
        codes.append(code)
        out.append(GroupStop(index, stop.site, stop.planned_from, stop.planned_to,
                             Issuer.credential_ref(code).hex()))
    group = TourGroup(id=f"g_{os.urandom(6).hex()}", agency=agency, guide=guide, contact=contact, party=party,
                      price_fen=price_fen, created_at=now, stops=tuple(out), warning=warning)
    issuer.store.add_group(group)
    return Registration(group, tuple(codes))


def status(group: TourGroup, at: int, overdue_after_s: int) -> GroupStatus:
    """Progress along the itinerary: the next stop is the first one after the last stop anyone was admitted
    at; it is overdue when its planned start is more than ``overdue_after_s`` past with nobody admitted."""
    last = max((s.stop for s in group.stops if s.first_entry_at is not None), default=-1)
    visited = sum(1 for s in group.stops if s.first_entry_at is not None)
    upcoming = [s for s in group.stops if s.stop > last]
    next_stop = upcoming[0] if upcoming else None
    overdue = -1 if next_stop is None else at - next_stop.planned_from - overdue_after_s
    return GroupStatus(group, at, visited, next_stop, overdue)


def overdue(issuer: Issuer, now: int, *, limit: int = 1000) -> list[GroupStatus]:
    """Groups overdue at their next stop now, most overdue first."""
    _, minutes = settings(issuer)
    due = issuer.store.groups_due(planned_before=now - minutes * 60, limit=limit)
    found = [s for s in (status(g, now, minutes * 60) for g in due) if s.overdue]
    return sorted(found, key=lambda s: -s.overdue_s)
