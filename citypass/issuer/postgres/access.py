"""PostgreSQL tables for access control: API tokens (only their hashes) and the audit log."""

from __future__ import annotations

from typing import Any

from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.records import AuditEntry, Conflict, TokenRecord

_TOKEN = "SELECT id, role, secret_hash, label, created_at, device_id, revoked_at FROM tokens"
_REVOKE_DEVICE = "UPDATE tokens SET revoked_at = %s WHERE device_id = %s AND revoked_at IS NULL"


class AccessTables(PgBase):
    def add_token(self, token: TokenRecord, *, replace_device_tokens: bool = False) -> int:
        with self.write() as conn:
            replaced = 0
            if replace_device_tokens and token.device_id is not None:
                replaced = conn.execute(_REVOKE_DEVICE, [token.created_at, token.device_id]).rowcount
            cur = conn.execute(
                "INSERT INTO tokens (id, role, secret_hash, label, created_at, device_id, revoked_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [token.id, token.role, token.secret_hash, token.label, token.created_at, token.device_id,
                 token.revoked_at],
            )
            if cur.rowcount == 0:
                raise Conflict(f"token id {token.id} exists")
        return replaced

    def token(self, token_id: str) -> TokenRecord | None:
        row = self.fetchone(f"{_TOKEN} WHERE id = %s", [token_id])
        return None if row is None else _token(row)

    def tokens(self) -> list[TokenRecord]:
        return [_token(row) for row in self.fetchall(f"{_TOKEN} ORDER BY created_at, id")]

    def revoke_token(self, token_id: str, at: int) -> bool:
        with self.write() as conn:
            cur = conn.execute("UPDATE tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", [at, token_id])
        return cur.rowcount > 0

    def revoke_device_tokens(self, device_id: str, at: int) -> int:
        with self.write() as conn:
            return conn.execute(_REVOKE_DEVICE, [at, device_id]).rowcount

    def write_audit(self, *, at: int, actor: str, role: str, method: str, path: str, status: int,
                    detail: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, role, method, path, status, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [at, actor, role, method, path[:500], status, detail[:2000]],
            )

    def audit_log(self, *, since: int | None = None, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        rows = self.fetchall(
            "SELECT id, at, actor, role, method, path, status, detail FROM audit WHERE at >= %s"
            " ORDER BY id DESC LIMIT %s OFFSET %s", [since if since is not None else -(2**62), limit, offset])
        return [AuditEntry(*row) for row in rows]


def _token(row: Any) -> TokenRecord:
    tid, role, secret_hash, label, created_at, device_id, revoked_at = row
    return TokenRecord(tid, role, bytes(secret_hash), label or "", created_at, device_id, revoked_at)
