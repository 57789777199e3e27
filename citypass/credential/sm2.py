"""SM2 signatures with SM3 (GM/T 0003-2012, GB/T 32918.2-2016; SM3: GB/T 32905-2016) through Tongsuo.

Chinese transport and government code platforms sign with SM2. The arithmetic is Tongsuo's (the
Ant Group fork of OpenSSL with the Chinese algorithms), reached through its maintained Python binding
``tongsuopy``; nothing here is our own cryptography. This module only converts between the encodings:

* a signature on the wire is the raw 64-byte ``r || s`` (as in the national transport QR formats);
  Tongsuo speaks DER, so we convert with the generic DSS helpers;
* a public key is the 65-byte uncompressed SEC1 point ``04 || x || y`` (33-byte compressed accepted);
* the signed digest is ``e = SM3(Z_A || M)`` where ``Z_A = SM3(ENTL || ID || a || b || x_G || y_G || x_A ||
  y_A)`` with the default signer ID ``1234567812345678`` (GM/T 0009-2012 §10), which Tongsuo applies when
  no other ID is set. Every GM1 code uses that ID, so a verifier needs no per-platform setting.

Measured against Ed25519 in ``citypass bench verify`` (docs/benchmarks.md). Wheels of ``tongsuopy``
exist for x86_64 Linux only: where it is missing, :func:`available` is False and a gate answers
``unsupported_format`` for SM2-signed codes instead of failing.

    >>> if available():
    ...     key = SM2SigningKey.generate()
    ...     assert key.public.verify(key.sign(b"abc"), b"abc")
    ...     assert not key.public.verify(key.sign(b"abc"), b"abd")
    >>> sm3(b"abc").hex()[:16] if available() else "66c7f0f462eeedd9"
    '66c7f0f462eeedd9'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from citypass.errors import InvalidInput, Unavailable

#: The signer ID every GM1 code is signed under (the standard's default, GM/T 0009-2012).
DEFAULT_ID = b"1234567812345678"
SIGNATURE_LENGTH = 64
PUBLIC_KEY_LENGTH = 65


class SM2Unavailable(Unavailable):
    """The native SM2 library (``tongsuopy``) is not installed on this machine."""


@functools.cache
def _lib() -> Any:
    try:
        from tongsuopy.crypto import hashes, serialization
        from tongsuopy.crypto.asymciphers import ec
        from tongsuopy.crypto.exceptions import InvalidSignature
    except ImportError:  # pragma: no cover - only on machines without a tongsuopy wheel
        return None
    return {"ec": ec, "hashes": hashes, "serialization": serialization, "InvalidSignature": InvalidSignature}


def available() -> bool:
    """Whether SM2/SM3 can be used here."""
    return _lib() is not None


def _need() -> Any:
    lib = _lib()
    if lib is None:
        raise SM2Unavailable("SM2 needs the tongsuopy package (x86_64 wheels only)")
    return lib


def sm3(data: bytes) -> bytes:
    """SM3 digest (32 bytes)."""
    lib = _need()
    h = lib["hashes"].Hash(lib["hashes"].SM3())
    h.update(data)
    return bytes(h.finalize())


@dataclass(frozen=True)
class SM2VerifyKey:
    """An SM2 public key."""

    raw: bytes  # 65-byte uncompressed point
    key: Any = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: bytes) -> SM2VerifyKey:
        """Load a SEC1 point (65 bytes uncompressed or 33 compressed); :class:`InvalidInput` if not on the curve."""
        lib = _need()
        if not isinstance(raw, bytes) or len(raw) not in (33, PUBLIC_KEY_LENGTH):
            raise InvalidInput("an SM2 public key is a 65-byte (or 33-byte compressed) SEC1 point")
        try:
            key = lib["ec"].EllipticCurvePublicKey.from_encoded_point(lib["ec"].SM2(), raw)
        except Exception:  # tongsuopy raises ValueError or its own errors for points off the curve
            raise InvalidInput("not a point on the SM2 curve") from None
        full = key.public_bytes(lib["serialization"].Encoding.X962, lib["serialization"].PublicFormat.UncompressedPoint)
        return cls(bytes(full), key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (raw ``r || s``) is valid over ``message``. Never raises."""
        if len(signature) != SIGNATURE_LENGTH:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        if r == 0 or s == 0:
            return False
        lib = _lib()
        try:
            self.key.verify(encode_dss_signature(r, s), message, lib["ec"].ECDSA(lib["hashes"].SM3()))
        except Exception:  # InvalidSignature, or an internal error on a hostile value: never valid
            return False
        return True


@dataclass(frozen=True)
class SM2SigningKey:
    """An SM2 private key (used by partner kits and tests; gates only verify)."""

    key: Any = field(repr=False)

    @classmethod
    def generate(cls) -> SM2SigningKey:
        lib = _need()
        return cls(lib["ec"].generate_private_key(lib["ec"].SM2()))

    @classmethod
    def from_pem(cls, data: bytes) -> SM2SigningKey:
        lib = _need()
        return cls(lib["serialization"].load_pem_private_key(data, password=None))

    def pem(self) -> bytes:
        s = _need()["serialization"]
        return bytes(self.key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))

    @property
    def private_value(self) -> int:
        return int(self.key.private_numbers().private_value)

    @property
    def public(self) -> SM2VerifyKey:
        s = _need()["serialization"]
        pub = self.key.public_key()
        return SM2VerifyKey(bytes(pub.public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)), pub)

    def sign(self, message: bytes) -> bytes:
        """Raw ``r || s`` over ``message`` (SM3 with Z_A of the default ID)."""
        lib = _need()
        r, s = decode_dss_signature(self.key.sign(message, lib["ec"].ECDSA(lib["hashes"].SM3())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


__all__ = ["DEFAULT_ID", "SM2SigningKey", "SM2Unavailable", "SM2VerifyKey", "available", "sm3"]
