"""What the console's pages show, computed from the repository: no HTML here (see :mod:`.pages`).

Everything reads tables kept up to date at ingest (:mod:`citypass.issuer.watch`) — quarter-hour tallies,
stored incidents, group positions — or small registries (sites, devices), never a day of raw taps, so a page
costs the same with a million taps in the store as with ten.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from citypass.credential.sites import SiteSettings
from citypass.issuer.control_records import QUARTER
from citypass.issuer.occupancy import local_midnight
from citypass.issuer.records import Device, DeviceHealth, RevocationRecord
from citypass.issuer.repository import IssuerRepository

#: A device not heard from for this long is stale (as in the fleet API).
STALE_AFTER_S = 15 * 60


@dataclass(frozen=True)
class SiteNow:
    """A site today: persons inside now, entries since local midnight, and the curve (quarter end, inside)."""

    site: SiteSettings
    inside: int
    entries_today: int
    midnight: int
    curve: tuple[tuple[int, int], ...]

    @property
    def fill(self) -> float | None:
        return None if not self.site.capacity else self.inside / self.site.capacity


def city_now(store: IssuerRepository, now: int) -> list[SiteNow]:
    """Every site, the fullest (against capacity) first, then by persons inside.

    Counting starts at each site's local midnight (the gates' own day); within the day the count never goes
    below zero, quarter by quarter, like :func:`citypass.issuer.occupancy.occupancy` does tap by tap."""
    sites = store.sites()
    if not sites:
        return []
    start = min(local_midnight(now, s.utc_offset_minutes) for s in sites)
    by_site = defaultdict(list)
    for tally in store.quarter_tallies(start, now + 1):
        by_site[tally.site].append(tally)
    out = []
    for site in sites:
        midnight = local_midnight(now, site.utc_offset_minutes)
        inside = entries = 0
        curve = [(midnight, 0)]
        for tally in by_site[site.number]:
            if tally.quarter < midnight:
                continue
            inside = max(0, inside + tally.entries - tally.exits)
            entries += tally.entries
            curve.append((min(now, tally.quarter + QUARTER), inside))
        out.append(SiteNow(site, inside, entries, midnight, tuple(curve)))
    return sorted(out, key=lambda s: (-(s.fill if s.fill is not None else -1.0), -s.inside, s.site.number))


@dataclass(frozen=True)
class DeviceRow:
    device: Device
    health: DeviceHealth | None
    status: str  # ok, stale, never_seen, retired
    ledger_behind: int | None

    @property
    def version(self) -> str:
        details = self.health.details if self.health else {}
        return str(details.get("version") or details.get("software_version") or "")

    @property
    def link(self) -> str:
        details = self.health.details if self.health else {}
        return str(details.get("link") or details.get("link_state") or "")


def devices(store: IssuerRepository, now: int) -> list[DeviceRow]:
    """Every registered device, stale or unhealthy first (then most behind the ledger), retired ones last."""
    seq = store.ledger_seq()
    health = store.all_health()
    rows = []
    for device in store.devices(limit=100_000):
        h = health.get(device.id)
        if device.status == "retired":
            status = "retired"
        elif h is None or h.last_seen is None:
            status = "never_seen"
        else:
            status = "ok" if now - h.last_seen <= STALE_AFTER_S else "stale"
        behind = None if h is None or h.ledger_seq is None else max(0, seq - h.ledger_seq)
        rows.append(DeviceRow(device, h, status, behind))
    rank = {"stale": 0, "never_seen": 1, "ok": 2, "retired": 3}
    return sorted(rows, key=lambda r: (rank[r.status], -(r.ledger_behind or 0), r.device.id))


@dataclass(frozen=True)
class GateReceipt:
    """Whether a gate has applied the ledger change that revoked a pass (its reported ledger sequence)."""

    device: Device
    ledger_seq: int | None
    received: bool
    reported_at: int | None = None  # when the gate last reported its sequence (it had the revocation by then)


@dataclass(frozen=True)
class PassView:
    credential_id: str
    details: dict[str, object]
    revocation: RevocationRecord | None
    revocation_seq: int | None
    gates: tuple[GateReceipt, ...]


def pass_sites(details: dict[str, object], sites: list[SiteSettings]) -> set[int]:
    """The sites a credential can be used at, from its recorded details (transit: every transit site)."""
    listed = details.get("sites")
    if isinstance(listed, list):
        return {int(s) for s in listed}
    for key in ("site", "venue"):
        value = details.get(key)
        if isinstance(value, int):
            return {value}
    if details.get("product") == "transit":
        return {s.number for s in sites if s.kind.value in ("metro", "bus", "water_bus")}
    return set()


def find_pass(store: IssuerRepository, ref: str) -> PassView | None:
    """A pass by credential id (hex) or, failing that, the newest transit pass of an account."""
    ref = ref.strip()
    candidates = [ref.lower()] if ref and all(c in "0123456789abcdefABCDEF" for c in ref) and len(ref) % 2 == 0 else []
    candidates += store.credentials_for_account(ref, limit=1) if ref else []
    for credential_id in candidates:
        details = store.credential_details(bytes.fromhex(credential_id))
        if details is not None:
            return view_pass(store, credential_id, details)
    return None


def view_pass(store: IssuerRepository, credential_id: str, details: dict[str, object]) -> PassView:
    revocation = store.credential_revocation(credential_id)
    seq = store.change_seq("revoke", credential_id) if revocation is not None else None
    sites = pass_sites(details, store.sites())
    health = store.all_health()
    gates = []
    for device in store.devices(limit=100_000):
        if device.site not in sites or device.status == "retired":
            continue
        h = health.get(device.id)
        gate_seq = None if h is None else h.ledger_seq
        gates.append(GateReceipt(device, gate_seq, seq is not None and gate_seq is not None and gate_seq >= seq,
                                 None if h is None else h.reported_at or h.last_seen))
    return PassView(credential_id, details, revocation, seq, tuple(gates))
