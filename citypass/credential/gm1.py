"""GM1: the SM2/SM3-signed code of a partner code platform (transport or government service style).

China's transport and government code platforms write compact binary codes signed with SM2 over SM3;
their national specifications are not public in full, so this is our own layout of that kind, defined in
docs/credential-format.md §8 and summarised here. Text form: ``GM1:`` then Base45 (RFC 9285) of::

    off  len  field
    0    1    version            0x01
    1    4    platform           the partner's number in our trust list (uint32, big-endian)
    5    2    kid                which of the platform's SM2 keys signed (2 bytes of SHA-256 of its public key)
    7    1    product            1 annual, 2 reservation, 3 transit, 4 group (our product numbers)
    8    8    code id            the platform's own id of the credential
    16   4    valid from         Unix seconds (uint32)
    20   4    valid to           Unix seconds (uint32), exclusive; a reservation's slot end
    24   1    party              persons (1..99); 1 for annual and transit
    25   1    grace              minutes either side of a reservation's slot; 0 otherwise
    26   1    n                  number of sites (0..32); 0 only for transit
    27   4n   sites              site numbers (uint32 each), ascending, distinct
    ..   1    m                  account length (0..32); > 0 only for transit
    ..   m    account            ASCII letters and digits
    ..   1    modes              transit mode bits (1 metro, 2 bus, 4 water bus); 0 otherwise
    ..   64   signature          SM2 r || s over every byte before it (SM3, Z_A of ID "1234567812345678")

Every field has one fixed encoding and the total length must match exactly, so a byte flip anywhere
either breaks the layout (``malformed_code``), names another platform or key (``unknown_partner``,
``unknown_key``) or breaks the signature (``bad_signature``). Once authenticated the code becomes one of
our :class:`~citypass.credential.claims.Credential` objects and goes through the same checks as a CP1 code,
under the partner's scope. GM1 codes are not holder-bound: the platform's app fetches a fresh code with a
short validity instead (minutes for a ride code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import base45

from citypass.credential.claims import (
    Annual,
    Credential,
    Group,
    Mode,
    Product,
    Reservation,
    Terms,
    Transit,
    UnknownTerms,
)
from citypass.credential.codes import MAX_TEXT_LENGTH, ParsedCode
from citypass.credential.cose import Sign1
from citypass.credential.partners import Partner
from citypass.credential.policy import VerifyPolicy
from citypass.credential.reasons import Reason
from citypass.credential.sites import SiteSettings
from citypass.credential.sm2 import SIGNATURE_LENGTH, SM2SigningKey, available
from citypass.credential.trustlist import TrustList
from citypass.credential.verifier import RevocationView, Verdict, as_partner_credential, check_partner, finish
from citypass.errors import InvalidInput

PREFIX = "GM1:"
VERSION = 1
MAX_SITES = 32
MAX_ACCOUNT = 32
_ACCOUNT = re.compile(rb"^[A-Za-z0-9]*$")


class GM1Error(InvalidInput):
    """A GM1 code whose layout is wrong."""


@dataclass(frozen=True)
class GM1Code:
    """A GM1 code's fields (nothing verified)."""

    platform: int
    kid: bytes
    product: int
    code_id: bytes
    valid_from: int
    valid_to: int
    party: int = 1
    grace: int = 0
    sites: tuple[int, ...] = ()
    account: str = ""
    modes: int = 0
    signature: bytes = b""

    def body(self) -> bytes:
        """The signed bytes: everything before the signature."""
        return (bytes([VERSION]) + self.platform.to_bytes(4, "big") + self.kid + bytes([self.product])
                + self.code_id + self.valid_from.to_bytes(4, "big") + self.valid_to.to_bytes(4, "big")
                + bytes([self.party, self.grace, len(self.sites)])
                + b"".join(s.to_bytes(4, "big") for s in self.sites)
                + bytes([len(self.account)]) + self.account.encode("ascii") + bytes([self.modes]))

    def credential(self) -> Credential:
        """Our claims model of this code (the platform's own id; the verifier puts it in the partner's space)."""
        terms: Terms
        if self.product == Product.ANNUAL:
            terms = Annual(frozenset(self.sites))
        elif self.product == Product.RESERVATION:
            terms = Reservation(self.sites[0], self.party, self.grace)
        elif self.product == Product.TRANSIT:
            terms = Transit(self.account, Mode(self.modes))
        elif self.product == Product.GROUP:
            terms = Group(self.sites[0], self.party)
        else:
            terms = UnknownTerms(self.product)
        return Credential(self.code_id, terms, self.valid_from, self.valid_to)


def _check(code: GM1Code) -> None:
    """The layout rules a valid code keeps (the same for minting and reading)."""
    if not 1 <= code.platform < 2**32 or len(code.kid) != 2 or len(code.code_id) != 8:
        raise GM1Error("bad platform, kid or code id")
    if not (0 <= code.valid_from < 2**32 and 0 <= code.valid_to < 2**32 and code.valid_from < code.valid_to):
        raise GM1Error("validity must be two Unix times, from before to")
    if not 1 <= code.party <= 99 or not 0 <= code.grace <= 255 or not 0 <= code.modes <= 7:
        raise GM1Error("party, grace or modes out of range")
    if len(code.sites) > MAX_SITES or list(code.sites) != sorted(set(code.sites)):
        raise GM1Error("sites must be at most 32 distinct numbers, ascending")
    if len(code.account) > MAX_ACCOUNT or not _ACCOUNT.match(code.account.encode("ascii", "replace")):
        raise GM1Error("account must be at most 32 ASCII letters or digits")
    shape = {
        int(Product.ANNUAL): (len(code.sites) >= 1 and code.party == 1),
        int(Product.RESERVATION): len(code.sites) == 1,
        int(Product.TRANSIT): (not code.sites and code.account != "" and code.modes != 0 and code.party == 1),
        int(Product.GROUP): len(code.sites) == 1,
    }.get(code.product, True)
    transit_fields = code.product == Product.TRANSIT or (not code.account and not code.modes)
    grace_ok = code.product == Product.RESERVATION or code.grace == 0
    if not (shape and transit_fields and grace_ok):
        raise GM1Error(f"fields do not fit product {code.product}")


def encode(code: GM1Code, key: SM2SigningKey) -> str:
    """Sign ``code`` (its ``signature`` is ignored) and return the text. Used by partner kits and tests."""
    _check(code)
    body = code.body()
    data = body + key.sign(body)
    return PREFIX + bytes(base45.b45encode(data)).decode("ascii")


def decode(text: str) -> GM1Code:
    """Text → fields; :class:`GM1Error` for anything that is not exactly the layout."""
    if not text.startswith(PREFIX) or len(text) > MAX_TEXT_LENGTH:
        raise GM1Error("not a GM1 code")
    try:
        data = bytes(base45.b45decode(text[len(PREFIX):]))
    except (ValueError, TypeError, KeyError, IndexError):
        raise GM1Error("not valid Base45") from None
    if len(data) < 27 + 1 + 1 + SIGNATURE_LENGTH or data[0] != VERSION:
        raise GM1Error("too short, or not version 1")
    n = data[26]
    at = 27 + 4 * n
    if len(data) < at + 1:
        raise GM1Error("truncated sites")
    m = data[at]
    if len(data) != at + 1 + m + 1 + SIGNATURE_LENGTH:
        raise GM1Error("length does not match the layout")
    try:
        account = data[at + 1:at + 1 + m].decode("ascii")
    except UnicodeDecodeError:
        raise GM1Error("account is not ASCII") from None
    code = GM1Code(
        platform=int.from_bytes(data[1:5], "big"), kid=data[5:7], product=data[7], code_id=data[8:16],
        valid_from=int.from_bytes(data[16:20], "big"), valid_to=int.from_bytes(data[20:24], "big"),
        party=data[24], grace=data[25],
        sites=tuple(int.from_bytes(data[27 + 4 * i:31 + 4 * i], "big") for i in range(n)),
        account=account, modes=data[at + 1 + m], signature=data[-SIGNATURE_LENGTH:],
    )
    _check(code)
    if code.body() != data[:-SIGNATURE_LENGTH]:  # one encoding per code
        raise GM1Error("not the canonical encoding")
    return code


class _GM1:
    name = "gm1"
    prefix = PREFIX
    title = "GM1 partner platform code (binary, SM2/SM3)"

    def verify(self, text: str, trust: TrustList, view: RevocationView, site: SiteSettings, now: int,
               policy: VerifyPolicy) -> Verdict:
        def deny(reason: Reason, detail: str, partner: Partner | None = None,
                 parsed: ParsedCode | None = None) -> Verdict:
            return Verdict(False, reason, detail, parsed, format=self.name, partner=partner)

        try:
            code = decode(text)
        except GM1Error as exc:
            return deny(Reason.MALFORMED_CODE, str(exc))
        partner = trust.partner(code.platform)
        if partner is None:
            return deny(Reason.UNKNOWN_PARTNER, f"platform {code.platform} is not admitted")
        if self.name not in partner.formats:
            return deny(Reason.KEY_OUT_OF_SCOPE, f"partner {partner.id} may not issue GM1 codes", partner)
        pkey = partner.key(code.kid)
        if pkey is None or pkey.alg != "sm2":
            return deny(Reason.UNKNOWN_KEY, f"partner {partner.id} has no SM2 key {code.kid.hex()}", partner)
        if not available():
            return deny(Reason.UNSUPPORTED_FORMAT, "SM2 is not available on this gate", partner)
        body = code.body()
        parsed = ParsedCode(body + code.signature, Sign1(b"", 0, code.kid, body, code.signature), code.credential())
        try:
            key = pkey.verify_key()
        except ValueError:
            return deny(Reason.UNKNOWN_KEY, f"partner {partner.id}'s SM2 key cannot be loaded", partner)
        if not key.verify(code.signature, body):
            return deny(Reason.BAD_SIGNATURE, f"partner {partner.id}'s SM2 signature does not verify", partner, parsed)
        denial = check_partner(partner, parsed.credential, site, view, now, policy)
        if denial is not None:
            return deny(*denial, partner, parsed)
        return finish(as_partner_credential(parsed, partner), trust, view, site, now, policy, fmt=self.name,
                      partner=partner)


GM1 = _GM1()

__all__ = ["GM1", "PREFIX", "GM1Code", "GM1Error", "decode", "encode"]
