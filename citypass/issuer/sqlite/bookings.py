"""SQLite tables for timed slots and reservations: the no-overbooking guarantee lives here.

A reservation is taken in two steps so that signing the code never happens inside the lock:
:meth:`BookingTables.hold_places` checks and takes the places in one ``BEGIN IMMEDIATE`` transaction
(status ``held``), the service signs the code, then :meth:`activate_reservation` records its credential
id — or :meth:`release_reservation` gives the places back if signing failed. A held place is never
double-counted: ``booked`` only moves inside a write transaction that re-reads it.

A process killed between the two steps leaves a ``held`` row holding its places; :meth:`expire_holds` gives
them back once the hold is older than signing can take (status ``expired``, kept for operators to see).
"""

from __future__ import annotations

from dataclasses import replace

from citypass.issuer.records import Conflict, NotFound, ReservationRecord, Slot, SlotFull
from citypass.issuer.sqlite.connection import SqliteBase

_SLOT = "SELECT id, venue, starts_at, ends_at, capacity, booked, created_at FROM slots"
_RESERVATION = ("SELECT id, slot_id, venue, party, status, credential_id, created_at, cancelled_at"
                " FROM reservations")


class BookingTables(SqliteBase):
    def add_slot(self, slot: Slot) -> None:
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM slots WHERE id = ?", [slot.id]).fetchone():
                raise Conflict(f"slot {slot.id} exists")
            conn.execute(
                "INSERT INTO slots (id, venue, starts_at, ends_at, capacity, booked, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [slot.id, slot.venue, slot.starts_at, slot.ends_at, slot.capacity, slot.booked, slot.created_at],
            )

    def slot(self, slot_id: str) -> Slot:
        row = self.conn.execute(f"{_SLOT} WHERE id = ?", [slot_id]).fetchone()
        if row is None:
            raise NotFound(f"no slot {slot_id!r}")
        return Slot(*row)

    def slots(self, venue: int, *, since: int | None = None, limit: int = 200) -> list[Slot]:
        rows = self.conn.execute(
            f"{_SLOT} WHERE venue = ? AND ends_at > ? ORDER BY starts_at, id LIMIT ?",
            [venue, since if since is not None else -1, limit],
        ).fetchall()
        return [Slot(*row) for row in rows]

    def hold_places(self, reservation_id: str, slot_id: str, party: int, at: int) -> ReservationRecord:
        with self.write() as conn:
            row = conn.execute("SELECT venue, capacity, booked FROM slots WHERE id = ?", [slot_id]).fetchone()
            if row is None:
                raise NotFound(f"no slot {slot_id!r}")
            venue, capacity, booked = row
            if booked + party > capacity:
                raise SlotFull(f"slot {slot_id} has {capacity - booked} place(s) left, the party needs {party}")
            conn.execute("UPDATE slots SET booked = booked + ? WHERE id = ?", [party, slot_id])
            conn.execute(
                "INSERT INTO reservations (id, slot_id, venue, party, status, created_at)"
                " VALUES (?, ?, ?, ?, 'held', ?)", [reservation_id, slot_id, venue, party, at],
            )
        return ReservationRecord(reservation_id, slot_id, venue, party, "held", None, at)

    def activate_reservation(self, reservation_id: str, credential_id: bytes) -> ReservationRecord:
        with self.write() as conn:
            cur = conn.execute("UPDATE reservations SET status = 'active', credential_id = ?"
                               " WHERE id = ? AND status = 'held'", [credential_id.hex(), reservation_id])
            if cur.rowcount == 0:
                raise Conflict(f"reservation {reservation_id} is not held")
        return self.reservation(reservation_id)

    def release_reservation(self, reservation_id: str) -> None:
        with self.write() as conn:
            row = conn.execute("SELECT slot_id, party FROM reservations WHERE id = ? AND status = 'held'",
                               [reservation_id]).fetchone()
            if row is None:
                return
            conn.execute("UPDATE slots SET booked = booked - ? WHERE id = ?", [row[1], row[0]])
            conn.execute("DELETE FROM reservations WHERE id = ?", [reservation_id])

    def expire_holds(self, created_before: int, at: int) -> list[ReservationRecord]:
        with self.write() as conn:
            held = [ReservationRecord(*row) for row in conn.execute(
                f"{_RESERVATION} WHERE status = 'held' AND created_at < ?", [created_before]).fetchall()]
            for r in held:
                conn.execute("UPDATE slots SET booked = max(0, booked - ?) WHERE id = ?", [r.party, r.slot_id])
                conn.execute("UPDATE reservations SET status = 'expired', cancelled_at = ? WHERE id = ?", [at, r.id])
        return [replace(r, status="expired", cancelled_at=at) for r in held]

    def reservations(self, *, status: str, since: int | None = None, limit: int = 200) -> list[ReservationRecord]:
        rows = self.conn.execute(f"{_RESERVATION} WHERE status = ? AND created_at >= ? ORDER BY created_at, id LIMIT ?",
                                 [status, since if since is not None else -(2**62), limit]).fetchall()
        return [ReservationRecord(*row) for row in rows]

    def cancel_reservation(self, reservation_id: str, at: int) -> tuple[ReservationRecord, bool]:
        with self.write() as conn:
            current = self.reservation(reservation_id)
            if current.status == "cancelled":
                return current, False
            conn.execute("UPDATE slots SET booked = max(0, booked - ?) WHERE id = ?", [current.party, current.slot_id])
            conn.execute("UPDATE reservations SET status = 'cancelled', cancelled_at = ? WHERE id = ?",
                         [at, reservation_id])
        return self.reservation(reservation_id), True

    def reservation(self, reservation_id: str) -> ReservationRecord:
        row = self.conn.execute(f"{_RESERVATION} WHERE id = ?", [reservation_id]).fetchone()
        if row is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        return ReservationRecord(*row)
