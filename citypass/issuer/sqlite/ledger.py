"""SQLite tables behind the signed ledger: meta, sites, keys, credentials, revocations, change log.

Everything the issuer signs is derived from these tables, so a snapshot at any time is the current
state. The ``ledger_seq`` counter goes up on every change a gate must learn about (a revocation, a key
change, a site change), in the same transaction as a ``ledger_changes`` row saying what changed:
snapshot sequence numbers are monotonic, and a delta from any logged sequence can be computed.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from typing import Any

from citypass.credential.keys import Alg, VerifyKey
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustedKey
from citypass.issuer.records import CHANGE_KINDS, Conflict, LedgerChange, RevocationRecord, StoredKey
from citypass.issuer.sqlite.connection import SqliteBase


class LedgerTables(SqliteBase):
    # -- meta ----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                         " value = excluded.value", [key, value])

    def bump(self, key: str) -> int:
        with self.write():
            value = int(self.get_meta(key, "0") or 0) + 1
            self.set_meta(key, str(value))
        return value

    # -- change log ----------------------------------------------------------------------------------
    def ledger_seq(self) -> int:
        return int(self.get_meta("ledger_seq", "0") or 0)

    def log_change(self, kind: str, ref: str, at: int) -> int:
        if kind not in CHANGE_KINDS:
            raise ValueError(f"unknown ledger change kind {kind!r}")
        with self.write() as conn:
            seq = self.bump("ledger_seq")
            conn.execute("INSERT INTO ledger_changes (seq, at, kind, ref) VALUES (?, ?, ?, ?)", [seq, at, kind, ref])
        return seq

    def changes_since(self, seq: int, limit: int, kinds: tuple[str, ...] | None = None) -> list[LedgerChange]:
        only = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
        rows = self.conn.execute(
            f"SELECT seq, at, kind, ref FROM ledger_changes WHERE seq > ?{only} ORDER BY seq LIMIT ?",
            [seq, *(kinds or ()), limit],
        ).fetchall()
        return [LedgerChange(*row) for row in rows]

    def changes_logged_from(self) -> int:
        return int(self.get_meta("changes_from", "0") or 0)

    def publication_cursor(self) -> int:
        return int(self.get_meta("published_seq", "0") or 0)

    def claim_publication(self, base: int, seq: int) -> bool:
        with self.write():
            if self.publication_cursor() > base:
                return False
            self.set_meta("published_seq", str(seq))
        return True

    # -- sites ---------------------------------------------------------------------------------------
    def add_site(self, settings: SiteSettings, at: int = 0) -> None:
        with self.write() as conn:
            taken = conn.execute("SELECT name FROM sites WHERE number = ? OR name = ?",
                                 [settings.number, settings.name]).fetchone()
            if taken is not None:
                raise Conflict(f"site number {settings.number} or name {settings.name!r} is taken")
            conn.execute("INSERT INTO sites (number, name, settings) VALUES (?, ?, ?)",
                         [settings.number, settings.name, settings.model_dump_json()])
            self.log_change("site", settings.name, at)

    def sites(self) -> list[SiteSettings]:
        rows = self.conn.execute("SELECT settings FROM sites ORDER BY number").fetchall()
        return [SiteSettings.model_validate_json(r[0]) for r in rows]

    def sites_named(self, names: Collection[str]) -> list[SiteSettings]:
        rows = self.conn.execute("SELECT settings FROM sites WHERE name IN (SELECT value FROM json_each(?)) "
                                 "ORDER BY number", [json.dumps(sorted(set(names)))]).fetchall()
        return [SiteSettings.model_validate_json(r[0]) for r in rows]

    def next_site_number(self) -> int:
        row = self.conn.execute("SELECT max(number) FROM sites").fetchone()
        return 1 if row[0] is None else int(row[0]) + 1

    # -- keys ----------------------------------------------------------------------------------------
    def add_key(self, entry: TrustedKey, active: bool) -> None:
        with self.write() as conn:
            if active:
                conn.execute("UPDATE keys SET active = 0 WHERE role = ?", [entry.role])
            self.db.table("keys").insert({
                "role": entry.role, "kid": entry.kid.hex(), "alg": int(entry.key.alg), "pub": entry.key.raw,
                "valid_from": entry.valid_from, "valid_to": entry.valid_to,
                "products": None if entry.products is None else json.dumps(sorted(entry.products)),
                "sites": None if entry.sites is None else json.dumps(sorted(entry.sites)),
                "active": int(active),
            })

    def set_key_valid_to(self, role: str, kid: bytes, valid_to: int) -> None:
        with self.write() as conn:
            conn.execute("UPDATE keys SET valid_to = ? WHERE role = ? AND kid = ?", [valid_to, role, kid.hex()])

    def keys(self) -> list[StoredKey]:
        return [StoredKey(_key_from_row(r), bool(r["active"]))
                for r in self.db.table("keys").rows_where(order_by="role, valid_from")]

    def active_key(self, role: str) -> TrustedKey | None:
        rows = list(self.db.table("keys").rows_where("role = ? AND active = 1", [role]))
        return _key_from_row(rows[0]) if rows else None

    # -- credentials ---------------------------------------------------------------------------------
    def record_credential(self, cred_id: bytes, product: int, issued_at: int, kid: bytes, holder_id: bytes | None,
                          details: dict[str, Any]) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO credentials (id, product, issued_at, kid, holder_id, details) VALUES (?, ?, ?, ?, ?, ?)",
                [cred_id.hex(), product, issued_at, kid.hex(), holder_id.hex() if holder_id else None,
                 json.dumps(details)],
            )

    def credential_exists(self, cred_id: bytes) -> bool:
        return self.conn.execute("SELECT 1 FROM credentials WHERE id = ?", [cred_id.hex()]).fetchone() is not None

    def credential_details(self, cred_id: bytes) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT details FROM credentials WHERE id = ?", [cred_id.hex()]).fetchone()
        if row is None:
            return None
        details: dict[str, Any] = json.loads(row[0] or "{}")
        return details

    # -- revocations ---------------------------------------------------------------------------------
    def revoke(self, cred_id: bytes, at: int, reason: str = "") -> bool:
        return self._add_revocation("revocations", "id", "revoke", cred_id, at, reason)

    def unrevoke(self, cred_id: bytes, at: int) -> bool:
        return self._remove_revocation("revocations", "id", "unrevoke", cred_id, at)

    def revoke_holder(self, holder_id: bytes, at: int, reason: str = "") -> bool:
        return self._add_revocation("holder_revocations", "holder_id", "revoke_holder", holder_id, at, reason)

    def unrevoke_holder(self, holder_id: bytes, at: int) -> bool:
        return self._remove_revocation("holder_revocations", "holder_id", "unrevoke_holder", holder_id, at)

    def _add_revocation(self, table: str, column: str, kind: str, ident: bytes, at: int, reason: str) -> bool:
        with self.write() as conn:
            cur = conn.execute(f"INSERT OR IGNORE INTO {table} ({column}, revoked_at, reason) VALUES (?, ?, ?)",
                               [ident.hex(), at, reason])
            if cur.rowcount == 0:
                return False
            self.log_change(kind, ident.hex(), at)
        return True

    def _remove_revocation(self, table: str, column: str, kind: str, ident: bytes, at: int) -> bool:
        with self.write() as conn:
            cur = conn.execute(f"DELETE FROM {table} WHERE {column} = ?", [ident.hex()])
            if cur.rowcount == 0:
                return False
            self.log_change(kind, ident.hex(), at)
        return True

    def revoked_ids(self) -> Iterator[bytes]:
        for (value,) in self.conn.execute("SELECT id FROM revocations"):
            yield bytes.fromhex(value)

    def revoked_holders(self) -> Iterator[bytes]:
        for (value,) in self.conn.execute("SELECT holder_id FROM holder_revocations"):
            yield bytes.fromhex(value)

    def revocation_count(self, kind: str) -> int:
        table = {"credential": "revocations", "holder": "holder_revocations"}[kind]
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def revocations(self, *, kind: str | None = None, limit: int = 100, offset: int = 0) -> list[RevocationRecord]:
        parts = []
        if kind in (None, "credential"):
            parts.append("SELECT 'credential', id, revoked_at, reason FROM revocations")
        if kind in (None, "holder"):
            parts.append("SELECT 'holder', holder_id, revoked_at, reason FROM holder_revocations")
        if not parts:
            return []
        sql = " UNION ALL ".join(parts) + " ORDER BY 3 DESC, 2 LIMIT ? OFFSET ?"
        return [RevocationRecord(k, i, at, reason or "") for k, i, at, reason in
                self.conn.execute(sql, [limit, offset]).fetchall()]


def _key_from_row(r: dict[str, Any]) -> TrustedKey:
    return TrustedKey(
        kid=bytes.fromhex(r["kid"]), key=VerifyKey.from_raw(Alg(r["alg"]), r["pub"]), role=r["role"],
        valid_from=r["valid_from"], valid_to=r["valid_to"],
        products=None if r["products"] is None else frozenset(json.loads(r["products"])),
        sites=None if r["sites"] is None else frozenset(json.loads(r["sites"])),
    )
