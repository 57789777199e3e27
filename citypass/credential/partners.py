"""Partner platforms admitted by our root: federation in the trust list (互联互通).

A city's other code platforms — the metro company's ride code, a provincial government service code, a
neighbouring city's tourism card — issue codes with their own keys. Our root admits such a **partner** by
listing it in the root-signed trust list with:

* an ``id`` (a slug, e.g. ``hz-metro``) and a ``number`` (1..2³²−1), which GM1 codes carry;
* a name in Chinese and English, shown on the gate and in reports;
* its **keys**: Ed25519 or P-256 keys for codes in our own ``CP1`` format, SM2 keys for ``GM1`` codes;
* its **scope**: the products it may issue, the sites its codes may open, a validity window, the claims
  it may assert (``CLAIM_NAMES``) and the formats it may use.

A gate verifies a partner's code under that scope and nothing more: a product outside it is denied
``wrong_product``, a site outside it ``wrong_site``, a claim it may not assert ``key_out_of_scope``, a
code naming no admitted partner ``unknown_partner``. Revoking a partner is one signed ledger delta: its
:func:`revocation_id` goes into the revoked list (``partner_revoked`` from then on), and the next trust list
drops it. Usage and revocation of a partner's credentials are keyed by :func:`credential_id`, the
partner's number before its own id, so no partner can name (and so use up or revoke) another's passes.

    >>> p = Partner("hz-metro", 7, "杭州地铁", "Hangzhou Metro", (), valid_from=0, products=frozenset({3}))
    >>> Partner.from_cbor(p.to_cbor()) == p
    True
    >>> credential_id(p, bytes(8)).hex()
    '000000070000000000000000'
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

from citypass.credential.cose import FormatError
from citypass.credential.keys import Alg, VerifyKey, kid_for

#: Algorithms a partner key may have, by the name used in trust lists and on the command line.
PARTNER_ALGS = ("ed25519", "es256", "sm2")
#: Formats a partner may use (names of entries in the ``citypass.formats`` entry-point group).
PARTNER_FORMATS = ("cp1", "gm1")
#: Claims a partner may be allowed to assert, by name (the id and the product are always there).
CLAIM_NAMES = ("nbf", "exp", "cnf", "sites", "site", "party", "grace", "passback", "account", "modes", "quota",
               "period", "category")
#: The longest credential id a partner may use: ours are 1..16 bytes and a partner's gets its 4-byte number first.
MAX_PARTNER_CTI = 12
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


@dataclass(frozen=True)
class PartnerKey:
    """One of a partner's public keys. ``kid`` is 2 bytes of SHA-256 over ``pub`` for every algorithm."""

    alg: str
    pub: bytes

    @property
    def kid(self) -> bytes:
        return kid_for(self.pub)

    def verify_key(self) -> Any:
        """The key object: :class:`~citypass.credential.keys.VerifyKey` or an SM2 key (needs ``tongsuopy``)."""
        return _load_key(self.alg, self.pub)

    def to_cbor(self) -> dict[str, Any]:
        return {"alg": self.alg, "pub": self.pub}


@functools.lru_cache(maxsize=256)
def _load_key(alg: str, pub: bytes) -> Any:
    if alg == "sm2":
        from citypass.credential.sm2 import SM2VerifyKey

        return SM2VerifyKey.from_raw(pub)
    return VerifyKey.from_raw(Alg.from_name(alg), pub)


@dataclass(frozen=True)
class Partner:
    """A partner platform admitted by our root, with the scope its codes are accepted under."""

    id: str
    number: int
    name_zh: str
    name_en: str
    keys: tuple[PartnerKey, ...]
    valid_from: int
    valid_to: int | None = None
    products: frozenset[int] = frozenset()  # empty: none (a partner must be given products explicitly)
    sites: frozenset[int] | None = None  # None: every site
    claims: frozenset[str] = frozenset({"nbf", "exp", "sites", "site", "party", "grace", "account", "modes"})
    formats: frozenset[str] = frozenset({"cp1", "gm1"})
    _by_kid: dict[bytes, PartnerKey] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_kid", {k.kid: k for k in self.keys})

    def key(self, kid: bytes) -> PartnerKey | None:
        return self._by_kid.get(kid)

    def name(self, lang: str = "en") -> str:
        return self.name_zh if lang == "zh" else self.name_en

    def to_cbor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "no": self.number, "zh": self.name_zh, "en": self.name_en,
            "keys": [k.to_cbor() for k in self.keys], "from": self.valid_from,
            "products": sorted(self.products), "claims": sorted(self.claims), "formats": sorted(self.formats),
        }
        if self.valid_to is not None:
            out["to"] = self.valid_to
        if self.sites is not None:
            out["sites"] = sorted(self.sites)
        return out

    @classmethod
    def from_cbor(cls, obj: Any) -> Partner:
        if not isinstance(obj, dict):
            raise FormatError("partner entry must be a map")
        try:
            keys = tuple(PartnerKey(str(k["alg"]), bytes(k["pub"])) for k in obj["keys"])
            partner = cls(
                id=str(obj["id"]), number=int(obj["no"]), name_zh=str(obj["zh"]), name_en=str(obj["en"]),
                keys=keys, valid_from=int(obj["from"]), valid_to=None if obj.get("to") is None else int(obj["to"]),
                products=frozenset(int(p) for p in obj["products"]),
                sites=None if obj.get("sites") is None else frozenset(int(s) for s in obj["sites"]),
                claims=frozenset(str(c) for c in obj["claims"]), formats=frozenset(str(f) for f in obj["formats"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"bad partner entry: {exc}") from None
        if not 1 <= partner.number < 2**32 or not all(k.alg in PARTNER_ALGS for k in keys):
            raise FormatError("partner entry has a bad number or key algorithm")
        if not partner.claims <= set(CLAIM_NAMES) or not partner.formats <= set(PARTNER_FORMATS):
            raise FormatError("partner entry names an unknown claim or format")
        if len(partner._by_kid) != len(keys):
            raise FormatError("two keys of one partner share a kid")
        return partner


def revocation_id(partner_id: str) -> bytes:
    """The id that revokes a whole partner when it is in the ledger's revoked list (16 bytes, starting
    ``ff 50`` — 'P' — so that it cannot be one of our 8-byte credential ids)."""
    return b"\xffP" + hashlib.sha256(b"citypass partner\0" + partner_id.encode()).digest()[:14]


def credential_id(partner: Partner, cti: bytes) -> bytes:
    """The id the gate keys a partner's credential by: the partner's 4-byte number, then its own id."""
    return partner.number.to_bytes(4, "big") + cti


__all__ = ["CLAIM_NAMES", "MAX_PARTNER_CTI", "PARTNER_ALGS", "PARTNER_FORMATS", "Partner", "PartnerKey",
           "credential_id", "revocation_id"]
