"""The records the issuer's repository stores and returns: plain frozen dataclasses, no storage types.

They are what the API layer sees of storage, whatever the backend (SQLite today; see
:mod:`citypass.issuer.repository`). Times are Unix seconds; ids are text (credential ids as lowercase hex).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citypass.credential.trustlist import TrustedKey
from citypass.errors import Conflict as Conflict  # re-exported: the repository's errors
from citypass.errors import NotFound as NotFound
from citypass.errors import Unavailable

#: Roles an API token can have. ``device`` tokens come only from redeeming an enrollment.
ROLES = ("admin", "issuer", "operator", "technician", "auditor")
DEVICE_ROLE = "device"

#: What a ledger change log row can record (the ``kind`` of :class:`LedgerChange`).
CHANGE_KINDS = ("revoke", "unrevoke", "revoke_holder", "unrevoke_holder", "site", "trust")


class SlotFull(Conflict):
    """The slot has fewer free places than the party asks for."""


class StorageFull(Unavailable):
    """The store's disk (or quota) is full: nothing was written; try again once there is space."""


class TransactionConflict(Unavailable):
    """The database broke a deadlock or a serialization conflict by rolling this transaction back: nothing was
    written, and running it again is safe (PostgreSQL; SQLite's one writer at a time never raises it)."""


@dataclass(frozen=True)
class StoredKey:
    entry: TrustedKey
    active: bool  # the key the issuer currently signs with, for its role


@dataclass(frozen=True)
class LedgerChange:
    """One step of the ledger sequence: ``seq`` is the ledger sequence number this change produced."""

    seq: int
    at: int
    kind: str
    ref: str  # credential id / holder id (hex), site name, or key id


@dataclass(frozen=True)
class RevocationRecord:
    kind: str  # "credential" or "holder"
    id: str
    revoked_at: int
    reason: str


@dataclass(frozen=True)
class Slot:
    id: str
    venue: int
    starts_at: int
    ends_at: int
    capacity: int
    booked: int
    created_at: int

    @property
    def available(self) -> int:
        return self.capacity - self.booked


@dataclass(frozen=True)
class ReservationRecord:
    id: str
    slot_id: str
    venue: int
    party: int
    status: str  # "held" (places taken, code being signed), "active", "cancelled", "expired" (a hold that died)
    credential_id: str | None
    created_at: int
    cancelled_at: int | None = None


@dataclass(frozen=True)
class Device:
    id: str
    site: int
    direction: str
    description: str
    status: str  # "registered", "enrolled", "retired"
    registered_at: int
    enrolled_at: int | None = None
    retired_at: int | None = None


@dataclass(frozen=True)
class DeviceHealth:
    device_id: str
    last_seen: int | None = None
    ledger_seq: int | None = None
    outbox_backlog: int | None = None
    clock_offset_s: float | None = None
    reported_at: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Enrollment:
    id: str
    device_id: str
    created_at: int
    expires_at: int
    used_at: int | None = None


@dataclass(frozen=True)
class TokenRecord:
    id: str
    role: str
    secret_hash: bytes
    label: str
    created_at: int
    device_id: str | None = None
    revoked_at: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: int
    actor: str  # token id, or "-" for an anonymous call
    role: str
    method: str
    path: str
    status: int
    detail: str


@dataclass(frozen=True)
class TapEvent:
    """One outbox event as a gate uploads it (see gate/ledger/outbox.py), body already JSON-decoded."""

    event_id: str
    tap_id: str
    kind: str  # tap | annul | passage | stage
    body: dict[str, Any]
    created_at: int


@dataclass(frozen=True)
class Quarantined:
    event_id: str
    error: str


@dataclass(frozen=True)
class QuarantineRecord:
    """An uploaded event kept aside, never counted: it failed validation (``collision`` False), or its event id
    was used first by another device (``collision`` True)."""

    event_id: str
    tap_id: str
    kind: str
    device_id: str | None
    received_at: int
    error: str
    collision: bool = False


@dataclass(frozen=True)
class IngestResult:
    """``acknowledged``: every event id now durably held (new, repeated, or quarantined as invalid —
    a gate must not resend those forever); ``new_taps``: taps stored for the first time."""

    acknowledged: tuple[str, ...]
    duplicates: int
    new_taps: int
    quarantined: tuple[Quarantined, ...] = ()


@dataclass(frozen=True)
class WalletClaimRecord:
    """A pass ordered for a phone wallet (:mod:`citypass.issuer.wallet`). ``order_cbor`` is the unsigned order;
    once a phone claims it, ``holder_id`` is its key's id and ``code`` the credential signed for that key."""

    id: str
    product: int
    order_cbor: bytes
    created_at: int
    expires_at: int
    claimed_at: int | None = None
    holder_id: str | None = None
    credential_id: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class BenefitUse:
    """One use of a benefit card counted by the centre (:mod:`citypass.issuer.benefits`)."""

    ref: str  # "tap:<tap id>" or "booking:<reservation id>": a use is counted once
    credential_id: str  # hex
    period_start: int  # Unix s: the start of the quota period the use falls in
    at: int
    source: str  # "tap" or "booking"
    gate_id: str | None
    site: int | None
    quota: int  # the card's quota (so that over-quota periods are found in SQL)
