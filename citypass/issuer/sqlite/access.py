"""SQLite tables for access control: API tokens (only their hashes) and the audit log."""

from __future__ import annotations

from typing import Any

from citypass.issuer.records import AuditEntry, Conflict, TokenRecord
from citypass.issuer.sqlite.connection import SqliteBase

_TOKEN = "SELECT id, role, secret_hash, label, created_at, device_id, revoked_at FROM tokens"


class AccessTables(SqliteBase):
    def add_token(self, token: TokenRecord, *, replace_device_tokens: bool = False) -> int:
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM tokens WHERE id = ?", [token.id]).fetchone():
                raise Conflict(f"token id {token.id} exists")
            replaced = 0
            if replace_device_tokens and token.device_id is not None:
                replaced = conn.execute("UPDATE tokens SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                                        [token.created_at, token.device_id]).rowcount
            conn.execute(
                "INSERT INTO tokens (id, role, secret_hash, label, created_at, device_id, revoked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [token.id, token.role, token.secret_hash, token.label, token.created_at, token.device_id,
                 token.revoked_at],
            )
        return replaced

    def token(self, token_id: str) -> TokenRecord | None:
        row = self.conn.execute(f"{_TOKEN} WHERE id = ?", [token_id]).fetchone()
        return None if row is None else _token(row)

    def tokens(self) -> list[TokenRecord]:
        return [_token(row) for row in self.conn.execute(f"{_TOKEN} ORDER BY created_at, id").fetchall()]

    def revoke_token(self, token_id: str, at: int) -> bool:
        with self.write() as conn:
            cur = conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, token_id])
        return cur.rowcount > 0

    def revoke_device_tokens(self, device_id: str, at: int) -> int:
        with self.write() as conn:
            cur = conn.execute("UPDATE tokens SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                               [at, device_id])
        return cur.rowcount

    def write_audit(self, *, at: int, actor: str, role: str, method: str, path: str, status: int,
                    detail: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO audit (at, actor, role, method, path, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [at, actor, role, method, path[:500], status, detail[:2000]],
            )

    def audit_log(self, *, since: int | None = None, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        rows = self.conn.execute(
            "SELECT id, at, actor, role, method, path, status, detail FROM audit WHERE at >= ?"
            " ORDER BY id DESC LIMIT ? OFFSET ?", [since if since is not None else -(2**62), limit, offset],
        ).fetchall()
        return [AuditEntry(*row) for row in rows]


def _token(row: Any) -> TokenRecord:
    tid, role, secret_hash, label, created_at, device_id, revoked_at = row
    return TokenRecord(tid, role, bytes(secret_hash), label or "", created_at, device_id, revoked_at)
