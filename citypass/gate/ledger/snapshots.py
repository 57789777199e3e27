"""Installing what the issuer signs: full snapshots, revocation deltas, and the state they leave.

The chain of trust is the one in :mod:`citypass.credential.snapshot`: the gate's *pinned* root key → the
root-signed trust list → a ``ledger`` key → the snapshot. Verification happens before the write
transaction starts, so a snapshot with a bad signature never reaches the file; one that verifies is
installed in a single transaction (trust list, sites, every revocation, meta), so a kill half way
leaves the previous snapshot in force.

Freshness is ordered by ``(seq, issued_at)``: the issuer bumps ``seq`` on every change, and re-exports
an unchanged ledger with the same ``seq`` and a later ``issued_at`` — which is how a gate learns that
nothing changed *as of then*, so it still advances ``synced_at``. Anything older is refused unless
forced (a technician restoring a known snapshot).

The meta table holds integers only::

    snapshot_seq   sequence of the installed snapshot or last delta
    synced_at      issued_at of the freshest signed data installed (the ledger's age is now - this)
    clock_floor    never decreases: max of every issued_at and every recorded tap's effective time
    revocations, revoked_holders   row counts (kept here: count(*) over 10M rows takes ~0.3 s)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from sqlite_utils import Database

from citypass.credential.keys import VerifyKey
from citypass.credential.sites import SiteSettings
from citypass.credential.snapshot import LedgerSnapshot, SnapshotError, load_snapshot
from citypass.credential.trustlist import TrustError, TrustList
from citypass.gate.ledger.connection import SnapshotRefused
from citypass.gate.ledger.revocations import delete_ids, insert_ids, replace_ids

__all__ = ["LedgerState", "apply_delta", "install", "pinned_root", "raise_floor", "read_state",
           "replace_sites", "verify"]

#: What a gate trusts before its first snapshot: nothing (every code is denied ``unknown_key``).
EMPTY_TRUST = TrustList(version=0, issued_at=0, keys=())


@dataclass(frozen=True)
class LedgerState:
    """The slowly changing part of the ledger, cached in memory between commits."""

    trust: TrustList
    trust_error: str | None
    trust_signed: bytes | None
    seq: int | None
    synced_at: int | None
    clock_floor: int


def get_meta(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def raise_floor(conn: sqlite3.Connection, at: int) -> None:
    """Raise ``clock_floor`` to ``at`` if that is later; never lowers it."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('clock_floor', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)", (at,),
    )


def read_state(db: Database, root: VerifyKey | None, previous: LedgerState | None) -> LedgerState:
    """Read meta and the trust list. The trust list is re-verified (against the pinned ``root``, or
    else the root it was installed with) only when its bytes changed since ``previous``."""
    conn = db.conn
    meta = {str(k): int(v) for k, v in conn.execute("SELECT key, value FROM meta").fetchall()}
    row = conn.execute("SELECT signed, root_alg, root_pub FROM trust WHERE id = 1").fetchone()
    trust, error, signed = EMPTY_TRUST, None, None
    if row is not None:
        signed = bytes(row[0])
        if previous is not None and previous.trust_signed == signed:
            trust, error = previous.trust, previous.trust_error
        else:
            try:
                key = root if root is not None else VerifyKey.from_raw(row[1], bytes(row[2]))
                trust = TrustList.verify(signed, key)
            except (TrustError, ValueError) as exc:
                error = f"stored trust list rejected, trusting no keys: {exc}"
    return LedgerState(trust, error, signed, meta.get("snapshot_seq"), meta.get("synced_at"),
                       meta.get("clock_floor", 0))


def pinned_root(own: VerifyKey | None, given: VerifyKey | None) -> VerifyKey:
    """The root key to verify with: the ledger's pinned one, or the one passed (they must agree).
    A snapshot's embedded copy of the root is never used."""
    if own is not None and given is not None and (own.alg, own.raw) != (given.alg, given.raw):
        raise SnapshotRefused("the root key passed is not the one this ledger was opened with")
    key = given or own
    if key is None:
        raise ValueError("load_snapshot needs the pinned root key (GateLedger.open(root=…) or root=…)")
    return key


def verify(data: bytes, root: VerifyKey) -> LedgerSnapshot:
    try:
        return load_snapshot(data, root)
    except SnapshotError as exc:
        raise SnapshotRefused(f"snapshot refused: {exc}") from exc


def install(db: Database, snap: LedgerSnapshot, *, force: bool = False) -> None:
    """Replace trust list, sites and revocations with a verified snapshot's (inside a transaction)."""
    conn = db.conn
    seq, synced = get_meta(conn, "snapshot_seq"), get_meta(conn, "synced_at")
    if not force and seq is not None and (snap.seq, snap.issued_at) < (seq, synced or 0):
        raise SnapshotRefused(
            f"snapshot seq {snap.seq} issued at {snap.issued_at} is older than the installed seq {seq} "
            f"(synced at {synced}); pass force=True to install it anyway"
        )
    db.table("trust").upsert(
        {"id": 1, "version": snap.trust.version, "issued_at": snap.trust.issued_at,
         "signed": snap.trust_signed, "root_alg": int(snap.root.alg), "root_pub": snap.root.raw},
        pk="id",
    )
    replace_sites(db, snap.sites)
    set_meta(conn, "revocations", replace_ids(conn, "revocations", snap.revoked))
    set_meta(conn, "revoked_holders", replace_ids(conn, "revoked_holders", snap.revoked_holders))
    set_meta(conn, "snapshot_seq", snap.seq)
    set_meta(conn, "synced_at", snap.issued_at)
    raise_floor(conn, snap.issued_at)


def replace_sites(db: Database, sites: Iterable[SiteSettings]) -> None:
    """Replace the whole site list (inside the caller's transaction)."""
    db.conn.execute("DELETE FROM sites")
    db.table("sites").insert_all(
        ({"number": s.number, "name": s.name, "settings": s.model_dump_json()} for s in sites),
        pk="number",
    )


def apply_delta(db: Database, base_seq: int, seq: int, issued_at: int, revoked: Iterable[bytes],
                unrevoked: Iterable[bytes], revoked_holders: Iterable[bytes],
                unrevoked_holders: Iterable[bytes], sites: Iterable[SiteSettings] | None = None) -> int:
    """Apply a verified delta from ``base_seq`` to ``seq`` (inside a transaction); return rows changed.

    A delta only applies on top of exactly the state it was computed from: a gate that missed one
    must fetch a snapshot instead of silently skipping a revocation."""
    conn = db.conn
    current = get_meta(conn, "snapshot_seq")
    if current != base_seq or seq <= base_seq:
        raise SnapshotRefused(
            f"delta {base_seq}→{seq} does not apply to a ledger at seq {current}: fetch a snapshot"
        )
    changes = 0
    for table, added, removed in (("revocations", revoked, unrevoked),
                                  ("revoked_holders", revoked_holders, unrevoked_holders)):
        plus, minus = insert_ids(conn, table, added), delete_ids(conn, table, removed)
        set_meta(conn, table, (get_meta(conn, table) or 0) + plus - minus)
        changes += plus + minus
    if sites is not None:
        site_list = list(sites)
        replace_sites(db, site_list)
        changes += len(site_list)
    set_meta(conn, "snapshot_seq", seq)
    set_meta(conn, "synced_at", max(issued_at, get_meta(conn, "synced_at") or 0))
    raise_floor(conn, issued_at)
    return changes
