"""SQLite tables for the fleet: registered devices, one-time enrollments, health reports."""

from __future__ import annotations

import hmac
import json
import sqlite3

from citypass.issuer.records import Conflict, Device, DeviceHealth, Enrollment, NotFound
from citypass.issuer.sqlite.connection import SqliteBase

_DEVICE = "SELECT id, site, direction, description, status, registered_at, enrolled_at, retired_at FROM devices"


class FleetTables(SqliteBase):
    # -- devices -------------------------------------------------------------------------------------
    def add_device(self, device: Device) -> None:
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM devices WHERE id = ?", [device.id]).fetchone():
                raise Conflict(f"device {device.id!r} is already registered")
            conn.execute(
                "INSERT INTO devices (id, site, direction, description, status, registered_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [device.id, device.site, device.direction, device.description, device.status, device.registered_at],
            )

    def device(self, device_id: str) -> Device:
        row = self.conn.execute(f"{_DEVICE} WHERE id = ?", [device_id]).fetchone()
        if row is None:
            raise NotFound(f"no device {device_id!r}")
        return Device(*row)

    def devices(self, *, limit: int = 500, offset: int = 0) -> list[Device]:
        rows = self.conn.execute(f"{_DEVICE} ORDER BY id LIMIT ? OFFSET ?", [limit, offset]).fetchall()
        return [Device(*row) for row in rows]

    def retire_device(self, device_id: str, at: int) -> Device:
        with self.write() as conn:
            self.device(device_id)
            conn.execute("UPDATE devices SET status = 'retired', retired_at = coalesce(retired_at, ?) WHERE id = ?",
                         [at, device_id])
            conn.execute("UPDATE enrollments SET used_at = coalesce(used_at, ?) WHERE device_id = ?", [at, device_id])
        return self.device(device_id)

    # -- enrollments ---------------------------------------------------------------------------------
    def add_enrollment(self, enrollment: Enrollment, secret_hash: bytes) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO enrollments (id, device_id, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                [enrollment.id, enrollment.device_id, secret_hash, enrollment.created_at, enrollment.expires_at],
            )

    def enrollment(self, enrollment_id: str, secret_hash: bytes, at: int) -> Enrollment:
        row = self.conn.execute(
            "SELECT id, device_id, created_at, expires_at, used_at, secret_hash FROM enrollments WHERE id = ?",
            [enrollment_id],
        ).fetchone()
        if row is None or not hmac.compare_digest(bytes(row[5]), secret_hash):
            raise NotFound("unknown enrollment token")
        enrollment = Enrollment(*row[:5])
        if enrollment.used_at is not None:
            raise Conflict("this enrollment token has been used already")
        if at >= enrollment.expires_at:
            raise Conflict("this enrollment token has expired")
        device = self.device(enrollment.device_id)
        if device.status == "retired":
            raise Conflict(f"device {device.id!r} is retired")
        return enrollment

    def redeem_enrollment(self, enrollment_id: str, secret_hash: bytes, at: int) -> Enrollment:
        with self.write() as conn:
            enrollment = self.enrollment(enrollment_id, secret_hash, at)  # re-read inside the write lock
            device = self.device(enrollment.device_id)
            conn.execute("UPDATE enrollments SET used_at = ? WHERE id = ?", [at, enrollment_id])
            conn.execute("UPDATE devices SET status = 'enrolled', enrolled_at = ? WHERE id = ?", [at, device.id])
        return Enrollment(enrollment.id, enrollment.device_id, enrollment.created_at, enrollment.expires_at, at)

    def release_enrollment(self, enrollment_id: str, secret_hash: bytes, device_id: str, at: int,
                           window_s: int) -> Enrollment:
        with self.write() as conn:
            row = conn.execute(
                "SELECT id, device_id, created_at, expires_at, used_at, secret_hash FROM enrollments WHERE id = ?",
                [enrollment_id],
            ).fetchone()
            if row is None or not hmac.compare_digest(bytes(row[5]), secret_hash) or row[1] != device_id:
                raise NotFound("unknown enrollment token")
            enrollment = Enrollment(*row[:5])
            if enrollment.used_at is None:
                raise Conflict("this enrollment token has not been redeemed: nothing to give back")
            if at - enrollment.used_at > window_s:
                raise Conflict(f"this enrollment was redeemed more than {window_s} s ago: too late to give it back")
            if self.device(device_id).status == "retired":
                raise Conflict(f"device {device_id!r} is retired")
            conn.execute("UPDATE enrollments SET used_at = NULL WHERE id = ?", [enrollment_id])
            conn.execute("UPDATE devices SET status = 'registered', enrolled_at = NULL WHERE id = ?", [device_id])
        return Enrollment(enrollment.id, device_id, enrollment.created_at, enrollment.expires_at, None)

    # -- health --------------------------------------------------------------------------------------
    def record_health(self, health: DeviceHealth) -> None:
        """Merge a report: fields the report leaves out keep their last known value."""
        with self.write() as conn:
            self._merge_health(conn, health)

    @staticmethod
    def _merge_health(conn: sqlite3.Connection, health: DeviceHealth) -> None:
        conn.execute(
            "INSERT INTO device_health (device_id, last_seen, ledger_seq, outbox_backlog, clock_offset_s,"
            " reported_at, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device_id) DO UPDATE SET"
            " last_seen = max(coalesce(last_seen, 0), coalesce(?2, 0)),"
            " ledger_seq = coalesce(?3, ledger_seq), outbox_backlog = coalesce(?4, outbox_backlog),"
            " clock_offset_s = coalesce(?5, clock_offset_s), reported_at = coalesce(?6, reported_at),"
            " details = CASE WHEN ?7 = '{}' THEN details ELSE ?7 END",
            [health.device_id, health.last_seen, health.ledger_seq, health.outbox_backlog, health.clock_offset_s,
             health.reported_at, json.dumps(health.details, sort_keys=True)],
        )

    def health(self, device_id: str) -> DeviceHealth | None:
        row = self.conn.execute(
            "SELECT device_id, last_seen, ledger_seq, outbox_backlog, clock_offset_s, reported_at, details"
            " FROM device_health WHERE device_id = ?", [device_id],
        ).fetchone()
        if row is None:
            return None
        device, last_seen, seq, backlog, offset, reported_at, details = row
        return DeviceHealth(device, last_seen, seq, backlog, offset, reported_at, json.loads(details or "{}"))
