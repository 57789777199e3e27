"""Code text: what the phone shows and the gate reads.

Two shapes share one versioned text form, ``CP1:`` followed by Base45 (RFC 9285) of CBOR, so the whole
text stays inside the QR alphanumeric alphabet (5.5 bits per character instead of 8):

* a **static code** is the credential itself, an untagged COSE_Sign1 (CBOR array of 4);
* a **dynamic presentation** is ``[credential, generated_at, holder_signature]`` (CBOR array of 3): the
  credential's exact bytes, the phone's clock in Unix seconds, and the holder key's signature over the
  COSE ``Sig_structure`` of a detached payload ``[generated_at, SHA-256(credential)]``.

:func:`parse` never raises anything but :class:`CodeError`, which carries the deny reason; it checks
form only. Signatures and trust are the business of :mod:`citypass.credential.verifier`::

    >>> issuer = SigningKey.generate()
    >>> code = issue(Credential(id=b"\\x01" * 8, terms=Group(site=3, party=2)), issuer)
    >>> code.startswith("CP1:")
    True
    >>> parse(code).credential.terms
    Group(site=3, party=2)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import base45

from citypass.credential.claims import Credential, Group  # noqa: F401  (Group is used in the doctest)
from citypass.credential.cose import FormatError, Sign1, decode_cbor, encode_cbor, parse_sign1, sig_structure, sign1
from citypass.credential.keys import SigningKey, VerifyKey
from citypass.credential.reasons import Reason
from citypass.errors import InvalidInput

PREFIX = "CP1:"
#: Longest text accepted: a version 40 QR code holds 4296 alphanumeric characters; ours are < 400.
MAX_TEXT_LENGTH = 1200
_OTHER_VERSION = re.compile(r"^CP[0-9]+:")


class CodeError(InvalidInput):
    """A code that cannot be read; ``reason`` is what the gate shows."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParsedCode:
    """A code whose form is valid. Nothing here is verified yet."""

    credential_bytes: bytes
    sign1: Sign1
    credential: Credential
    generated_at: int | None = None  # set for dynamic presentations
    holder_signature: bytes | None = None

    @property
    def dynamic(self) -> bool:
        return self.generated_at is not None

    def holder_signature_valid(self) -> bool:
        """Check the dynamic presentation's signature against the credential's holder key."""
        holder = self.credential.holder
        if holder is None or self.generated_at is None or self.holder_signature is None:
            return False
        return holder.key.verify(self.holder_signature, holder_message(self.credential_bytes, self.generated_at))


def encode_text(data: bytes) -> str:
    encoded: bytes = base45.b45encode(data)
    return PREFIX + encoded.decode("ascii")


def decode_text(text: str) -> bytes:
    """Code text → CBOR bytes, or :class:`CodeError`."""
    if not isinstance(text, str):
        raise CodeError(Reason.NOT_CITYPASS, "code must be text")
    if not text.startswith(PREFIX):
        if _OTHER_VERSION.match(text):
            raise CodeError(Reason.UNSUPPORTED_VERSION, f"version prefix {text.split(':', 1)[0]}: is not supported")
        raise CodeError(Reason.NOT_CITYPASS, "text does not start with CP1:")
    if len(text) > MAX_TEXT_LENGTH:
        raise CodeError(Reason.MALFORMED_CODE, "code text is too long")
    try:
        return bytes(base45.b45decode(text[len(PREFIX) :]))
    except (ValueError, TypeError, KeyError, IndexError):
        raise CodeError(Reason.MALFORMED_CODE, "not valid Base45") from None


def holder_message(credential_bytes: bytes, generated_at: int) -> bytes:
    """What the holder key signs: a COSE Sig_structure with empty protected header over
    ``[generated_at, SHA-256(credential)]`` (a detached payload)."""
    payload = encode_cbor([generated_at, hashlib.sha256(credential_bytes).digest()])
    return sig_structure(b"", payload)


def issue(credential: Credential, key: SigningKey) -> str:
    """Sign ``credential`` with an issuer key and return the static code text."""
    return encode_text(sign1(key, encode_cbor(credential.to_claims())))


def present(code: str, holder_key: SigningKey, generated_at: int) -> str:
    """Make a dynamic presentation of a holder-bound static ``code`` at ``generated_at`` (Unix s)."""
    parsed = parse(code)
    if parsed.dynamic:
        raise InvalidInput("present() takes the static credential code, not a presentation")
    holder = parsed.credential.holder
    if holder is None:
        raise InvalidInput("this credential is not bound to a holder key")
    if holder.key.raw != holder_key.public.raw:
        raise InvalidInput("this holder key is not the one the credential is bound to")
    signature = holder_key.sign(holder_message(parsed.credential_bytes, generated_at))
    return encode_text(encode_cbor([parsed.credential_bytes, generated_at, signature]))


def parse(text: str) -> ParsedCode:
    """Parse code text of either shape; raises only :class:`CodeError`."""
    data = decode_text(text)
    try:
        obj = decode_cbor(data)
        if isinstance(obj, list) and len(obj) == 3:
            cred_bytes, generated_at, holder_sig = obj
            if not isinstance(cred_bytes, bytes) or not isinstance(holder_sig, bytes):
                raise FormatError("presentation fields have the wrong types")
            if not isinstance(generated_at, int) or isinstance(generated_at, bool) or not 0 <= generated_at < 2**32:
                raise FormatError("presentation time must be Unix seconds")
            if len(holder_sig) != 64:
                raise FormatError("holder signature must be 64 bytes")
            inner = parse_sign1(decode_cbor(cred_bytes))
            return ParsedCode(cred_bytes, inner, Credential.from_claims(decode_cbor(inner.payload)),
                              generated_at, holder_sig)
        msg = parse_sign1(obj)
        return ParsedCode(data, msg, Credential.from_claims(decode_cbor(msg.payload)))
    except FormatError as exc:
        raise CodeError(Reason.MALFORMED_CODE, str(exc)) from None
    except (ValueError, TypeError, OverflowError) as exc:  # defensive: never let a crafted code escape
        raise CodeError(Reason.MALFORMED_CODE, f"malformed: {exc}") from None


__all__ = ["PREFIX", "CodeError", "ParsedCode", "VerifyKey", "decode_text", "encode_text", "issue", "parse",
           "present"]
