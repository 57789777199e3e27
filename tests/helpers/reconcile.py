"""Tap records for the reconciliation tests: short to write, valid by construction, times in Hangzhou."""

from __future__ import annotations

from citypass.issuer.reconcile import TapRecord

MIDNIGHT = 1_799_942_400  # 2027-01-15 00:00 in UTC+8 (16:00 UTC the day before)
HOUR = 3600
MINUTE = 60

ANNUAL, RESERVATION, TRANSIT, GROUP = 1, 2, 3, 4


def local(hour: int, minute: int = 0, day: int = 0) -> int:
    """Unix time of ``hour:minute`` local (UTC+8) on the test day (``day`` days later)."""
    return MIDNIGHT + day * 24 * HOUR + hour * HOUR + minute * MINUTE


def tap(tap_id: str, *, kind: str = "entry", at: int = local(10), gate: str = "g1", site: int = 1,
        cred: str = "c1", product: int = ANNUAL, persons: int = 1, annulled: int = 0,
        flags: tuple[str, ...] = ()) -> TapRecord:
    """An allowed tap. Credential ids are hex, so the short names here are encoded."""
    direction = "exit" if kind in ("exit", "tap_out") else "entry"
    return TapRecord(tap_id=tap_id, gate_id=gate, site=site, direction=direction, decision="allow", reason=None,
                     flags=flags, credential_id=hexid(cred), product=product, persons=persons, kind=kind,
                     presentation_id=None, at=at, annulled=annulled)


def deny(tap_id: str, reason: str, *, at: int = local(10), gate: str = "g1", site: int = 1,
         cred: str | None = "c1", product: int | None = ANNUAL, flags: tuple[str, ...] = ()) -> TapRecord:
    """A denied tap (no persons, no kind)."""
    return TapRecord(tap_id=tap_id, gate_id=gate, site=site, direction="entry", decision="deny", reason=reason,
                     flags=flags, credential_id=hexid(cred) if cred else None, product=product, persons=0,
                     kind=None, presentation_id=None, at=at)


def hexid(name: str) -> str:
    """A readable name as a credential id (lowercase hex, as gates send it)."""
    return name.encode().hex()
