"""PostgreSQL tables behind the signed ledger: meta, sites, keys, credentials, revocations, change log.

As in the SQLite store (:mod:`citypass.issuer.sqlite.ledger`), ``ledger_seq`` goes up on every change a gate
must learn about, in the same transaction as the ``ledger_changes`` row saying what changed. With several
nodes writing at once the order is kept by the counter's row lock: :meth:`LedgerTables.log_change` updates
the counter first (``UPDATE … RETURNING``), so a second writer waits for the first to commit and then takes
the next number — sequence numbers are gap-free and commit in order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from typing import Any

from citypass.credential.keys import Alg, VerifyKey
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustedKey
from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.records import CHANGE_KINDS, Conflict, LedgerChange, RevocationRecord, StoredKey

_KEY = "SELECT role, kid, alg, pub, valid_from, valid_to, products, sites, active FROM keys"
_REVOCATION_TABLES = {"credential": ("revocations", "id"), "holder": ("holder_revocations", "holder_id")}


class LedgerTables(PgBase):
    # -- meta ----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.fetchone("SELECT value FROM meta WHERE key = %s", [key])
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET"
                         " value = excluded.value", [key, value])

    def bump(self, key: str) -> int:
        with self.write() as conn:
            row = conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, '1') ON CONFLICT (key) DO UPDATE SET"
                " value = (coalesce(nullif(meta.value, ''), '0')::bigint + 1)::text RETURNING value", [key],
            ).fetchone()
        assert row is not None
        return int(row[0])

    # -- change log ----------------------------------------------------------------------------------
    def ledger_seq(self) -> int:
        return int(self.get_meta("ledger_seq", "0") or 0)

    def log_change(self, kind: str, ref: str, at: int) -> int:
        if kind not in CHANGE_KINDS:
            raise ValueError(f"unknown ledger change kind {kind!r}")
        with self.write() as conn:
            seq = self.bump("ledger_seq")  # locks the counter row until this transaction ends
            conn.execute("INSERT INTO ledger_changes (seq, at, kind, ref) VALUES (%s, %s, %s, %s)",
                         [seq, at, kind, ref])
        return seq

    def changes_since(self, seq: int, limit: int, kinds: tuple[str, ...] | None = None) -> list[LedgerChange]:
        only = " AND kind = ANY(%s)" if kinds else ""
        rows = self.fetchall(
            f"SELECT seq, at, kind, ref FROM ledger_changes WHERE seq > %s{only} ORDER BY seq LIMIT %s",
            [seq, *([list(kinds)] if kinds else []), limit])
        return [LedgerChange(*row) for row in rows]

    def changes_logged_from(self) -> int:
        return int(self.get_meta("changes_from", "0") or 0)

    def publication_cursor(self) -> int:
        return int(self.get_meta("published_seq", "0") or 0)

    def claim_publication(self, base: int, seq: int) -> bool:
        # Compare and set in one statement: a second node claiming the same delta waits on the row, then
        # finds the cursor moved past its base and updates nothing.
        with self.write() as conn:
            cur = conn.execute("INSERT INTO meta AS m (key, value) VALUES ('published_seq', %s) ON CONFLICT (key)"
                               " DO UPDATE SET value = excluded.value WHERE m.value::bigint <= %s", [str(seq), base])
            return cur.rowcount == 1

    # -- sites ---------------------------------------------------------------------------------------
    def add_site(self, settings: SiteSettings, at: int = 0) -> None:
        with self.write() as conn:
            conn.execute("LOCK TABLE sites IN SHARE ROW EXCLUSIVE MODE")  # one site added at a time
            taken = conn.execute("SELECT name FROM sites WHERE number = %s OR name = %s",
                                 [settings.number, settings.name]).fetchone()
            if taken is not None:
                raise Conflict(f"site number {settings.number} or name {settings.name!r} is taken")
            conn.execute("INSERT INTO sites (number, name, settings) VALUES (%s, %s, %s)",
                         [settings.number, settings.name, settings.model_dump_json()])
            self.log_change("site", settings.name, at)

    def sites(self) -> list[SiteSettings]:
        rows = self.fetchall("SELECT settings FROM sites ORDER BY number")
        return [SiteSettings.model_validate_json(r[0]) for r in rows]

    def sites_named(self, names: Collection[str]) -> list[SiteSettings]:
        rows = self.fetchall("SELECT settings FROM sites WHERE name = ANY(%s) ORDER BY number", [sorted(set(names))])
        return [SiteSettings.model_validate_json(r[0]) for r in rows]

    def next_site_number(self) -> int:
        value = self.scalar("SELECT max(number) FROM sites")
        return 1 if value is None else int(value) + 1

    # -- keys ----------------------------------------------------------------------------------------
    def add_key(self, entry: TrustedKey, active: bool) -> None:
        with self.write() as conn:
            if active:
                conn.execute("UPDATE keys SET active = 0 WHERE role = %s", [entry.role])
            conn.execute(
                "INSERT INTO keys (role, kid, alg, pub, valid_from, valid_to, products, sites, active)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [entry.role, entry.kid.hex(), int(entry.key.alg), entry.key.raw, entry.valid_from, entry.valid_to,
                 None if entry.products is None else json.dumps(sorted(entry.products)),
                 None if entry.sites is None else json.dumps(sorted(entry.sites)), int(active)],
            )

    def set_key_valid_to(self, role: str, kid: bytes, valid_to: int) -> None:
        with self.write() as conn:
            conn.execute("UPDATE keys SET valid_to = %s WHERE role = %s AND kid = %s", [valid_to, role, kid.hex()])

    def keys(self) -> list[StoredKey]:
        return [StoredKey(_key_from_row(r), bool(r[8])) for r in self.fetchall(f"{_KEY} ORDER BY role, valid_from")]

    def active_key(self, role: str) -> TrustedKey | None:
        row = self.fetchone(f"{_KEY} WHERE role = %s AND active = 1", [role])
        return None if row is None else _key_from_row(row)

    # -- credentials ---------------------------------------------------------------------------------
    def record_credential(self, cred_id: bytes, product: int, issued_at: int, kid: bytes, holder_id: bytes | None,
                          details: dict[str, Any]) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO credentials (id, product, issued_at, kid, holder_id, details)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [cred_id.hex(), product, issued_at, kid.hex(), holder_id.hex() if holder_id else None,
                 json.dumps(details)],
            )

    def credential_exists(self, cred_id: bytes) -> bool:
        return self.fetchone("SELECT 1 FROM credentials WHERE id = %s", [cred_id.hex()]) is not None

    def credential_details(self, cred_id: bytes) -> dict[str, Any] | None:
        row = self.fetchone("SELECT details FROM credentials WHERE id = %s", [cred_id.hex()])
        if row is None:
            return None
        details: dict[str, Any] = json.loads(row[0] or "{}")
        return details

    # -- revocations ---------------------------------------------------------------------------------
    def revoke(self, cred_id: bytes, at: int, reason: str = "") -> bool:
        return self._add_revocation("credential", "revoke", cred_id, at, reason)

    def unrevoke(self, cred_id: bytes, at: int) -> bool:
        return self._remove_revocation("credential", "unrevoke", cred_id, at)

    def revoke_holder(self, holder_id: bytes, at: int, reason: str = "") -> bool:
        return self._add_revocation("holder", "revoke_holder", holder_id, at, reason)

    def unrevoke_holder(self, holder_id: bytes, at: int) -> bool:
        return self._remove_revocation("holder", "unrevoke_holder", holder_id, at)

    def _add_revocation(self, which: str, kind: str, ident: bytes, at: int, reason: str) -> bool:
        table, column = _REVOCATION_TABLES[which]
        with self.write() as conn:
            # Two nodes revoking one id at once: one inserts and logs the change, the other sees the conflict.
            cur = conn.execute(f"INSERT INTO {table} ({column}, revoked_at, reason) VALUES (%s, %s, %s)"
                               f" ON CONFLICT ({column}) DO NOTHING", [ident.hex(), at, reason])
            if cur.rowcount == 0:
                return False
            self.log_change(kind, ident.hex(), at)
        return True

    def _remove_revocation(self, which: str, kind: str, ident: bytes, at: int) -> bool:
        table, column = _REVOCATION_TABLES[which]
        with self.write() as conn:
            cur = conn.execute(f"DELETE FROM {table} WHERE {column} = %s", [ident.hex()])
            if cur.rowcount == 0:
                return False
            self.log_change(kind, ident.hex(), at)
        return True

    def revoked_ids(self) -> Iterator[bytes]:
        for (value,) in self.fetchall("SELECT id FROM revocations"):
            yield bytes.fromhex(value)

    def revoked_holders(self) -> Iterator[bytes]:
        for (value,) in self.fetchall("SELECT holder_id FROM holder_revocations"):
            yield bytes.fromhex(value)

    def revocation_count(self, kind: str) -> int:
        table, _ = _REVOCATION_TABLES[kind]
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    def revocations(self, *, kind: str | None = None, limit: int = 100, offset: int = 0) -> list[RevocationRecord]:
        parts = []
        if kind in (None, "credential"):
            parts.append("SELECT 'credential', id, revoked_at, reason FROM revocations")
        if kind in (None, "holder"):
            parts.append("SELECT 'holder', holder_id, revoked_at, reason FROM holder_revocations")
        if not parts:
            return []
        sql = " UNION ALL ".join(parts) + " ORDER BY 3 DESC, 2 LIMIT %s OFFSET %s"
        return [RevocationRecord(k, i, at, reason or "") for k, i, at, reason in self.fetchall(sql, [limit, offset])]


def _key_from_row(r: tuple[Any, ...]) -> TrustedKey:
    role, kid, alg, pub, valid_from, valid_to, products, sites, _active = r
    return TrustedKey(
        kid=bytes.fromhex(kid), key=VerifyKey.from_raw(Alg(alg), bytes(pub)), role=role,
        valid_from=valid_from, valid_to=valid_to,
        products=None if products is None else frozenset(json.loads(products)),
        sites=None if sites is None else frozenset(json.loads(sites)),
    )
