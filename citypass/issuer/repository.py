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

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustedKey
from citypass.issuer.control_records import GroupStop, QuarterTally, StoredIncident, TourGroup
from citypass.issuer.incidents import Incident
from citypass.issuer.ingest import PreparedBatch
from citypass.issuer.journeys import Leg
from citypass.issuer.records import (
    AuditEntry,
    BenefitUse,
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
    def sites_named(self, names: Collection[str]) -> list[SiteSettings]:
        """The sites with these names (unknown names left out), by number: a probe, not a read of every site."""
        ...
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
    def release_enrollment(self, enrollment_id: str, secret_hash: bytes, device_id: str, at: int,
                           window_s: int) -> Enrollment:
        """Give back an enrollment ``device_id`` redeemed less than ``window_s`` ago (the device found a problem
        after the redeem): it may be redeemed again until it expires, and the device is ``registered`` again
        (not enrolled). NotFound for a wrong secret or another device's enrollment; Conflict when it is not
        redeemed, was redeemed too long ago, or the device is retired."""
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

    def store_batches(self, uploads: Sequence[tuple[PreparedBatch, str | None]],
                      received_at: int) -> list[IngestResult]:
        """Store several devices' validated batches (batch, device id) in one transaction, each by the rules of
        :meth:`store_batch`; their results in order. The batches' event ids and tap ids are disjoint
        (:func:`citypass.issuer.ingest.disjoint_groups`)."""
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


class ControlRoomRepository(Protocol):
    """The control room (console and group API): site updates, incidents kept at ingest, quarter-hour tallies,
    tour groups, and taps read by page. Filled by :mod:`citypass.issuer.watch` after every stored batch."""

    def exclusive(self) -> AbstractContextManager[object]:
        """One write transaction around the block; the repository's own writes inside it join it. Ingest stores a
        batch and brings the control room's tables up to date in one (:func:`citypass.issuer.ingest.ingest`), so two
        ingest workers cannot overwrite each other's incidents with ones computed from fewer taps, and a crash
        leaves both or neither. (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction holding an advisory lock.)"""
        ...
    def update_site(self, settings: SiteSettings, at: int) -> None:
        """Replace a site's settings (same number and name) and log a ``site`` ledger change, in one transaction:
        gates get the new settings with their next delta. NotFound for an unknown number; Conflict for a new name."""
        ...
    def change_seq(self, kind: str, ref: str) -> int | None:
        """The latest ledger sequence number of a change of ``kind`` about ``ref`` (None: never logged)."""
        ...

    def credential_revocation(self, credential_id: str) -> RevocationRecord | None:
        """The revocation in force for a credential id (hex), if any."""
        ...
    def credentials_for_account(self, account: str, limit: int = 20) -> list[str]:
        """Ids of the transit credentials issued for ``account``, newest first."""
        ...
    def all_health(self) -> dict[str, DeviceHealth]:
        """Every device's last health report, by device id."""
        ...

    def recount_quarters(self, keys: Iterable[tuple[int, int]]) -> None:
        """Recount the tallies of these (site, quarter start) pairs from the stored taps (idempotent: allowed
        ``entry``/``exit`` taps' persons minus annulled ones)."""
        ...
    def quarter_tallies(self, since: int, until: int, site: int | None = None) -> list[QuarterTally]:
        """Tallies of quarters starting in ``[since, until)`` (of one site, when given), by site then quarter."""
        ...

    def taps_of_credentials(self, credential_ids: Iterable[str], since: int, until: int) -> list[TapRecord]:
        """Every tap of these credentials decided in ``[since, until)``, in no particular order."""
        ...
    def open_incident_credentials(self, credential_ids: Iterable[str], since: int) -> list[str]:
        """Of these credentials, the ones with an unacknowledged incident that began at or after ``since`` — and,
        on a backend with several writers, lock them all for the rest of the transaction, so that no other worker
        recomputes their incidents and journeys until this one commits (ingest's upkeep calls this first)."""
        ...
    def gate_taps_of_note(self, site: int, gate_id: str, since: int, until: int) -> list[TapRecord]:
        """A gate's refused or flagged taps decided in ``[since, until)`` (what incidents grouped by gate are
        made of), ``site`` being the gate's site."""
        ...
    def taps_by_id(self, tap_ids: Iterable[str]) -> list[TapRecord]:
        """The stored taps with these ids (unknown ids are left out)."""
        ...
    def taps_page(self, *, since: int, until: int, after: tuple[int, str] | None = None, site: int | None = None,
                  limit: int = 1000) -> list[TapRecord]:
        """Keyset paging: taps in ``[since, until)`` ordered by ``(at, tap_id)``, strictly after ``after``."""
        ...
    def tap_ids_received(self, since: int, limit: int = 50_000) -> list[tuple[int, str]]:
        """(received_at, tap_id) of the taps received at or after ``since``, in that order (an index-only read:
        the live stream's way to find what is new, including a batch committed late with an earlier time)."""
        ...

    def replace_journeys(self, credential_ids: Sequence[str], since: int, legs: Sequence[Leg]) -> None:
        """Replace the kept journeys of these credentials whose last tap is at or after ``since`` by ``legs``
        (recomputed from their taps; see :func:`citypass.issuer.watch.update_journeys`)."""
        ...
    def journey_legs(self, since: int, until: int, *, max_journey_s: int, credential_id: str | None = None,
                     limit: int = 1_000_000) -> list[Leg]:
        """The kept journeys the report of ``[since, until)`` shows (of one credential, when given), in the report's
        order (start, credential, tap ids), at most ``limit``: the legs starting in the window, and the complete
        rides that started up to ``max_journey_s`` before it and ended in it. Each gives one journey of the
        report (:func:`citypass.issuer.journeys.window_journeys`), so ``limit`` legs are the report's first
        ``limit`` journeys: a day's report reads a page, not the day."""
        ...

    def save_incidents(self, scopes: Sequence[str], since: int, incidents: Sequence[tuple[str, Incident]],
                       found_at: int) -> int:
        """Replace the unacknowledged incidents of ``scopes`` that began at or after ``since`` by ``incidents``
        ((scope, incident) pairs), in one transaction; an incident already stored (same id) is kept as it is,
        acknowledgement included. Returns how many were new."""
        ...
    def stored_incidents(self, *, since: int | None = None, until: int | None = None, kind: str | None = None,
                         open_only: bool = False, after: tuple[int, str] | None = None,
                         limit: int = 100, latest_first: bool = False) -> list[StoredIncident]:
        """Incidents overlapping ``[since, until)``, ordered by ``(first_at, id)``, strictly after ``after``;
        ``latest_first``: the ``limit`` most recently active ones instead, by ``last_at`` descending (the console)."""
        ...
    def stored_incident(self, incident_id: str) -> StoredIncident: ...
    def ack_incident(self, incident_id: str, at: int, actor: str, note: str) -> tuple[StoredIncident, bool]:
        """Acknowledge once; the bool is False when it already was (the first acknowledgement stays)."""
        ...
    def open_incident_count(self) -> int: ...

    def add_group(self, group: TourGroup) -> None:
        """Store a group and its stops (position empty). Conflict when the id exists."""
        ...
    def group(self, group_id: str) -> TourGroup: ...
    def groups(self, *, site: int | None = None, inside: bool | None = None, after: str | None = None,
               limit: int = 200) -> list[TourGroup]:
        """Groups by id (keyset: ids after ``after``); ``site``/``inside`` filter on the last known position."""
        ...
    def groups_due(self, *, planned_before: int, limit: int = 1000) -> list[TourGroup]:
        """Groups with a stop planned to start before ``planned_before`` where nobody has been admitted yet."""
        ...
    def group_count(self) -> int: ...
    def group_stops_of(self, credential_ids: Iterable[str]) -> dict[str, tuple[str, GroupStop]]:
        """The (group id, stop) each of these credentials was issued for; others are left out."""
        ...
    def track_groups(self, credential_ids: Sequence[str], moves: Sequence[tuple[str, int, int, bool]]) -> None:
        """Recount the stops of these group passes from the stored taps (persons admitted, first admission), and
        move groups: (group id, site, at, inside) applied only when ``at`` is not older than the last position."""
        ...


class BenefitRepository(Protocol):
    """The benefit card's central count (:mod:`citypass.issuer.benefits`): one row per use, keyed by its ref."""

    def add_benefit_use(self, use: BenefitUse) -> int | None:
        """Record ``use`` unless its ``ref`` is already recorded (then None); else the card's number of uses
        in ``use.period_start``'s period, this one included. Idempotent under concurrent callers."""
        ...
    def benefit_use_count(self, credential_id: str, period_start: int) -> int: ...
    def benefit_uses(self, credential_id: str, period_start: int) -> list[BenefitUse]:
        """The card's uses in the period, ordered by ``(at, ref)``."""
        ...
    def benefit_overuse(self, since: int) -> list[tuple[str, int]]:
        """``(credential_id, period_start)`` of cards used more often than their quota in a period starting at
        or after ``since`` minus 366 days, ordered by ``(period_start, credential_id)``."""
        ...


class IssuerRepository(LedgerRepository, BookingRepository, FleetRepository, TapRepository, AccessRepository,
                       WalletRepository, ControlRoomRepository, BenefitRepository, Protocol):
    """Everything the issuer stores. ``close()`` releases connections."""

    def close(self) -> None: ...


__all__ = [
    "AccessRepository", "BookingRepository", "ControlRoomRepository", "FleetRepository", "IssuerRepository",
    "LedgerRepository", "TapRepository", "WalletRepository",
]
