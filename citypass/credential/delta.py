"""Signed ledger deltas: what changed in the issuer's ledger between two sequence numbers.

A snapshot (:mod:`citypass.credential.snapshot`) carries the whole ledger; a delta carries only the changes
from ``base_seq`` to ``seq``, so a gate that was at ``base_seq`` can catch up with a few hundred bytes
instead of megabytes of revocations. Deltas are signed end to end by a ``ledger`` key of the
root-signed trust list, exactly like snapshots, so whoever relays them (the issuer's HTTP API, an
MQTT broker) can neither inject nor lift a revocation.

Wire form: an untagged COSE_Sign1 (the profile of :mod:`citypass.credential.cose`) by a ledger key over::

    {"v": 1, "base_seq": uint, "seq": uint (> base_seq), "issued_at": uint,
     "revoked": [cti, …], "unrevoked": [cti, …],
     "revoked_holders": [holder_id, …], "unrevoked_holders": [holder_id, …],
     "site_updates": [ site settings … ],   ; optional: the sites added or changed in the range
     "sites": [ site settings … ]}          ; optional, older issuers only: the complete site list

Ids are byte strings (credential ids 1..16 bytes, holder ids 16 bytes), each list sorted, no id in
two lists of one kind. ``site_updates`` carries only the sites that changed, by ascending number, each
with its complete settings: the gate upserts them by number and keeps every other site. A city has tens
of thousands of sites (70,000 settings are 2.5 MB even untitled, beyond an MQTT broker's 1 MiB packet), so the issuer
never sends the whole table in a delta; ``sites`` (the complete list, replacing the gate's) is still read
from issuers that predate ``site_updates``, and a delta may not carry both. A delta applies only on top
of exactly ``base_seq``; a gate at any other sequence fetches a snapshot instead, so it can never
silently skip a change. Trust-list changes (keys, rotation, required dynamic codes) never travel in a
delta: they need the root-signed list of a snapshot.

Example::

    >>> from citypass.credential.keys import SigningKey
    >>> from citypass.credential.trustlist import TrustedKey, TrustList
    >>> ledger = SigningKey.generate()
    >>> trust = TrustList(1, 0, (TrustedKey(ledger.kid, ledger.public, "ledger", 0),))
    >>> data = LedgerDelta(base_seq=7, seq=9, issued_at=100, revoked=frozenset({b"\\x01" * 8})).sign(ledger)
    >>> delta = load_delta(data, trust)
    >>> (delta.base_seq, delta.seq, len(delta.revoked))
    (7, 9, 1)

A gate applies it with ``GateLedger.apply_delta(**delta.ledger_arguments())``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from citypass.credential.cose import FormatError, decode_cbor, encode_cbor, parse_sign1, sign1
from citypass.credential.keys import SigningKey
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustList
from citypass.errors import InvalidInput

FORMAT_VERSION = 1
#: Most ids one delta may carry across its four lists (a larger gap is a snapshot's job).
MAX_IDS = 1_000_000
MAX_ID_LENGTH = 16
_KEYS = frozenset({"v", "base_seq", "seq", "issued_at", "revoked", "unrevoked", "revoked_holders",
                   "unrevoked_holders", "sites", "site_updates"})


class DeltaError(InvalidInput):
    """A delta that is malformed or whose signature does not check out."""


@dataclass(frozen=True)
class LedgerDelta:
    """The changes from ledger sequence ``base_seq`` to ``seq``, signed at ``issued_at``."""

    base_seq: int
    seq: int
    issued_at: int
    revoked: frozenset[bytes] = frozenset()
    unrevoked: frozenset[bytes] = frozenset()
    revoked_holders: frozenset[bytes] = frozenset()
    unrevoked_holders: frozenset[bytes] = frozenset()
    sites: tuple[SiteSettings, ...] | None = None  # the complete list (older issuers); None: unchanged
    site_updates: tuple[SiteSettings, ...] = ()  # sites added or changed, upserted by number

    def __post_init__(self) -> None:
        for name in ("base_seq", "seq", "issued_at"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise DeltaError(f"{name} must be a non-negative integer")
        if self.seq <= self.base_seq:
            raise DeltaError(f"seq ({self.seq}) must be greater than base_seq ({self.base_seq})")
        if self.revoked & self.unrevoked or self.revoked_holders & self.unrevoked_holders:
            raise DeltaError("an id is both revoked and unrevoked in one delta")
        lists = (self.revoked, self.unrevoked, self.revoked_holders, self.unrevoked_holders)
        if sum(len(ids) for ids in lists) > MAX_IDS:
            raise DeltaError(f"a delta carries at most {MAX_IDS} ids")
        for ids in lists:
            for item in ids:
                if not isinstance(item, bytes) or not 1 <= len(item) <= MAX_ID_LENGTH:
                    raise DeltaError("ids must be byte strings of 1..16 bytes")
        if self.sites is not None and self.site_updates:
            raise DeltaError("a delta carries either the complete site list or site updates, not both")
        numbers = [s.number for s in self.site_updates]
        if numbers != sorted(set(numbers)):
            raise DeltaError("site updates must be in ascending number order, each site once")

    @property
    def empty(self) -> bool:
        return not (self.revoked or self.unrevoked or self.revoked_holders or self.unrevoked_holders
                    or self.sites is not None or bool(self.site_updates))

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": FORMAT_VERSION, "base_seq": self.base_seq, "seq": self.seq, "issued_at": self.issued_at,
            "revoked": sorted(self.revoked), "unrevoked": sorted(self.unrevoked),
            "revoked_holders": sorted(self.revoked_holders), "unrevoked_holders": sorted(self.unrevoked_holders),
        }
        if self.sites is not None:
            out["sites"] = [s.to_cbor() for s in self.sites]
        if self.site_updates:
            out["site_updates"] = [s.to_cbor() for s in self.site_updates]
        return out

    def sign(self, ledger_key: SigningKey) -> bytes:
        """The delta's wire bytes: a COSE_Sign1 by ``ledger_key`` over the deterministic CBOR payload."""
        return sign1(ledger_key, encode_cbor(self.payload()))

    def ledger_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``citypass.gate.ledger.GateLedger.apply_delta``: revocations and sites."""
        return {
            "sites": self.sites, "site_updates": self.site_updates,
            "base_seq": self.base_seq, "seq": self.seq, "issued_at": self.issued_at,
            "revoked": sorted(self.revoked), "unrevoked": sorted(self.unrevoked),
            "revoked_holders": sorted(self.revoked_holders), "unrevoked_holders": sorted(self.unrevoked_holders),
        }


def parse_delta(data: bytes) -> tuple[LedgerDelta, bytes]:
    """Parse a delta **without** verifying it; returns it with the signer's kid. Tools only."""
    try:
        msg = parse_sign1(decode_cbor(data))
        return _from_payload(decode_cbor(msg.payload)), msg.kid
    except FormatError as exc:
        raise DeltaError(f"malformed delta: {exc}") from None


def load_delta(data: bytes, trust: TrustList) -> LedgerDelta:
    """Verify a delta against ``trust`` (the gate's current, root-verified trust list) and parse it.

    The signer must be a ``ledger`` key of the list, valid at the delta's ``issued_at``."""
    if not isinstance(data, bytes) or len(data) > 64 * MAX_IDS:
        raise DeltaError("a delta must be bytes of reasonable size")
    try:
        msg = parse_sign1(decode_cbor(data))
        key = trust.find(msg.kid, role="ledger")
        if key is None:
            raise DeltaError("delta is signed by a key the trust list does not name as a ledger key")
        if not msg.verify(key.key):
            raise DeltaError("delta signature is invalid")
        delta = _from_payload(decode_cbor(msg.payload))
    except FormatError as exc:
        raise DeltaError(f"malformed delta: {exc}") from None
    if delta.issued_at < key.valid_from or (key.valid_to is not None and delta.issued_at >= key.valid_to):
        raise DeltaError("delta was signed outside its ledger key's validity")
    return delta


def _from_payload(payload: Any) -> LedgerDelta:
    if not isinstance(payload, dict) or payload.get("v") != FORMAT_VERSION:
        raise DeltaError("not a version 1 ledger delta")
    unknown = set(payload) - _KEYS
    if unknown:
        raise DeltaError(f"unknown delta field(s): {sorted(map(str, unknown))}")
    try:
        sites, updates = payload.get("sites"), payload.get("site_updates", [])
        if (sites is not None and not isinstance(sites, list)) or not isinstance(updates, list):
            raise DeltaError("sites and site_updates must be lists")
        return LedgerDelta(
            base_seq=_uint(payload, "base_seq"), seq=_uint(payload, "seq"), issued_at=_uint(payload, "issued_at"),
            revoked=_ids(payload, "revoked"), unrevoked=_ids(payload, "unrevoked"),
            revoked_holders=_ids(payload, "revoked_holders"), unrevoked_holders=_ids(payload, "unrevoked_holders"),
            sites=None if sites is None else tuple(SiteSettings.model_validate(s) for s in sites),
            site_updates=tuple(SiteSettings.model_validate(s) for s in updates),
        )
    except ValidationError as exc:
        raise DeltaError(f"malformed delta sites: {exc.error_count()} error(s)") from None


def _uint(payload: dict[Any, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise DeltaError(f"{name} must be a non-negative integer")
    return value


def _ids(payload: dict[Any, Any], name: str) -> frozenset[bytes]:
    value = payload.get(name)
    if not isinstance(value, list) or len(value) > MAX_IDS:
        raise DeltaError(f"{name} must be a list of byte strings")
    ids = frozenset(value) if all(isinstance(v, bytes) for v in value) else None
    if ids is None or len(ids) != len(value):
        raise DeltaError(f"{name} must be a list of distinct byte strings")
    return ids
