"""SM2 signatures with SM3 (GM/T 0003-2012, GB/T 32918.2-2016; SM3: GB/T 32905-2016) through Tongsuo.

Chinese transport and government code platforms sign with SM2. The arithmetic is Tongsuo's (the
Ant Group fork of OpenSSL with the Chinese algorithms), reached through its maintained Python binding
``tongsuopy``; nothing here is our own cryptography. This module converts between the encodings and
assembles the standard's inputs:

* a signature on the wire is the raw 64-byte ``r || s`` (as in the national transport QR formats);
  Tongsuo speaks DER, so we convert with the generic DSS helpers;
* a public key is the 65-byte uncompressed SEC1 point ``04 || x || y`` (33-byte compressed accepted);
* the signed digest is ``e = SM3(Z_A || M)`` where ``Z_A = SM3(ENTL || ID || a || b || x_G || y_G || x_A ||
  y_A)`` with the default signer ID ``1234567812345678`` (GM/T 0009-2012 §10), which Tongsuo applies when
  no other ID is set. Every GM1 code uses that ID, so a verifier needs no per-platform setting.

**Verification is prehashed.** ``Z_A`` depends only on the public key, so :class:`SM2VerifyKey` computes
it once, when the key is loaded (:func:`z_value`), and each verification hashes just ``Z_A || M`` (SM3 from
``cryptography``, whose OpenSSL has it) and hands the 32-byte ``e`` to Tongsuo's SM2 verification
(``EVP_PKEY_verify`` on an SM2 key: the curve arithmetic and the ``r, s`` range checks stay Tongsuo's). The
``EVP_PKEY_CTX`` is made once per key and thread. These two calls come from the binding's low-level
``backend._lib`` (the OpenSSL functions it exposes), not from its high-level API, which has no prehashed SM2
verification; tests/test_sm2.py runs both paths side by side, so a binding that changed them would fail there
first. ``tongsuopy``'s own ``verify()`` instead builds a digest
context, recomputes ``Z_A`` and re-initialises everything on every call: about 12 µs of a ~350 µs
verification here; the rest is the native arithmetic, which no Python path changes
(``citypass bench verify`` times both paths beside Ed25519; docs/benchmarks.md).

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
import threading
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes as crypto_hashes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from citypass.errors import InvalidInput, Unavailable

#: The signer ID every GM1 code is signed under (the standard's default, GM/T 0009-2012).
DEFAULT_ID = b"1234567812345678"
SIGNATURE_LENGTH = 64
PUBLIC_KEY_LENGTH = 65


@dataclass(frozen=True)
class CurveParams:
    """The curve values that enter ``Z_A``: coefficients ``a``, ``b`` and the base point ``G``."""

    a: int
    b: int
    gx: int
    gy: int


#: The recommended curve ``sm2p256v1`` (GB/T 32918.5-2017), the only one GM1 codes use.
SM2P256V1 = CurveParams(
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)


class SM2Unavailable(Unavailable):
    """The native SM2 library (``tongsuopy``) is not installed on this machine."""


@functools.cache
def _lib() -> Any:
    try:
        from tongsuopy.backends.tongsuo.backend import backend
        from tongsuopy.crypto import hashes, serialization
        from tongsuopy.crypto.asymciphers import ec
        from tongsuopy.crypto.exceptions import InvalidSignature
    except ImportError:  # pragma: no cover - only on machines without a tongsuopy wheel
        return None
    return {"ec": ec, "hashes": hashes, "serialization": serialization, "InvalidSignature": InvalidSignature,
            "backend": backend}


def available() -> bool:
    """Whether SM2/SM3 can be used here."""
    return _lib() is not None


def _need() -> Any:
    lib = _lib()
    if lib is None:
        raise SM2Unavailable("SM2 needs the tongsuopy package (x86_64 wheels only)")
    return lib


@functools.cache
def _sm3_hasher() -> Any:
    """A fresh-hash factory: ``cryptography``'s SM3 (a few µs a call), Tongsuo's where that OpenSSL lacks it."""
    try:
        crypto_hashes.Hash(crypto_hashes.SM3())
        return lambda: crypto_hashes.Hash(crypto_hashes.SM3())
    except UnsupportedAlgorithm:  # pragma: no cover - an OpenSSL built without SM3
        h = _need()["hashes"]
        return lambda: h.Hash(h.SM3())


def sm3(data: bytes) -> bytes:
    """SM3 digest (32 bytes), Tongsuo's."""
    lib = _need()
    h = lib["hashes"].Hash(lib["hashes"].SM3())
    h.update(data)
    return bytes(h.finalize())


def z_value(public_raw: bytes, ident: bytes = DEFAULT_ID, curve: CurveParams = SM2P256V1) -> bytes:
    """``Z_A = SM3(ENTL || ID || a || b || x_G || y_G || x_A || y_A)`` (GB/T 32918.2-2016 §5.5).

    ``public_raw`` is the uncompressed point ``04 || x_A || y_A``; ``ENTL`` is the ID's length in bits (2 bytes).

        >>> z_value(b"\\x04" + bytes(64)).hex()[:8] if available() else "720b5ff8"
        '720b5ff8'
    """
    if len(public_raw) != PUBLIC_KEY_LENGTH or public_raw[0] != 4:
        raise InvalidInput("Z_A needs an uncompressed point 04 || x || y")
    if len(ident) * 8 >= 2**16:
        raise InvalidInput("an SM2 signer ID is shorter than 8192 bytes")
    coords = b"".join(v.to_bytes(32, "big") for v in (curve.a, curve.b, curve.gx, curve.gy))
    h = _sm3_hasher()()
    h.update((len(ident) * 8).to_bytes(2, "big") + ident + coords + public_raw[1:])
    return bytes(h.finalize())


class _Prepared:
    """What one key's verifications share: the SM3 state after ``Z_A`` and, per thread, an SM2 verify context.

    A context is not safe to share between threads (the binding releases the GIL during the native call),
    so each thread gets its own, made on its first verification with this key.
    """

    def __init__(self, key: Any, z: bytes) -> None:
        self._key = key  # keeps the EVP_PKEY alive as long as the contexts that refer to it
        self._after_z = _sm3_hasher()()
        self._after_z.update(z)
        self._local = threading.local()

    def digest(self, message: bytes) -> bytes:
        """``e = SM3(Z_A || message)``."""
        h = self._after_z.copy()
        h.update(message)
        return bytes(h.finalize())

    def context(self) -> Any:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            b = _need()["backend"]
            ctx = b._lib.EVP_PKEY_CTX_new(self._key._evp_pkey, b._ffi.NULL)
            if ctx == b._ffi.NULL:
                raise SM2Unavailable("Tongsuo could not make an SM2 verify context")
            ctx = b._ffi.gc(ctx, b._lib.EVP_PKEY_CTX_free)
            if b._lib.EVP_PKEY_verify_init(ctx) != 1:
                b._lib.ERR_clear_error()
                raise SM2Unavailable("Tongsuo could not start an SM2 verification")
            self._local.ctx = ctx
        return ctx


@dataclass(frozen=True)
class SM2VerifyKey:
    """An SM2 public key, ready to verify: ``Z_A`` and the native key are computed once, at load."""

    raw: bytes  # 65-byte uncompressed point
    key: Any = field(repr=False, compare=False)
    _prepared: _Prepared = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prepared", _Prepared(self.key, z_value(self.raw)))

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
        return cls._of(key)

    @classmethod
    def _of(cls, key: Any) -> SM2VerifyKey:
        s = _need()["serialization"]
        return cls(bytes(key.public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint)), key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (raw ``r || s``) is valid over ``message``. Never raises."""
        der = _der(signature)
        if der is None:
            return False
        try:
            e = self._prepared.digest(message)
            ctx = self._prepared.context()
            b = _lib()["backend"]
            ok = b._lib.EVP_PKEY_verify(ctx, der, len(der), e, len(e))
            if ok != 1:  # 0: a wrong signature; below 0: Tongsuo refused the input — never valid either way
                b._lib.ERR_clear_error()
        except Exception:  # an internal error on a hostile value: never valid
            return False
        return bool(ok == 1)

    def verify_unprepared(self, signature: bytes, message: bytes) -> bool:
        """The same check through ``tongsuopy``'s one-call ``verify()``, which recomputes ``Z_A`` and sets up a
        digest context every time. Kept as the cross-check of :meth:`verify` and as its benchmark baseline."""
        der = _der(signature)
        if der is None:
            return False
        lib = _lib()
        try:
            self.key.verify(der, message, lib["ec"].ECDSA(lib["hashes"].SM3()))
        except Exception:  # InvalidSignature, or an internal error on a hostile value: never valid
            return False
        return True


def _der(signature: bytes) -> bytes | None:
    """The DER ``SEQUENCE { r, s }`` Tongsuo reads, or None for what is not 64 bytes with ``r, s > 0``."""
    if len(signature) != SIGNATURE_LENGTH:
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if r == 0 or s == 0:
        return None
    return bytes(encode_dss_signature(r, s))


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
        return SM2VerifyKey._of(self.key.public_key())

    def sign(self, message: bytes) -> bytes:
        """Raw ``r || s`` over ``message`` (SM3 with Z_A of the default ID)."""
        lib = _need()
        r, s = decode_dss_signature(self.key.sign(message, lib["ec"].ECDSA(lib["hashes"].SM3())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


__all__ = ["DEFAULT_ID", "SM2P256V1", "CurveParams", "SM2SigningKey", "SM2Unavailable", "SM2VerifyKey", "available",
           "sm3", "z_value"]
