"""PostgreSQL tables for timed slots and reservations: no overbooking, with any number of nodes.

The same two steps as the SQLite store (:mod:`citypass.issuer.sqlite.bookings`: hold, sign, activate or
release). Holding is one conditional ``UPDATE slots SET booked = booked + party WHERE id = … AND booked +
party <= capacity``: PostgreSQL locks the slot's row for the update, a concurrent booking of the same slot
waits for it and re-evaluates the condition against the committed count, so fifty requests for five places
on three nodes give five holds — and bookings of *other* slots never wait.
"""

from __future__ import annotations

from dataclasses import replace

from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.records import Conflict, NotFound, ReservationRecord, Slot, SlotFull

_SLOT = "SELECT id, venue, starts_at, ends_at, capacity, booked, created_at FROM slots"
_RESERVATION = ("SELECT id, slot_id, venue, party, status, credential_id, created_at, cancelled_at"
                " FROM reservations")


class BookingTables(PgBase):
    def add_slot(self, slot: Slot) -> None:
        with self.write() as conn:
            cur = conn.execute(
                "INSERT INTO slots (id, venue, starts_at, ends_at, capacity, booked, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [slot.id, slot.venue, slot.starts_at, slot.ends_at, slot.capacity, slot.booked, slot.created_at],
            )
            if cur.rowcount == 0:
                raise Conflict(f"slot {slot.id} exists")

    def slot(self, slot_id: str) -> Slot:
        row = self.fetchone(f"{_SLOT} WHERE id = %s", [slot_id])
        if row is None:
            raise NotFound(f"no slot {slot_id!r}")
        return Slot(*row)

    def slots(self, venue: int, *, since: int | None = None, limit: int = 200) -> list[Slot]:
        rows = self.fetchall(f"{_SLOT} WHERE venue = %s AND ends_at > %s ORDER BY starts_at, id LIMIT %s",
                             [venue, since if since is not None else -1, limit])
        return [Slot(*row) for row in rows]

    def hold_places(self, reservation_id: str, slot_id: str, party: int, at: int) -> ReservationRecord:
        with self.write() as conn:
            row = conn.execute("UPDATE slots SET booked = booked + %s WHERE id = %s AND booked + %s <= capacity"
                               " RETURNING venue", [party, slot_id, party]).fetchone()
            if row is None:
                current = conn.execute("SELECT capacity, booked FROM slots WHERE id = %s", [slot_id]).fetchone()
                if current is None:
                    raise NotFound(f"no slot {slot_id!r}")
                capacity, booked = current
                raise SlotFull(f"slot {slot_id} has {capacity - booked} place(s) left, the party needs {party}")
            conn.execute("INSERT INTO reservations (id, slot_id, venue, party, status, created_at)"
                         " VALUES (%s, %s, %s, %s, 'held', %s)", [reservation_id, slot_id, row[0], party, at])
        return ReservationRecord(reservation_id, slot_id, row[0], party, "held", None, at)

    def activate_reservation(self, reservation_id: str, credential_id: bytes) -> ReservationRecord:
        with self.write() as conn:
            cur = conn.execute("UPDATE reservations SET status = 'active', credential_id = %s"
                               " WHERE id = %s AND status = 'held'", [credential_id.hex(), reservation_id])
            if cur.rowcount == 0:
                raise Conflict(f"reservation {reservation_id} is not held")
        return self.reservation(reservation_id)

    def release_reservation(self, reservation_id: str) -> None:
        with self.write() as conn:
            row = conn.execute("DELETE FROM reservations WHERE id = %s AND status = 'held' RETURNING slot_id, party",
                               [reservation_id]).fetchone()
            if row is not None:
                conn.execute("UPDATE slots SET booked = booked - %s WHERE id = %s", [row[1], row[0]])

    def expire_holds(self, created_before: int, at: int) -> list[ReservationRecord]:
        with self.write() as conn:
            held = [ReservationRecord(*row) for row in conn.execute(
                f"{_RESERVATION} WHERE status = 'held' AND created_at < %s ORDER BY id FOR UPDATE SKIP LOCKED",
                [created_before]).fetchall()]
            for r in held:
                conn.execute("UPDATE slots SET booked = greatest(0, booked - %s) WHERE id = %s", [r.party, r.slot_id])
                conn.execute("UPDATE reservations SET status = 'expired', cancelled_at = %s WHERE id = %s", [at, r.id])
        return [replace(r, status="expired", cancelled_at=at) for r in held]

    def reservations(self, *, status: str, since: int | None = None, limit: int = 200) -> list[ReservationRecord]:
        rows = self.fetchall(f"{_RESERVATION} WHERE status = %s AND created_at >= %s ORDER BY created_at, id LIMIT %s",
                             [status, since if since is not None else -(2**62), limit])
        return [ReservationRecord(*row) for row in rows]

    def cancel_reservation(self, reservation_id: str, at: int) -> tuple[ReservationRecord, bool]:
        with self.write() as conn:
            row = conn.execute(f"{_RESERVATION} WHERE id = %s FOR UPDATE", [reservation_id]).fetchone()
            if row is None:
                raise NotFound(f"no reservation {reservation_id!r}")
            current = ReservationRecord(*row)
            if current.status == "cancelled":
                return current, False
            conn.execute("UPDATE slots SET booked = greatest(0, booked - %s) WHERE id = %s",
                         [current.party, current.slot_id])
            conn.execute("UPDATE reservations SET status = 'cancelled', cancelled_at = %s WHERE id = %s",
                         [at, reservation_id])
        return self.reservation(reservation_id), True

    def reservation(self, reservation_id: str) -> ReservationRecord:
        row = self.fetchone(f"{_RESERVATION} WHERE id = %s", [reservation_id])
        if row is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        return ReservationRecord(*row)
