"""PostgreSQL tables for the fleet: registered devices, one-time enrollments, health reports.

An enrollment is redeemed once whatever node gets the request: the row is locked (``FOR UPDATE``) while it is
checked and marked used."""

from __future__ import annotations

import hmac
import json

from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.records import Conflict, Device, DeviceHealth, Enrollment, NotFound

_DEVICE = "SELECT id, site, direction, description, status, registered_at, enrolled_at, retired_at FROM devices"
_ENROLLMENT = "SELECT id, device_id, created_at, expires_at, used_at, secret_hash FROM enrollments WHERE id = %s"


class FleetTables(PgBase):
    # -- devices -------------------------------------------------------------------------------------
    def add_device(self, device: Device) -> None:
        with self.write() as conn:
            cur = conn.execute(
                "INSERT INTO devices (id, site, direction, description, status, registered_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [device.id, device.site, device.direction, device.description, device.status, device.registered_at],
            )
            if cur.rowcount == 0:
                raise Conflict(f"device {device.id!r} is already registered")

    def device(self, device_id: str) -> Device:
        row = self.fetchone(f"{_DEVICE} WHERE id = %s", [device_id])
        if row is None:
            raise NotFound(f"no device {device_id!r}")
        return Device(*row)

    def devices(self, *, limit: int = 500, offset: int = 0) -> list[Device]:
        return [Device(*row) for row in self.fetchall(f"{_DEVICE} ORDER BY id LIMIT %s OFFSET %s", [limit, offset])]

    def retire_device(self, device_id: str, at: int) -> Device:
        with self.write() as conn:
            cur = conn.execute("UPDATE devices SET status = 'retired', retired_at = coalesce(retired_at, %s)"
                               " WHERE id = %s", [at, device_id])
            if cur.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")
            conn.execute("UPDATE enrollments SET used_at = coalesce(used_at, %s) WHERE device_id = %s",
                         [at, device_id])
        return self.device(device_id)

    # -- enrollments ---------------------------------------------------------------------------------
    def add_enrollment(self, enrollment: Enrollment, secret_hash: bytes) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO enrollments (id, device_id, secret_hash, created_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [enrollment.id, enrollment.device_id, secret_hash, enrollment.created_at, enrollment.expires_at],
            )

    def enrollment(self, enrollment_id: str, secret_hash: bytes, at: int, *, lock: bool = False) -> Enrollment:
        row = self.fetchone(_ENROLLMENT + (" FOR UPDATE" if lock else ""), [enrollment_id])
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
            enrollment = self.enrollment(enrollment_id, secret_hash, at, lock=True)  # locked until commit
            conn.execute("UPDATE enrollments SET used_at = %s WHERE id = %s", [at, enrollment_id])
            conn.execute("UPDATE devices SET status = 'enrolled', enrolled_at = %s WHERE id = %s",
                         [at, enrollment.device_id])
        return Enrollment(enrollment.id, enrollment.device_id, enrollment.created_at, enrollment.expires_at, at)

    def release_enrollment(self, enrollment_id: str, secret_hash: bytes, device_id: str, at: int,
                           window_s: int) -> Enrollment:
        with self.write() as conn:
            row = conn.execute(_ENROLLMENT + " FOR UPDATE", [enrollment_id]).fetchone()
            if row is None or not hmac.compare_digest(bytes(row[5]), secret_hash) or row[1] != device_id:
                raise NotFound("unknown enrollment token")
            enrollment = Enrollment(*row[:5])
            if enrollment.used_at is None:
                raise Conflict("this enrollment token has not been redeemed: nothing to give back")
            if at - enrollment.used_at > window_s:
                raise Conflict(f"this enrollment was redeemed more than {window_s} s ago: too late to give it back")
            if self.device(device_id).status == "retired":
                raise Conflict(f"device {device_id!r} is retired")
            conn.execute("UPDATE enrollments SET used_at = NULL WHERE id = %s", [enrollment_id])
            conn.execute("UPDATE devices SET status = 'registered', enrolled_at = NULL WHERE id = %s", [device_id])
        return Enrollment(enrollment.id, device_id, enrollment.created_at, enrollment.expires_at, None)

    # -- health --------------------------------------------------------------------------------------
    def record_health(self, health: DeviceHealth) -> None:
        """Merge a report: fields the report leaves out keep their last known value."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO device_health AS h (device_id, last_seen, ledger_seq, outbox_backlog, clock_offset_s,"
                " reported_at, details) VALUES (%(d)s, %(seen)s, %(seq)s, %(backlog)s, %(offset)s, %(rep)s, %(det)s)"
                " ON CONFLICT (device_id) DO UPDATE SET"
                " last_seen = greatest(coalesce(h.last_seen, 0), coalesce(%(seen)s, 0)),"
                " ledger_seq = coalesce(%(seq)s, h.ledger_seq),"
                " outbox_backlog = coalesce(%(backlog)s, h.outbox_backlog),"
                " clock_offset_s = coalesce(%(offset)s, h.clock_offset_s),"
                " reported_at = coalesce(%(rep)s, h.reported_at),"
                " details = CASE WHEN %(det)s = '{}' THEN h.details ELSE %(det)s END",
                {"d": health.device_id, "seen": health.last_seen, "seq": health.ledger_seq,
                 "backlog": health.outbox_backlog, "offset": health.clock_offset_s, "rep": health.reported_at,
                 "det": json.dumps(health.details, sort_keys=True)},
            )

    def health(self, device_id: str) -> DeviceHealth | None:
        row = self.fetchone(
            "SELECT device_id, last_seen, ledger_seq, outbox_backlog, clock_offset_s, reported_at, details"
            " FROM device_health WHERE device_id = %s", [device_id])
        if row is None:
            return None
        device, last_seen, seq, backlog, offset, reported_at, details = row
        return DeviceHealth(device, last_seen, seq, backlog, offset, reported_at, json.loads(details or "{}"))
