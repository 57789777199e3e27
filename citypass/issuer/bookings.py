"""Venues, timed slots and reservations: the service logic over the repository.

A *venue* is a site that takes reservations (kind ``museum`` or ``scenic``). A *slot* is a time window
at a venue with a capacity in persons. A reservation takes ``party`` places of a slot and gets a signed
``reservation`` code valid for the slot (plus the grace minutes gates allow); cancelling it gives the
places back and revokes the code, so the cancellation reaches gates with the next ledger delta.

The order of :func:`reserve` is what makes it both safe and fast: places are taken first, atomically
(:meth:`~citypass.issuer.repository.BookingRepository.hold_places`), then the code is signed outside any lock,
then recorded; a failure in between gives the places back. A crash in between (SIGKILL, power) cannot run
that cleanup: its hold is given back by :func:`expire_holds` once it is older than :data:`HOLD_TTL_S` — every
booking, slot listing and hold listing runs it first — and stays visible as ``expired``.
"""

from __future__ import annotations

import os

from citypass.credential.codes import parse
from citypass.credential.keys import VerifyKey
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.issuer.records import Conflict, NotFound, ReservationRecord, Slot
from citypass.issuer.service import IssueError, Issuer

VENUE_KINDS = (SiteKind.MUSEUM, SiteKind.SCENIC)
MAX_SLOT_S = 7 * 86_400
#: A hold older than this belongs to a booking that died: signing a code takes milliseconds.
HOLD_TTL_S = 120


def expire_holds(issuer: Issuer, now: int) -> list[ReservationRecord]:
    """Give back the places of holds older than :data:`HOLD_TTL_S` (see the module docstring)."""
    return issuer.store.expire_holds(now - HOLD_TTL_S, now)


def venue(issuer: Issuer, ref: str) -> SiteSettings:
    """A venue by name or number; NotFound when there is no such site or it takes no reservations."""
    for site in issuer.store.sites():
        if (site.name == ref or str(site.number) == ref) and site.kind in VENUE_KINDS:
            return site
    raise NotFound(f"no venue {ref!r}")


def venues(issuer: Issuer) -> list[SiteSettings]:
    return [s for s in issuer.store.sites() if s.kind in VENUE_KINDS]


def add_slot(issuer: Issuer, venue_ref: str, starts_at: int, ends_at: int, capacity: int, now: int) -> Slot:
    site = venue(issuer, venue_ref)
    if ends_at <= starts_at:
        raise IssueError("a slot must end after it starts")
    if ends_at - starts_at > MAX_SLOT_S:
        raise IssueError("a slot lasts at most 7 days")
    if not 1 <= capacity <= 100_000:
        raise IssueError("capacity must be 1..100000 persons")
    slot = Slot(f"s_{os.urandom(6).hex()}", site.number, starts_at, ends_at, capacity, 0, now)
    issuer.store.add_slot(slot)
    return slot


def reserve(issuer: Issuer, slot_id: str, party: int, now: int, *, holder: VerifyKey | None = None,
            grace_minutes: int = 15) -> tuple[ReservationRecord, str]:
    """Book ``party`` places of a slot; returns the reservation and its code text.

    Raises :class:`~citypass.issuer.records.SlotFull` when the places are not there (never overbooks),
    NotFound for an unknown slot, IssueError for a slot that has ended or a bad party size."""
    if not 1 <= party <= 99:
        raise IssueError("party size must be 1..99")
    slot = issuer.store.slot(slot_id)
    if slot.ends_at <= now:
        raise IssueError(f"slot {slot_id} has ended")
    expire_holds(issuer, now)
    reservation_id = f"r_{os.urandom(8).hex()}"
    issuer.store.hold_places(reservation_id, slot_id, party, now)
    try:
        code = issuer.mint_reservation(str(slot.venue), slot.starts_at, slot.ends_at, party, now, grace_minutes,
                                       holder)
        try:
            record = issuer.store.activate_reservation(reservation_id, parse(code).credential.id)
        except Conflict:  # the hold outlived HOLD_TTL_S and was given back: the code was never handed out
            issuer.store.revoke(parse(code).credential.id, now, f"reservation {reservation_id}: hold expired")
            raise Conflict("the places were held too long and have been given back: try again") from None
    except BaseException:
        issuer.store.release_reservation(reservation_id)
        raise
    return record, code


def cancel(issuer: Issuer, reservation_id: str, now: int) -> tuple[ReservationRecord, bool]:
    """Cancel a reservation and revoke its code. The bool is False when it was cancelled before."""
    record, changed = issuer.store.cancel_reservation(reservation_id, now)
    if changed and record.credential_id:
        issuer.store.revoke(bytes.fromhex(record.credential_id), now, f"reservation {reservation_id} cancelled")
    return record, changed
