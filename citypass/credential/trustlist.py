"""The trust list: which keys a gate believes, for what, and when — signed by the root key.

A gate holds public keys only. Each :class:`TrustedKey` has a key id, algorithm, role, a validity
period and a scope (products and sites it may sign for). The list is versioned and signed by the root
key as a COSE_Sign1, so a gate that pins only the root public key can take a new list from anywhere
(a USB stick, the issuer's HTTP API, an MQTT broker it does not trust) and believe exactly what the
root signed.

Roles: ``issuer`` keys sign credentials; ``ledger`` keys sign ledger snapshots and deltas; ``release``
keys sign software update bundles.

Partner platforms (:mod:`citypass.credential.partners`) are listed beside our keys under ``partners``: an
older gate ignores that entry and so denies their codes, as it always did.

Rotation is two entries at once: the new key is listed (valid from now), the old one gets a
``valid_to`` in the future; after that instant codes signed by it are denied ``key_retired``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citypass.credential.cose import FormatError, decode_cbor, encode_cbor, parse_sign1, sign1
from citypass.credential.keys import Alg, SigningKey, VerifyKey
from citypass.credential.partners import Partner, PartnerKey
from citypass.errors import InvalidInput

ROLES = ("issuer", "ledger", "release")
FORMAT_VERSION = 1


class TrustError(InvalidInput):
    """A trust list that is malformed or not signed by the pinned root."""


@dataclass(frozen=True)
class TrustedKey:
    """One public key and what it is trusted for."""

    kid: bytes
    key: VerifyKey
    role: str
    valid_from: int
    valid_to: int | None = None  # None: until a later trust list retires it
    products: frozenset[int] | None = None  # None: every product
    sites: frozenset[int] | None = None  # None: every site

    def in_scope(self, product: int, site: int | None) -> bool:
        if self.products is not None and product not in self.products:
            return False
        return self.sites is None or site is None or site in self.sites

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": self.kid, "alg": int(self.key.alg), "pub": self.key.raw, "role": self.role,
            "from": self.valid_from,
        }
        if self.valid_to is not None:
            out["to"] = self.valid_to
        if self.products is not None:
            out["products"] = sorted(self.products)
        if self.sites is not None:
            out["sites"] = sorted(self.sites)
        return out

    @classmethod
    def from_cbor(cls, obj: Any) -> TrustedKey:
        if not isinstance(obj, dict):
            raise FormatError("key entry must be a map")
        try:
            key = VerifyKey.from_raw(Alg(obj["alg"]), obj["pub"])
            entry = cls(
                kid=obj["kid"], key=key, role=obj["role"], valid_from=int(obj["from"]),
                valid_to=None if obj.get("to") is None else int(obj["to"]),
                products=None if obj.get("products") is None else frozenset(int(p) for p in obj["products"]),
                sites=None if obj.get("sites") is None else frozenset(int(s) for s in obj["sites"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"bad key entry: {exc}") from None
        if entry.role not in ROLES or entry.kid != key.kid:
            raise FormatError("key entry has an unknown role or a kid that does not match its key")
        return entry


@dataclass(frozen=True)
class TrustList:
    """A versioned set of trusted keys plus list-wide policy."""

    version: int
    issued_at: int
    keys: tuple[TrustedKey, ...]
    require_dynamic: frozenset[int] = frozenset()  # products that must be shown as dynamic codes
    partners: tuple[Partner, ...] = ()
    _by_kid: dict[tuple[str, bytes], TrustedKey] = field(default_factory=dict, compare=False, repr=False)
    _partner_kids: dict[bytes, tuple[Partner, PartnerKey]] = field(default_factory=dict, compare=False,
                                                                   repr=False)
    _partner_numbers: dict[int, Partner] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        index = {(k.role, k.kid): k for k in self.keys}
        if len(index) != len(self.keys):
            raise FormatError("two keys of one role share a kid")
        object.__setattr__(self, "_by_kid", index)
        numbers = {p.number: p for p in self.partners}
        if len(numbers) != len(self.partners) or len({p.id for p in self.partners}) != len(self.partners):
            raise FormatError("two partners share an id or a number")
        object.__setattr__(self, "_partner_numbers", numbers)
        # CP1 codes name their key by kid alone: a partner's CP1 key may share it with no issuer key, nor another's
        kids = {k.kid: (p, k) for p in self.partners for k in p.keys if k.alg != "sm2"}
        issuer_kids = {kid for role, kid in index if role == "issuer"}
        if len(kids) != sum(1 for p in self.partners for k in p.keys if k.alg != "sm2") or kids.keys() & issuer_kids:
            raise FormatError("a partner's CP1 key shares its kid with another key")
        object.__setattr__(self, "_partner_kids", kids)

    def find(self, kid: bytes, role: str = "issuer") -> TrustedKey | None:
        return self._by_kid.get((role, kid))

    def find_partner_key(self, kid: bytes) -> tuple[Partner, PartnerKey] | None:
        """The partner whose CP1 key (Ed25519 or P-256) has ``kid``."""
        return self._partner_kids.get(kid)

    def partner(self, ref: int | str) -> Partner | None:
        """A partner by number (GM1 codes carry it) or by id."""
        if isinstance(ref, int):
            return self._partner_numbers.get(ref)
        return next((p for p in self.partners if p.id == ref), None)

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": FORMAT_VERSION, "version": self.version, "issued_at": self.issued_at,
            "keys": [k.to_cbor() for k in self.keys], "require_dynamic": sorted(self.require_dynamic),
        }
        if self.partners:
            out["partners"] = [p.to_cbor() for p in self.partners]
        return out

    @classmethod
    def from_cbor(cls, obj: Any) -> TrustList:
        if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
            raise FormatError("not a version 1 trust list")
        try:
            return cls(
                version=int(obj["version"]), issued_at=int(obj["issued_at"]),
                keys=tuple(TrustedKey.from_cbor(k) for k in obj["keys"]),
                require_dynamic=frozenset(int(p) for p in obj.get("require_dynamic", [])),
                partners=tuple(Partner.from_cbor(p) for p in obj.get("partners", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"bad trust list: {exc}") from None

    def sign(self, root: SigningKey) -> bytes:
        """The signed trust list (a COSE_Sign1 by the root key)."""
        return sign1(root, encode_cbor(self.to_cbor()))

    @classmethod
    def verify(cls, signed: bytes, root: VerifyKey) -> TrustList:
        """Parse and check a signed trust list against the pinned root key; :class:`TrustError` if not."""
        try:
            msg = parse_sign1(decode_cbor(signed))
            if msg.kid != root.kid or not msg.verify(root):
                raise TrustError("trust list is not signed by the pinned root key")
            return cls.from_cbor(decode_cbor(msg.payload))
        except FormatError as exc:
            raise TrustError(f"malformed trust list: {exc}") from None
