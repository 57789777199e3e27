"""The claims inside a City Pass credential: one CWT claims map (RFC 8392) per code.

Standard CWT claims are used where they fit (``exp`` 4, ``nbf`` 5, ``cti`` 7, ``cnf`` 8); everything
City Pass specific uses small negative keys, which CBOR encodes in a single byte. docs/credential-format.md
lists every key and explains why each byte is there. The map is encoded deterministically.

Each product has its own *terms* class; :class:`Credential` holds the fields every product shares::

    >>> cred = Credential(id=bytes(8), terms=Annual(sites=frozenset({1, 2, 3})),
    ...                   valid_from=1767225600, valid_to=1798761600)
    >>> Credential.from_claims(cred.to_claims()) == cred
    True
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

from citypass.credential.cose import FormatError
from citypass.credential.keys import Alg, VerifyKey
from citypass.errors import InvalidInput

# CWT registered claim keys
CLAIM_EXP = 4
CLAIM_NBF = 5
CLAIM_CTI = 7
CLAIM_CNF = 8
# City Pass private claim keys (negative: one CBOR byte each)
CLAIM_PRODUCT = -1
CLAIM_SITES = -2
CLAIM_SITE = -3
CLAIM_PARTY = -4
CLAIM_GRACE = -5
CLAIM_PASSBACK = -6
CLAIM_ACCOUNT = -7
CLAIM_MODES = -8
CLAIM_QUOTA = -9
CLAIM_PERIOD = -10
CLAIM_CATEGORY = -11

#: Site numbers are 0..2**32-1: one number space for every kind of site (scenic spots, museums, metro stations,
#: bus routes, …), so well beyond 65,536 of each kind. CBOR spends 1 byte on numbers below 24, 2 below 256,
#: 3 below 65,536 and 5 above, so the issuer gives the popular sites the small numbers.
MAX_SITE_NUMBER = 2**32 - 1
#: Annual passes name sites below this number in a bitmap (at most 128 bytes, the only form before format
#: revision 2); sites at or above it are listed by number.
BITMAP_SITES = 1024
MAX_PARTY = 99
MAX_QUOTA = 255
MAX_ACCOUNT_LENGTH = 32

# COSE_Key parameters (RFC 9052 §7, RFC 9053 §7)
COSE_KEY_KTY = 1
COSE_KEY_CRV = -1
COSE_KEY_X = -2
COSE_KEY_Y = -3
KTY_OKP = 1
KTY_EC2 = 2
CRV_P256 = 1
CRV_ED25519 = 6
CNF_COSE_KEY = 1


class Product(IntEnum):
    """Product kinds. The number is what goes on the wire (claim -1)."""

    ANNUAL = 1
    RESERVATION = 2
    TRANSIT = 3
    GROUP = 4
    BENEFIT = 5
    EVENT = 6

    @classmethod
    def from_name(cls, name: str) -> Product:
        try:
            return cls[name.upper()]
        except KeyError:
            raise InvalidInput(f"unknown product {name!r}; one of: {', '.join(p.name.lower() for p in cls)}") from None


class Mode(IntFlag):
    """Transport modes a transit credential may be used on (claim -8 is the bit set)."""

    METRO = 1
    BUS = 2
    WATER_BUS = 4

    @classmethod
    def parse(cls, text: str) -> Mode:
        """``"metro,bus"`` → ``Mode.METRO | Mode.BUS``."""
        modes = cls(0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                modes |= cls[part.upper()]
            except KeyError:
                raise InvalidInput(f"unknown mode {part!r}; use metro, bus, water_bus") from None
        return modes

    def names(self) -> list[str]:
        return [m.name.lower() for m in Mode if m in self and m.name]


@dataclass(frozen=True)
class Annual:
    """An annual scenic-spot pass: unlimited entries at a set of sites."""

    sites: frozenset[int]
    passback_minutes: int | None = None  # None: the site's own setting applies


@dataclass(frozen=True)
class Reservation:
    """A timed museum reservation for ``party`` persons; the slot is the credential's validity."""

    venue: int
    party: int = 1
    grace_minutes: int = 15


@dataclass(frozen=True)
class Transit:
    """A transit authorisation; its ``valid_to`` bounds how long it can be used offline. ``category`` (claim
    -11, optional): a concession rider (senior, student), priced by the fare table's concessions."""

    account: str
    modes: Mode
    category: Category | None = None


@dataclass(frozen=True)
class Group:
    """A tour-group ticket for one site and ``party`` persons."""

    site: int
    party: int


class Period(IntEnum):
    """The period a benefit card's quota renews over, in the site's local time (claim -10)."""

    MONTH = 1
    WEEK = 2
    YEAR = 3


class Category(IntEnum):
    """Who a benefit card (or a concession fare) is for (claim -11)."""

    RESIDENT = 1
    SENIOR = 2
    STUDENT = 3

    @classmethod
    def from_name(cls, name: str) -> Category:
        try:
            return cls[name.upper()]
        except KeyError:
            raise InvalidInput(f"unknown category {name!r}; one of: resident, senior, student") from None


@dataclass(frozen=True)
class Benefit:
    """The culture-and-tourism benefit card (文旅惠民卡): ``quota`` free or discounted uses per ``period`` at a
    set of sites, for one holder (always holder-bound) of a ``category``. Uses are counted across the city
    (:mod:`citypass.credential.benefit`)."""

    sites: frozenset[int]
    quota: int
    period: Period = Period.MONTH
    category: Category = Category.RESIDENT


@dataclass(frozen=True)
class Event:
    """A conference or event badge: one code, checked in once at each of its ``sessions`` (site numbers: a
    session is a site with its own capacity and hours, e.g. one room on one day)."""

    sessions: frozenset[int]


@dataclass(frozen=True)
class UnknownTerms:
    """A product kind this software does not know (a newer issuer's). Always denied, never guessed at."""

    product: int


Terms = Annual | Reservation | Transit | Group | Benefit | Event | UnknownTerms


@dataclass(frozen=True)
class HolderKey:
    """The public key of the holder's phone, from the ``cnf`` claim (RFC 8747)."""

    key: VerifyKey

    @property
    def holder_id(self) -> bytes:
        """16-byte id used to revoke every credential bound to a lost phone."""
        return hashlib.sha256(self.key.raw).digest()[:16]

    def to_cose_key(self) -> dict[int, Any]:
        raw = self.key.raw
        if self.key.alg is Alg.EDDSA:
            return {COSE_KEY_KTY: KTY_OKP, COSE_KEY_CRV: CRV_ED25519, COSE_KEY_X: raw}
        # compressed point: y is the sign bit only (RFC 9053 §7.1.1), saving 31 bytes
        return {COSE_KEY_KTY: KTY_EC2, COSE_KEY_CRV: CRV_P256, COSE_KEY_X: raw[1:], COSE_KEY_Y: raw[0] == 3}

    @classmethod
    def from_cose_key(cls, obj: Any) -> HolderKey:
        if not isinstance(obj, dict):
            raise FormatError("cnf must hold a COSE_Key map")
        kty, crv, x = obj.get(COSE_KEY_KTY), obj.get(COSE_KEY_CRV), obj.get(COSE_KEY_X)
        if not isinstance(x, bytes) or len(x) != 32:
            raise FormatError("holder key x must be 32 bytes")
        try:
            if kty == KTY_OKP and crv == CRV_ED25519 and set(obj) == {1, -1, -2}:
                return cls(VerifyKey.from_raw(Alg.EDDSA, x))
            y = obj.get(COSE_KEY_Y)
            if kty == KTY_EC2 and crv == CRV_P256 and isinstance(y, bool) and set(obj) == {1, -1, -2, -3}:
                return cls(VerifyKey.from_raw(Alg.ES256, (b"\x03" if y else b"\x02") + x))
        except ValueError:
            raise FormatError("holder key is not a valid point") from None
        raise FormatError("unsupported holder key type")


def _bitmap(sites: frozenset[int]) -> bytes:
    out = bytearray((max(sites) // 8 + 1) if sites else 0)
    for s in sites:
        out[s // 8] |= 1 << (s % 8)
    return bytes(out)


def _from_bitmap(data: bytes) -> frozenset[int]:
    return frozenset(i * 8 + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1)


def encode_sites(sites: frozenset[int]) -> bytes | list[Any]:
    """Claim -2 for a set of sites: a bitmap when every site is below :data:`BITMAP_SITES` (the original
    form, so such passes encode exactly as before), else ``[bitmap of the small ones, [larger numbers,
    ascending]]``. Exactly one encoding per set: the array form is used only when it is needed.

        >>> encode_sites(frozenset({0, 9}))
        b'\\x01\\x02'
        >>> encode_sites(frozenset({1, 70000}))
        [b'\\x02', [70000]]
    """
    small = frozenset(s for s in sites if s < BITMAP_SITES)
    large = sorted(s for s in sites if s >= BITMAP_SITES)
    if not large:
        return _bitmap(small)
    return [_bitmap(small), large]


def decode_sites(value: Any) -> frozenset[int]:
    """Parse claim -2 (either form); :class:`FormatError` unless it is the one encoding of a non-empty set."""
    if isinstance(value, bytes):
        if not 0 < len(value) <= BITMAP_SITES // 8:
            raise FormatError("annual sites must be a non-empty bitmap")
        return _from_bitmap(value)
    if not isinstance(value, list) or len(value) != 2:
        raise FormatError("annual sites must be a bitmap or [bitmap, [site, …]]")
    bitmap, large = value
    if not isinstance(bitmap, bytes) or len(bitmap) > BITMAP_SITES // 8 or not isinstance(large, list) or not large:
        raise FormatError("annual sites [bitmap, [site, …]] has the wrong types")
    if not all(isinstance(s, int) and not isinstance(s, bool) and BITMAP_SITES <= s <= MAX_SITE_NUMBER
               for s in large):
        raise FormatError(f"listed annual sites must be numbers in {BITMAP_SITES}..{MAX_SITE_NUMBER}")
    if any(a >= b for a, b in itertools.pairwise(large)):
        raise FormatError("listed annual sites must be ascending and distinct")
    return _from_bitmap(bitmap) | frozenset(large)


def _uint(claims: dict[Any, Any], key: int, *, required: bool = True, maximum: int = 2**32 - 1) -> int | None:
    value = claims.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise FormatError(f"claim {key} must be an integer in 0..{maximum}")
    return value


def _req(claims: dict[Any, Any], key: int, maximum: int = 2**32 - 1) -> int:
    value = _uint(claims, key, maximum=maximum)
    assert value is not None
    return value


@dataclass(frozen=True)
class Credential:
    """One signed entitlement. ``valid_from``/``valid_to`` are Unix seconds (``nbf``/``exp``)."""

    id: bytes
    terms: Terms
    valid_from: int | None = None
    valid_to: int | None = None
    holder: HolderKey | None = None

    @property
    def product(self) -> int:
        if isinstance(self.terms, UnknownTerms):
            return self.terms.product
        return int(_PRODUCT_OF[type(self.terms)])

    @property
    def product_name(self) -> str:
        try:
            return Product(self.product).name.lower()
        except ValueError:
            return f"unknown({self.product})"

    def sites(self) -> frozenset[int] | None:
        """The sites this credential names, or None for transit (valid by mode, not site)."""
        t = self.terms
        if isinstance(t, Annual | Benefit):
            return t.sites
        if isinstance(t, Event):
            return t.sessions
        if isinstance(t, Reservation):
            return frozenset({t.venue})
        if isinstance(t, Group):
            return frozenset({t.site})
        return None

    def to_claims(self) -> dict[int, Any]:
        claims: dict[int, Any] = {CLAIM_CTI: self.id, CLAIM_PRODUCT: self.product}
        if self.valid_from is not None:
            claims[CLAIM_NBF] = self.valid_from
        if self.valid_to is not None:
            claims[CLAIM_EXP] = self.valid_to
        if self.holder is not None:
            claims[CLAIM_CNF] = {CNF_COSE_KEY: self.holder.to_cose_key()}
        t = self.terms
        if isinstance(t, Annual):
            claims[CLAIM_SITES] = encode_sites(t.sites)
            if t.passback_minutes is not None:
                claims[CLAIM_PASSBACK] = t.passback_minutes
        elif isinstance(t, Reservation):
            claims.update({CLAIM_SITE: t.venue, CLAIM_PARTY: t.party, CLAIM_GRACE: t.grace_minutes})
        elif isinstance(t, Transit):
            claims.update({CLAIM_ACCOUNT: t.account, CLAIM_MODES: int(t.modes)})
            if t.category is not None:
                claims[CLAIM_CATEGORY] = int(t.category)
        elif isinstance(t, Group):
            claims.update({CLAIM_SITE: t.site, CLAIM_PARTY: t.party})
        elif isinstance(t, Benefit):
            claims.update({CLAIM_SITES: encode_sites(t.sites), CLAIM_QUOTA: t.quota, CLAIM_PERIOD: int(t.period),
                           CLAIM_CATEGORY: int(t.category)})
        elif isinstance(t, Event):
            claims[CLAIM_SITES] = encode_sites(t.sessions)
        else:
            raise ValueError("cannot encode a credential of an unknown product")
        return claims

    @classmethod
    def from_claims(cls, claims: Any, *, order: bool = False) -> Credential:
        """Parse a decoded claims map; :class:`FormatError` when it breaks the format. ``order``: the unsigned
        terms of a pass not yet bound to its holder (a wallet claim), so a benefit card's ``cnf`` may be missing."""
        if not isinstance(claims, dict):
            raise FormatError("claims must be a map")
        cred_id = claims.get(CLAIM_CTI)
        if not isinstance(cred_id, bytes) or not 1 <= len(cred_id) <= 16:
            raise FormatError("cti must be a byte string of 1..16 bytes")
        product = _req(claims, CLAIM_PRODUCT, maximum=65535)
        holder = None
        if CLAIM_CNF in claims:
            cnf = claims[CLAIM_CNF]
            if not isinstance(cnf, dict) or set(cnf) != {CNF_COSE_KEY}:
                raise FormatError("cnf must be {1: COSE_Key}")
            holder = HolderKey.from_cose_key(cnf[CNF_COSE_KEY])
        common = {
            "id": cred_id,
            "valid_from": _uint(claims, CLAIM_NBF, required=False),
            "valid_to": _uint(claims, CLAIM_EXP, required=False),
            "holder": holder,
        }
        terms: Terms
        if product == Product.ANNUAL:
            terms = Annual(decode_sites(claims.get(CLAIM_SITES)),
                           _uint(claims, CLAIM_PASSBACK, required=False, maximum=1440))
        elif product == Product.RESERVATION:
            terms = Reservation(
                _req(claims, CLAIM_SITE, MAX_SITE_NUMBER),
                _req(claims, CLAIM_PARTY, MAX_PARTY),
                _req(claims, CLAIM_GRACE, 1440),
            )
            if common["valid_from"] is None or common["valid_to"] is None:
                raise FormatError("a reservation needs a slot (nbf and exp)")
        elif product == Product.TRANSIT:
            account = claims.get(CLAIM_ACCOUNT)
            if not isinstance(account, str) or not 0 < len(account) <= MAX_ACCOUNT_LENGTH:
                raise FormatError("transit account must be text of 1..32 characters")
            category = _uint(claims, CLAIM_CATEGORY, required=False, maximum=255)
            try:
                terms = Transit(account, Mode(_req(claims, CLAIM_MODES, 7)),
                                None if category is None else Category(category))
            except ValueError:
                raise FormatError("unknown rider category") from None
        elif product == Product.GROUP:
            terms = Group(_req(claims, CLAIM_SITE, MAX_SITE_NUMBER), _req(claims, CLAIM_PARTY, MAX_PARTY))
        elif product == Product.BENEFIT:
            try:
                period, category = Period(_req(claims, CLAIM_PERIOD, 255)), Category(_req(claims, CLAIM_CATEGORY, 255))
            except ValueError:
                raise FormatError("unknown benefit period or category") from None
            terms = Benefit(decode_sites(claims.get(CLAIM_SITES)), _req(claims, CLAIM_QUOTA, MAX_QUOTA), period,
                            category)
            if terms.quota < 1 or (holder is None and not order):
                raise FormatError("a benefit card has a quota of at least 1 and is holder-bound (cnf)")
        elif product == Product.EVENT:
            terms = Event(decode_sites(claims.get(CLAIM_SITES)))
        else:
            terms = UnknownTerms(product)
        if isinstance(terms, Reservation | Group) and terms.party < 1:
            raise FormatError("party size must be at least 1")
        return cls(terms=terms, **common)  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view (used by ``citypass code inspect``)."""
        out: dict[str, Any] = {
            "credential_id": self.id.hex(),
            "product": self.product_name,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "holder_bound": self.holder is not None,
        }
        if self.holder is not None:
            out["holder_id"] = self.holder.holder_id.hex()
            out["holder_alg"] = self.holder.key.alg.label
        t = self.terms
        if isinstance(t, Annual):
            out.update(sites=sorted(t.sites), passback_minutes=t.passback_minutes)
        elif isinstance(t, Reservation):
            out.update(venue=t.venue, party=t.party, grace_minutes=t.grace_minutes)
        elif isinstance(t, Transit):
            out.update(account=t.account, modes=t.modes.names())
            if t.category is not None:
                out.update(category=t.category.name.lower())
        elif isinstance(t, Group):
            out.update(site=t.site, party=t.party)
        elif isinstance(t, Event):
            out.update(sessions=sorted(t.sessions))
        elif isinstance(t, Benefit):
            out.update(sites=sorted(t.sites), quota=t.quota, period=t.period.name.lower(),
                       category=t.category.name.lower())
        return out


_PRODUCT_OF: dict[type, Product] = {
    Annual: Product.ANNUAL,
    Reservation: Product.RESERVATION,
    Transit: Product.TRANSIT,
    Group: Product.GROUP,
    Benefit: Product.BENEFIT,
    Event: Product.EVENT,
}
