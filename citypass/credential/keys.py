"""Signing and verification keys: Ed25519 (COSE ``EdDSA``, the default) and P-256 (COSE ``ES256``).

All cryptography is done by the ``cryptography`` package; this module only chooses algorithms, names
keys and converts between the encodings COSE uses and the ones ``cryptography`` speaks:

* a COSE ``ES256`` signature is the raw 64-byte ``r || s``; ``cryptography`` produces DER, so we convert
  with its own ``encode_dss_signature`` / ``decode_dss_signature``;
* a key id (``kid``) is the first :data:`KID_LENGTH` bytes of SHA-256 over the key's raw public bytes.
  Two bytes are enough because the trust list holds tens of keys, and the issuer refuses to add a key
  whose kid collides with one already listed (it simply generates another key).

Example::

    >>> key = SigningKey.generate()
    >>> sig = key.sign(b"hello")
    >>> key.public.verify(sig, b"hello")
    True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from citypass.errors import InvalidInput

KID_LENGTH = 2


class Alg(IntEnum):
    """COSE algorithm identifiers (IANA COSE Algorithms registry)."""

    EDDSA = -8
    ES256 = -7

    @classmethod
    def from_name(cls, name: str) -> Alg:
        names = {"ed25519": cls.EDDSA, "eddsa": cls.EDDSA, "es256": cls.ES256, "p-256": cls.ES256}
        try:
            return names[name.lower()]
        except KeyError:
            raise InvalidInput(f"unknown algorithm {name!r}; use ed25519 or es256") from None

    @property
    def label(self) -> str:
        return "Ed25519" if self is Alg.EDDSA else "ES256"


PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKeyObject = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def kid_for(raw_public: bytes) -> bytes:
    """The key id of a public key given its raw bytes (see :meth:`VerifyKey.raw`)."""
    return hashlib.sha256(raw_public).digest()[:KID_LENGTH]


@dataclass(frozen=True)
class VerifyKey:
    """A public key that verifies COSE signatures of one algorithm."""

    alg: Alg
    key: PublicKeyObject = field(repr=False)

    @classmethod
    def from_raw(cls, alg: Alg | int, raw: bytes) -> VerifyKey:
        """Load from raw bytes: 32 for Ed25519; a SEC1 point (33 compressed or 65 bytes) for P-256."""
        alg = Alg(alg)
        if alg is Alg.EDDSA:
            return cls(alg, ed25519.Ed25519PublicKey.from_public_bytes(raw))
        return cls(alg, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw))

    @classmethod
    def from_pem(cls, data: bytes) -> VerifyKey:
        key = serialization.load_pem_public_key(data)
        if isinstance(key, ed25519.Ed25519PublicKey):
            return cls(Alg.EDDSA, key)
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls(Alg.ES256, key)
        raise InvalidInput("only Ed25519 and P-256 public keys are supported")

    @property
    def raw(self) -> bytes:
        """Raw public bytes: 32 for Ed25519, the 33-byte compressed point for P-256."""
        if isinstance(self.key, ed25519.Ed25519PublicKey):
            return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return self.key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)

    @property
    def kid(self) -> bytes:
        return kid_for(self.raw)

    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (COSE form) is valid over ``message``. Never raises."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, message)
            else:
                if len(signature) != 64:
                    return False
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                self.key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private key that produces COSE signatures."""

    alg: Alg
    key: PrivateKeyObject = field(repr=False)

    @classmethod
    def generate(cls, alg: Alg = Alg.EDDSA) -> SigningKey:
        if alg is Alg.EDDSA:
            return cls(alg, ed25519.Ed25519PrivateKey.generate())
        return cls(alg, ec.generate_private_key(ec.SECP256R1()))

    @property
    def public(self) -> VerifyKey:
        return VerifyKey(self.alg, self.key.public_key())

    @property
    def kid(self) -> bytes:
        return self.public.kid

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(message)
        r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def pem(self, passphrase: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        key = serialization.load_pem_private_key(data, password=passphrase)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return cls(Alg.EDDSA, key)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return cls(Alg.ES256, key)
        raise InvalidInput("only Ed25519 and P-256 private keys are supported")


def write_private_key(path: Path, key: SigningKey, passphrase: bytes | None = None) -> None:
    """Write ``key`` as PKCS#8 PEM, created with mode 0600 (never briefly world-readable), in a 0700 directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.pem(passphrase))
    os.chmod(path, 0o600)


def read_private_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    return SigningKey.from_pem(path.read_bytes(), passphrase)


def write_public_key(path: Path, key: VerifyKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.pem())


def read_public_key(path: Path) -> VerifyKey:
    return VerifyKey.from_pem(path.read_bytes())
