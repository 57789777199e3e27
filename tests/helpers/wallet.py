"""What a phone's wallet page sends: its holder key as WebCrypto exports it, and a claim request's body."""

from __future__ import annotations

import base64

from citypass.credential.keys import Alg, SigningKey
from citypass.credential.walletclaim import claim_proof_message


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_raw(key: SigningKey) -> bytes:
    """What WebCrypto exports: 32 raw bytes (Ed25519) or the 65-byte uncompressed point (P-256)."""
    if key.alg is Alg.EDDSA:
        return key.public.raw
    from cryptography.hazmat.primitives import serialization

    return key.key.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)


def claim_body(token: str, phone: SigningKey, *, proof_for: str | None = None) -> dict[str, str]:
    claim_id = token.split("_")[1]
    return {"token": token, "alg": "Ed25519" if phone.alg is Alg.EDDSA else "ES256",
            "public_key": b64url(public_raw(phone)), "proof": b64url(phone.sign(claim_proof_message(proof_for or
                                                                                                   claim_id)))}
