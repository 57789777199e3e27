"""PostgreSQL table for wallet claims: passes ordered for a phone, signed when the phone claims them (a claim is
taken once whatever node the phone reaches: its row is locked while it is checked and bound)."""

from __future__ import annotations

import hmac
from typing import Any

from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.records import Conflict, NotFound, WalletClaimRecord

_CLAIM = ("SELECT id, product, order_cbor, created_at, expires_at, claimed_at, holder_id, credential_id, code,"
          " secret_hash FROM wallet_claims")


def _claim(row: tuple[Any, ...]) -> WalletClaimRecord:
    return WalletClaimRecord(*row[:9])  # bytea comes back as bytes


class WalletTables(PgBase):
    def add_wallet_claim(self, claim: WalletClaimRecord, secret_hash: bytes) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO wallet_claims (id, secret_hash, product, order_cbor, created_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [claim.id, secret_hash, claim.product, claim.order_cbor, claim.created_at, claim.expires_at],
            )

    def wallet_claim(self, claim_id: str) -> WalletClaimRecord:
        row = self.fetchone(f"{_CLAIM} WHERE id = %s", [claim_id])
        if row is None:
            raise NotFound(f"no wallet claim {claim_id!r}")
        return _claim(row)

    def take_wallet_claim(self, claim_id: str, secret_hash: bytes, holder_id: str, at: int) -> WalletClaimRecord:
        with self.write() as conn:
            row = conn.execute(f"{_CLAIM} WHERE id = %s FOR UPDATE", [claim_id]).fetchone()
            if row is None or not hmac.compare_digest(bytes(row[9]), secret_hash):
                raise NotFound("unknown claim link")
            claim = _claim(row)
            if claim.holder_id is not None:
                if claim.holder_id != holder_id:
                    raise Conflict("this claim link has been used already")
                return claim  # the same phone again (its answer was lost): same pass
            if at >= claim.expires_at:
                raise Conflict("this claim link has expired")
            conn.execute("UPDATE wallet_claims SET claimed_at = %s, holder_id = %s WHERE id = %s",
                         [at, holder_id, claim_id])
        return WalletClaimRecord(claim.id, claim.product, claim.order_cbor, claim.created_at, claim.expires_at, at,
                                 holder_id)

    def complete_wallet_claim(self, claim_id: str, credential_id: str, code: str) -> None:
        with self.write() as conn:
            conn.execute("UPDATE wallet_claims SET credential_id = %s, code = %s WHERE id = %s AND code IS NULL",
                         [credential_id, code, claim_id])
