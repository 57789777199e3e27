"""The issuer's repository interface: everything the service and the HTTP API need from storage.

The API layer (:mod:`citypass.issuer.api`) and the service (:mod:`citypass.issuer.service`) only ever talk to an
:class:`IssuerRepository`; :class:`citypass.issuer.store.IssuerStore` is the SQLite implementation (sqlite-utils,
one file in the issuer home). A PostgreSQL backend for city scale is another class with these methods —
nothing above this line changes. What each method must guarantee is written on it; the two that carry
the hard guarantees are :meth:`BookingRepository.hold_places` (never overbook, under any concurrency)
and :meth:`TapRepository.store_batch` (idempotent by event id and tap id).

Records are the dataclasses of :mod:`citypass.issuer.records`; taps are :class:`citypass.issuer.tap_records.TapRecord`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustedKey
from citypass.issuer.ingest import PreparedBatch
from citypass.issuer.records import (
    AuditEntry,
    Device,
    DeviceHealth,
    Enrollment,
    IngestResult,
    LedgerChange,
    QuarantineRecord,
    ReservationRecord,
    RevocationRecord,
    Slot,
    StoredKey,
    TokenRecord,
    WalletClaimRecord,
)
from citypass.issuer.tap_records import TapRecord


class LedgerRepository(Protocol):
    """Sites, keys, issued credentials, revocations and the ledger change log.

    Every change a gate must learn about goes through :meth:`log_change` (directly, or inside
    ``add_site``/``revoke``/…), which raises the ledger sequence by one and records what changed in
    the same transaction — that log is what signed deltas are computed from."""

    def get_meta(self, key: str, default: str | None = None) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def bump(self, key: str) -> int: ...

    def add_site(self, settings: SiteSettings, at: int = 0) -> None: ...
    def sites(self) -> list[SiteSettings]: ...
    def next_site_number(self) -> int: ...

    def add_key(self, entry: TrustedKey, active: bool) -> None: ...
    def set_key_valid_to(self, role: str, kid: bytes, valid_to: int) -> None: ...
    def keys(self) -> list[StoredKey]: ...
    def active_key(self, role: str) -> TrustedKey | None: ...

    def record_credential(self, cred_id: bytes, product: int, issued_at: int, kid: bytes,
                          holder_id: bytes | None, details: dict[str, Any]) -> None: ...
    def credential_exists(self, cred_id: bytes) -> bool: ...
    def credential_details(self, cred_id: bytes) -> dict[str, Any] | None: ...

    def revoke(self, cred_id: bytes, at: int, reason: str = "") -> bool:
        """Revoke a credential id; False (and no ledger change) when it already was."""
        ...
    def unrevoke(self, cred_id: bytes, at: int) -> bool: ...
    def revoke_holder(self, holder_id: bytes, at: int, reason: str = "") -> bool: ...
    def unrevoke_holder(self, holder_id: bytes, at: int) -> bool: ...
    def revoked_ids(self) -> Iterator[bytes]: ...
    def revoked_holders(self) -> Iterator[bytes]: ...
    def revocations(self, *, kind: str | None = None, limit: int = 100, offset: int = 0) -> list[RevocationRecord]: ...
    def revocation_count(self, kind: str) -> int:
        """How many ``credential`` or ``holder`` revocations are in force."""
        ...

    def ledger_seq(self) -> int: ...
    def log_change(self, kind: str, ref: str, at: int) -> int:
        """Raise the ledger sequence by one, record the change, return the new sequence number."""
        ...
    def changes_since(self, seq: int, limit: int, kinds: tuple[str, ...] | None = None) -> list[LedgerChange]:
        """Changes with sequence number > ``seq`` (of ``kinds``, when given), oldest first, at most ``limit``."""
        ...
    def changes_logged_from(self) -> int:
        """The lowest base sequence a delta can start from (changes before it predate the log)."""
        ...
    def publication_cursor(self) -> int:
        """How far the deltas published on MQTT reach, by any node (0: nothing published yet)."""
        ...
    def claim_publication(self, base: int, seq: int) -> bool:
        """Claim publishing the delta ``base`` → ``seq``: atomically move the publication cursor to ``seq`` if it is
        at or below ``base``. True for exactly one of several nodes claiming the same delta at once."""
        ...


class BookingRepository(Protocol):
    """Timed slots at venues and the reservations that take their places."""

    def add_slot(self, slot: Slot) -> None: ...
    def slot(self, slot_id: str) -> Slot: ...
    def slots(self, venue: int, *, since: int | None = None, limit: int = 200) -> list[Slot]: ...

    def hold_places(self, reservation_id: str, slot_id: str, party: int, at: int) -> ReservationRecord:
        """Atomically check that ``party`` places are free and take them (status ``held``).

        Raises :class:`~citypass.issuer.records.SlotFull` otherwise and :class:`~citypass.issuer.records.NotFound` for
        an unknown slot. Must hold under any number of concurrent callers, in any number of processes."""
        ...
    def activate_reservation(self, reservation_id: str, credential_id: bytes) -> ReservationRecord: ...
    def release_reservation(self, reservation_id: str) -> None:
        """Undo :meth:`hold_places` (the code could not be signed): delete it, give the places back."""
        ...
    def cancel_reservation(self, reservation_id: str, at: int) -> tuple[ReservationRecord, bool]:
        """Cancel and give the places back; the bool is False when it was already cancelled."""
        ...
    def expire_holds(self, created_before: int, at: int) -> list[ReservationRecord]:
        """Give back the places of ``held`` reservations made before ``created_before`` (their process died
        between holding and activating): status ``expired``; the ones expired now."""
        ...
    def reservations(self, *, status: str, since: int | None = None, limit: int = 200) -> list[ReservationRecord]:
        """Reservations with ``status`` made at or after ``since``, oldest first."""
        ...
    def reservation(self, reservation_id: str) -> ReservationRecord: ...


class FleetRepository(Protocol):
    """Gates and readers: registration, one-time enrollments, health reports."""

    def add_device(self, device: Device) -> None: ...
    def device(self, device_id: str) -> Device: ...
    def devices(self, *, limit: int = 500, offset: int = 0) -> list[Device]: ...
    def retire_device(self, device_id: str, at: int) -> Device: ...

    def add_enrollment(self, enrollment: Enrollment, secret_hash: bytes) -> None: ...
    def enrollment(self, enrollment_id: str, secret_hash: bytes, at: int) -> Enrollment:
        """The enrollment a secret names, if it could be redeemed at ``at`` — without redeeming it. NotFound and
        Conflict as :meth:`redeem_enrollment`."""
        ...
    def redeem_enrollment(self, enrollment_id: str, secret_hash: bytes, at: int) -> Enrollment:
        """Mark an enrollment used, once. NotFound for an unknown id or a wrong secret (compared in
        constant time); Conflict when it was used already or has expired."""
        ...

    def record_health(self, health: DeviceHealth) -> None: ...
    def health(self, device_id: str) -> DeviceHealth | None: ...


class TapRepository(Protocol):
    """Taps and their later facts, as gates upload them."""

    def store_batch(self, batch: PreparedBatch, device_id: str | None, received_at: int) -> IngestResult:
        """Store a validated batch in one transaction. Idempotent: an event id seen before is
        acknowledged and changes nothing; a tap id seen before is stored once; an annulment applies
        once, whether it arrives before or after its tap."""
        ...
    def taps(self, *, site: int | None = None, since: int | None = None, until: int | None = None,
             credential_id: str | None = None, limit: int = 200_000) -> list[TapRecord]: ...
    def tap_count(self) -> int: ...
    def quarantined(self, *, since: int | None = None, until: int | None = None,
                    limit: int = 100_000) -> list[QuarantineRecord]:
        """Events kept aside (invalid, or an id another device used first) received in ``[since, until)``,
        oldest first: what an operator sees as quarantine incidents."""
        ...


class AccessRepository(Protocol):
    """API tokens (hashed) and the audit log."""

    def add_token(self, token: TokenRecord, *, replace_device_tokens: bool = False) -> int:
        """Store a token; with ``replace_device_tokens``, revoke the live tokens of ``token.device_id`` in the
        same transaction and return how many."""
        ...
    def token(self, token_id: str) -> TokenRecord | None: ...
    def tokens(self) -> list[TokenRecord]: ...
    def revoke_token(self, token_id: str, at: int) -> bool: ...
    def revoke_device_tokens(self, device_id: str, at: int) -> int: ...

    def write_audit(self, *, at: int, actor: str, role: str, method: str, path: str, status: int,
                    detail: str) -> None: ...
    def audit_log(self, *, since: int | None = None, limit: int = 100, offset: int = 0) -> list[AuditEntry]: ...


class WalletRepository(Protocol):
    """Passes ordered for phone wallets, each claimable once (:mod:`citypass.issuer.wallet`)."""

    def add_wallet_claim(self, claim: WalletClaimRecord, secret_hash: bytes) -> None: ...
    def wallet_claim(self, claim_id: str) -> WalletClaimRecord: ...
    def take_wallet_claim(self, claim_id: str, secret_hash: bytes, holder_id: str, at: int) -> WalletClaimRecord:
        """Bind a claim to the phone whose holder id is ``holder_id``, once. NotFound for an unknown id or a wrong
        secret (compared in constant time); Conflict when another phone took it or it has expired. The same phone
        again gets the claim back as it stands (an answer lost on the way must not lose the pass)."""
        ...
    def complete_wallet_claim(self, claim_id: str, credential_id: str, code: str) -> None:
        """Keep the credential signed for a taken claim (only the first one is kept)."""
        ...


class IssuerRepository(LedgerRepository, BookingRepository, FleetRepository, TapRepository, AccessRepository,
                       WalletRepository, Protocol):
    """Everything the issuer stores. ``close()`` releases connections."""

    def close(self) -> None: ...


__all__ = [
    "AccessRepository", "BookingRepository", "FleetRepository", "IssuerRepository", "LedgerRepository",
    "TapRepository", "WalletRepository",
]
