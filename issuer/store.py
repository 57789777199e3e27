"""The issuer's store: sites, keys, issued credentials and revocations in SQLite (sqlite-utils).

Everything the issuer signs is derived from this store, so ``citypass issuer export`` at any time
produces the snapshot of the current state. The ``ledger_seq`` counter goes up on every change a gate
must learn about (a revocation, a key change, a site change), which is what makes snapshot and delta
sequence numbers monotonic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from credential.keys import Alg, VerifyKey
from credential.sites import SiteSettings
from credential.trustlist import TrustedKey

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StoredKey:
    entry: TrustedKey
    active: bool  # the key the issuer currently signs with, for its role


class IssuerStore:
    """A thin repository over the issuer's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        if "meta" not in self.db.table_names():
            self.db.table("meta").create({"key": str, "value": str}, pk="key")
            self.db.table("sites").create({"number": int, "name": str, "settings": str}, pk="number")
            self.db.table("sites").create_index(["name"], unique=True)
            self.db.table("keys").create(
                {
                    "role": str,
                    "kid": str,
                    "alg": int,
                    "pub": bytes,
                    "valid_from": int,
                    "valid_to": int,
                    "products": str,
                    "sites": str,
                    "active": int,
                },
                pk=("role", "kid"),
                not_null={"role", "kid", "alg", "pub", "valid_from", "active"},
            )
            self.db.table("credentials").create(
                {"id": str, "product": int, "issued_at": int, "kid": str, "holder_id": str, "details": str},
                pk="id",
            )
            self.db.table("revocations").create({"id": str, "revoked_at": int, "reason": str}, pk="id")
            self.db.table("holder_revocations").create(
                {"holder_id": str, "revoked_at": int, "reason": str}, pk="holder_id"
            )
            self.set_meta("schema_version", str(SCHEMA_VERSION))
            self.set_meta("ledger_seq", "0")
            self.set_meta("trust_version", "0")
            self.set_meta("require_dynamic", "")

    # -- meta ----------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.table("meta").upsert({"key": key, "value": value}, pk="key")

    def bump(self, key: str) -> int:
        value = int(self.get_meta(key, "0") or 0) + 1
        self.set_meta(key, str(value))
        return value

    # -- sites ---------------------------------------------------------------------------------------
    def add_site(self, settings: SiteSettings) -> None:
        self.db.table("sites").insert(
            {"number": settings.number, "name": settings.name, "settings": settings.model_dump_json()}
        )
        self.bump("ledger_seq")

    def sites(self) -> list[SiteSettings]:
        return [
            SiteSettings.model_validate_json(r["settings"])
            for r in self.db.table("sites").rows_where(order_by="number")
        ]

    def next_site_number(self) -> int:
        row = self.db.execute("SELECT max(number) FROM sites").fetchone()
        return 1 if row[0] is None else int(row[0]) + 1

    # -- keys ----------------------------------------------------------------------------------------
    def add_key(self, entry: TrustedKey, active: bool) -> None:
        if active:
            self.db.execute("UPDATE keys SET active = 0 WHERE role = ?", [entry.role])
        self.db.table("keys").insert(
            {
                "role": entry.role,
                "kid": entry.kid.hex(),
                "alg": int(entry.key.alg),
                "pub": entry.key.raw,
                "valid_from": entry.valid_from,
                "valid_to": entry.valid_to,
                "products": None if entry.products is None else json.dumps(sorted(entry.products)),
                "sites": None if entry.sites is None else json.dumps(sorted(entry.sites)),
                "active": int(active),
            }
        )

    def set_key_valid_to(self, role: str, kid: bytes, valid_to: int) -> None:
        self.db.table("keys").update((role, kid.hex()), {"valid_to": valid_to})

    def keys(self) -> list[StoredKey]:
        return [
            StoredKey(_key_from_row(r), bool(r["active"]))
            for r in self.db.table("keys").rows_where(order_by="role, valid_from")
        ]

    def active_key(self, role: str) -> TrustedKey | None:
        rows = list(self.db.table("keys").rows_where("role = ? AND active = 1", [role]))
        return _key_from_row(rows[0]) if rows else None

    # -- credentials and revocations -----------------------------------------------------------------
    def record_credential(
        self, cred_id: bytes, product: int, issued_at: int, kid: bytes, holder_id: bytes | None, details: dict[str, Any]
    ) -> None:
        self.db.table("credentials").insert(
            {
                "id": cred_id.hex(),
                "product": product,
                "issued_at": issued_at,
                "kid": kid.hex(),
                "holder_id": holder_id.hex() if holder_id else None,
                "details": json.dumps(details),
            }
        )

    def credential_exists(self, cred_id: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM credentials WHERE id = ?", [cred_id.hex()]).fetchone() is not None

    def revoke(self, cred_id: bytes, at: int, reason: str = "") -> bool:
        """Revoke a credential id; False when it already was."""
        if self.db.execute("SELECT 1 FROM revocations WHERE id = ?", [cred_id.hex()]).fetchone():
            return False
        self.db.table("revocations").insert({"id": cred_id.hex(), "revoked_at": at, "reason": reason})
        self.bump("ledger_seq")
        return True

    def revoke_holder(self, holder_id: bytes, at: int, reason: str = "") -> bool:
        if self.db.execute("SELECT 1 FROM holder_revocations WHERE holder_id = ?", [holder_id.hex()]).fetchone():
            return False
        self.db.table("holder_revocations").insert({"holder_id": holder_id.hex(), "revoked_at": at, "reason": reason})
        self.bump("ledger_seq")
        return True

    def revoked_ids(self) -> Iterator[bytes]:
        for (value,) in self.db.execute("SELECT id FROM revocations"):
            yield bytes.fromhex(value)

    def revoked_holders(self) -> Iterator[bytes]:
        for (value,) in self.db.execute("SELECT holder_id FROM holder_revocations"):
            yield bytes.fromhex(value)


def _key_from_row(r: dict[str, Any]) -> TrustedKey:
    return TrustedKey(
        kid=bytes.fromhex(r["kid"]),
        key=VerifyKey.from_raw(Alg(r["alg"]), r["pub"]),
        role=r["role"],
        valid_from=r["valid_from"],
        valid_to=r["valid_to"],
        products=None if r["products"] is None else frozenset(json.loads(r["products"])),
        sites=None if r["sites"] is None else frozenset(json.loads(r["sites"])),
    )
