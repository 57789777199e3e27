"""Bulk writes of id sets (revoked credentials, revoked holders): millions of rows in seconds.

A snapshot carries up to 10 million revoked ids; the gate must install them between two visitors'
taps and apply 100k-id deltas in seconds. Three things make that fast. The figures were measured
while writing this module (2-vCPU VM, 10M random 8-byte ids, one transaction, WAL);
``citypass bench ledger`` re-measures the result on any machine:

1. **Insert in key order.** ``revocations`` is a WITHOUT ROWID B-tree keyed by the id. Random-order
   inserts touch a random leaf each time (62 s for 10M with ``executemany``); sorted inserts append
   to the right-most leaf (18 s). Python's ``sorted()`` of 10M ``bytes`` takes 10-25 s, so 8-byte
   ids (what the issuer mints) are sorted as big-endian ``uint64`` by numpy instead (about 1 s).
   Ids of any other length are sorted by Python. (Sorting inside SQLite via a temporary table and
   ``ORDER BY`` was slower: 24-39 s.)
2. **Let SQLite split the rows.** ``executemany`` pays for one Python tuple and one bind per row
   (~550k rows/s). Instead each statement binds one 512 KiB blob of concatenated ids, and a recursive
   CTE cuts it into rows with ``substr`` inside SQLite (5 s for 10M, ~2M rows/s)::

       WITH RECURSIVE k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n + 1 < :count)
       INSERT OR IGNORE INTO revocations (id) SELECT substr(:blob, n * :width + 1, :width) FROM k

3. **Touch the id objects as rarely as possible.** Ten million ``bytes`` objects are scattered over
   ~500 MB of memory, so every pass over them costs about a second; only C-level passes are made
   (``list``, ``map(len)``, ``b"".join``) unless ids of several widths are mixed.

For a 100k-id *delta* into a 10M-row table none of this matters much: each id lands on a random
leaf page, and both ways take ~0.7 s.

Example::

    with write(db.conn):
        added = insert_ids(db.conn, "revocations", snapshot.revoked)
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable

#: Tables these helpers may write (names are interpolated into SQL, so they come from this set only).
ID_TABLES = frozenset({"revocations", "revoked_holders"})
#: Ids per statement: 64k × 8 bytes = 512 KiB per bound blob, far below SQLite's 1 GB limit and large
#: enough that the per-statement cost disappears.
CHUNK = 65_536


def _check_table(table: str) -> None:
    if table not in ID_TABLES:
        raise ValueError(f"not an id table: {table!r}")


def sorted_blob(ids: Iterable[bytes], width: int) -> bytes:
    """Concatenate ``ids`` (all ``width`` bytes long) in ascending byte order.

        >>> sorted_blob([b"\\x02" * 8, b"\\x01" * 8], 8).hex()
        '01010101010101010202020202020202'
    """
    items = ids if isinstance(ids, list) else list(ids)
    if width == 8:
        # Imported here, not at the top: only snapshot installs need it, and a daemon (or a crash-test
        # worker started hundreds of times) should not pay numpy's import time before its first tap.
        import numpy as np

        # Big-endian uint64 order is exactly byte-wise lexicographic order for 8-byte strings.
        arr = np.sort(np.frombuffer(b"".join(items), dtype=">u8"))
        return arr.astype(">u8", copy=False).tobytes()
    return b"".join(sorted(items))


def group_by_width(ids: Iterable[bytes]) -> dict[int, list[bytes]]:
    """Ids grouped by length (a fixed width is what lets SQLite cut a blob into rows).

    Every pass over 10 million ``bytes`` objects costs about a second (they are scattered in memory),
    so the common case — every id the same width — is found with C-level passes only."""
    items = list(ids)
    widths = set(map(len, items))
    if any(not 1 <= w <= 32 for w in widths):
        raise ValueError("ids must be 1..32 bytes long")
    if len(widths) <= 1:  # anything but bytes makes b"".join() in sorted_blob raise TypeError
        return {widths.pop(): items} if widths else {}
    groups: dict[int, list[bytes]] = defaultdict(list)
    for item in items:
        if not isinstance(item, bytes):
            raise TypeError(f"ids must be bytes, not {type(item).__name__}")
        groups[len(item)].append(item)
    return groups


def insert_ids(conn: sqlite3.Connection, table: str, ids: Iterable[bytes]) -> int:
    """Insert ``ids`` into ``table`` (ignoring ones already there) inside the caller's transaction;
    return how many rows were added."""
    _check_table(table)
    added = 0
    for width, group in group_by_width(ids).items():
        blob = sorted_blob(group, width)
        step = CHUNK * width
        for offset in range(0, len(blob), step):
            added += insert_blob(conn, table, blob[offset:offset + step], width)
    return added


def insert_blob(conn: sqlite3.Connection, table: str, blob: bytes, width: int) -> int:
    """Insert the ids concatenated in ``blob`` (each ``width`` bytes; sorted is fastest) into ``table`` — an id
    table or a staging copy of one (``revocations_next_…``) — inside the caller's transaction; rows added."""
    base = table.split("_next_")[0]
    if base not in ID_TABLES or not table.replace("_", "").isalnum():
        raise ValueError(f"not an id table: {table!r}")
    sql = (
        "WITH RECURSIVE k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n + 1 < ?2) "
        f"INSERT OR IGNORE INTO {table} (id) SELECT substr(?1, n * ?3 + 1, ?3) FROM k"
    )
    before = conn.total_changes
    if blob:
        conn.execute(sql, (blob, len(blob) // width, width))
    return conn.total_changes - before


def insert_ids_executemany(conn: sqlite3.Connection, table: str, ids: Iterable[bytes]) -> int:
    """The plain ``executemany`` way, kept for the benchmark's comparison row."""
    _check_table(table)
    before = conn.total_changes
    conn.executemany(f"INSERT OR IGNORE INTO {table} (id) VALUES (?)", ((i,) for i in sorted(ids)))
    return conn.total_changes - before


def delete_ids(conn: sqlite3.Connection, table: str, ids: Iterable[bytes]) -> int:
    """Delete ``ids`` from ``table`` inside the caller's transaction; return how many were there.
    (Un-revocations are rare and small, so the plain way is fast enough.)"""
    _check_table(table)
    before = conn.total_changes
    conn.executemany(f"DELETE FROM {table} WHERE id = ?", ((i,) for i in sorted(ids)))
    return conn.total_changes - before


def replace_ids(conn: sqlite3.Connection, table: str, ids: Iterable[bytes]) -> int:
    """Make ``table`` hold exactly ``ids`` (inside the caller's transaction); return the row count.

    ``DELETE FROM t`` without a WHERE clause uses SQLite's truncate optimisation (it frees the
    B-tree's pages instead of deleting row by row), so emptying 10M rows takes a fraction of a second."""
    _check_table(table)
    conn.execute(f"DELETE FROM {table}")
    return insert_ids(conn, table, ids)
