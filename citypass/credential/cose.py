"""COSE_Sign1 (RFC 9052 §4.2) with ``cbor2`` for encoding and :mod:`citypass.credential.keys` for signatures.

A City Pass credential is an *untagged* COSE_Sign1 array ``[protected, unprotected, payload,
signature]`` (the ``CP1:`` text prefix already says what it is, so tag 18 would be a wasted byte). The
protected header holds exactly ``{1: alg, 4: kid}``; the unprotected header must be empty (anything in
it is unauthenticated, so we refuse it rather than ignore it).

:func:`decode_cbor` is the one door through which untrusted bytes become Python objects: it refuses
trailing bytes (``cbor2.loads`` silently ignores them), refuses every encoding but the deterministic one
(RFC 8949 §4.2: definite lengths, shortest forms, sorted and unique map keys) and turns every decoder
failure into :class:`FormatError`.

Why deterministic only: a signature covers the protected header and the payload, not the array around
them, so a genuine code could otherwise be re-encoded (an indefinite-length array, a long-form length) into
other bytes that still verify — a second text for one credential, which anything keyed on the bytes (a
screenshot blocklist, a replay cache of presentations, a bug report) would take for another code. One
credential has exactly one encoding; every producer here writes it with :func:`encode_cbor`.

    >>> decode_cbor(bytes.fromhex("83010203"))          # [1, 2, 3]
    [1, 2, 3]
    >>> decode_cbor(bytes.fromhex("9f010203ff"))        # the same array, indefinite length
    Traceback (most recent call last):
    ...
    citypass.credential.cose.FormatError: not deterministic CBOR (RFC 8949 §4.2): ...
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cbor2

from citypass.credential.keys import SigningKey, VerifyKey
from citypass.errors import InvalidInput

HEADER_ALG = 1
HEADER_KID = 4
SIG_CONTEXT = "Signature1"


class FormatError(InvalidInput):
    """Bytes that are not what the format says they must be."""


def encode_cbor(obj: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 §4.2: shortest forms, sorted map keys)."""
    return cbor2.dumps(obj, canonical=True)


def decode_cbor(data: bytes) -> Any:
    """Decode exactly one CBOR item that spans all of ``data``; :class:`FormatError` otherwise."""
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types (and RecursionError on deep nesting)
        raise FormatError(f"not valid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise FormatError("trailing bytes after the CBOR item")
    try:  # re-encoding is ~0.05 µs per item: a 10M-revocation snapshot pays about half a second
        canonical = encode_cbor(obj) == data
    except Exception as exc:  # an item cbor2 decodes but cannot encode deterministically
        raise FormatError(f"not deterministic CBOR: {exc}") from None
    if not canonical:
        raise FormatError("not deterministic CBOR (RFC 8949 §4.2): an indefinite length, a longer form than "
                          "needed, or unsorted or repeated map keys")
    return obj


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes that are actually signed (RFC 9052 §4.4)."""
    return encode_cbor([SIG_CONTEXT, protected, external_aad, payload])


@dataclass(frozen=True)
class Sign1:
    """A parsed, not yet verified COSE_Sign1 message."""

    protected: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes

    def verify(self, key: VerifyKey) -> bool:
        """True when the signature is valid under ``key`` and its algorithm matches the header."""
        if int(key.alg) != self.alg:
            return False
        return key.verify(self.signature, sig_structure(self.protected, self.payload))

    def encode(self) -> bytes:
        return encode_cbor([self.protected, {}, self.payload, self.signature])


def sign1(key: SigningKey, payload: bytes, kid: bytes | None = None) -> bytes:
    """Sign ``payload`` and return the encoded COSE_Sign1."""
    protected = encode_cbor({HEADER_ALG: int(key.alg), HEADER_KID: kid if kid is not None else key.kid})
    signature = key.sign(sig_structure(protected, payload))
    return encode_cbor([protected, {}, payload, signature])


def parse_sign1(obj: Any) -> Sign1:
    """Parse a decoded COSE_Sign1 array; :class:`FormatError` on any deviation from our profile."""
    if not isinstance(obj, list) or len(obj) != 4:
        raise FormatError("COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise FormatError("COSE_Sign1 fields have the wrong types")
    if unprotected != {}:
        raise FormatError("unprotected header must be empty")
    header = decode_cbor(protected)
    if not isinstance(header, dict) or set(header) != {HEADER_ALG, HEADER_KID}:
        raise FormatError("protected header must hold exactly alg and kid")
    alg, kid = header[HEADER_ALG], header[HEADER_KID]
    if not isinstance(alg, int) or isinstance(alg, bool) or not isinstance(kid, bytes):
        raise FormatError("alg must be an integer and kid a byte string")
    if len(signature) != 64:
        raise FormatError("signature must be 64 bytes")
    return Sign1(protected, alg, kid, payload, signature)
