"""What only the PostgreSQL backend has to show: its migrations (once, with several nodes opening a fresh
database at the same moment; a newer schema refused; ``citypass issuer migrate``), the guarantees under several
writers at once (a gap-free, ordered ledger sequence; a batch stored by three workers at once stored once, its
rollup counted once), taps by day partition and the retention policy that drops whole days."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from citypass.bench.ingest import NOW, synthetic_events
from citypass.cli import cli
from citypass.issuer.ingest import Uploader, prepare
from citypass.issuer.postgres.migrations import SCHEMA_VERSION
from citypass.issuer.postgres.store import PostgresStore
from citypass.issuer.postgres.taps import DAY, partition_name
from citypass.issuer.records import IngestResult, TapEvent
from citypass.issuer.sqlite.migrations import StoreSchemaError
from tests.helpers.databases import Databases

GATE = Uploader("bench-gate", 1, "entry")


def _batch(rows: list[dict[str, Any]]) -> Any:
    return prepare([TapEvent(r["event_id"], r["tap_id"], r["kind"], json.loads(r["body"]), r["created_at"])
                    for r in rows], GATE)


def _at_once(count: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(0)`` … ``fn(count - 1)`` on as many threads, released together; their results (or exceptions)."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_three_nodes_opening_a_fresh_database_migrate_it_once(pg_databases: Databases, tmp_path: Path) -> None:
    url = pg_databases()
    assert url is not None
    stores = _at_once(3, lambda _: PostgresStore(url))
    try:
        assert all(isinstance(s, PostgresStore) for s in stores), stores  # none failed on a table made twice
        assert {s.schema_version() for s in stores} == {SCHEMA_VERSION}
        later = PostgresStore(url)
        assert later.opened_at_version == SCHEMA_VERSION
        later.close()
        stores[0].set_meta("schema_version", str(SCHEMA_VERSION + 1))
        with pytest.raises(StoreSchemaError, match="newer"):
            PostgresStore(url)
        stores[0].set_meta("schema_version", str(SCHEMA_VERSION))
    finally:
        for s in stores:
            s.close()
    home = tmp_path / "issuer"
    other = pg_databases()
    runner = CliRunner()
    made = runner.invoke(cli, ["issuer", "init", "--home", str(home), "--site", "west-lake", "--database", other])
    assert made.exit_code == 0, made.output
    assert (home / "database.url").read_text().strip() == other and not (home / "issuer.db").exists()
    assert oct((home / "database.url").stat().st_mode & 0o777) == "0o600"
    migrated = runner.invoke(cli, ["issuer", "migrate", "--home", str(home)])
    assert migrated.exit_code == 0 and f"schema version {SCHEMA_VERSION} (up to date)" in migrated.output
    again = runner.invoke(cli, ["issuer", "init", "--home", str(tmp_path / "second"), "--database", other])
    assert again.exit_code != 0 and "already holds an issuer" in again.output
    wrong = runner.invoke(cli, ["issuer", "init", "--home", str(tmp_path / "third"), "--database", "mysql://x/y"])
    assert wrong.exit_code != 0 and "unsupported database" in wrong.output


def test_several_writers_make_one_gap_free_ordered_ledger_sequence(pg_databases: Databases) -> None:
    url = pg_databases()
    assert url is not None
    stores = [PostgresStore(url, pool_max=4) for _ in range(4)]
    try:
        def revoke_25(i: int) -> list[int]:
            return [stores[i].log_change("revoke", f"{i:02x}{n:06x}", NOW + n) for n in range(25)]

        seqs = _at_once(4, revoke_25)
        assert all(isinstance(s, list) for s in seqs), seqs
        everything = sorted(n for s in seqs for n in s)
        assert everything == list(range(1, 101))  # each writer got distinct numbers, no gaps
        assert all(s == sorted(s) for s in seqs)  # and each its own in increasing order
        changes = stores[1].changes_since(0, 1000)
        assert [c.seq for c in changes] == list(range(1, 101)) and stores[2].ledger_seq() == 100
        assert len({c.ref for c in changes}) == 100
        # Revoking one id from every node at once: one revocation, one change, the rest told it already was.
        revoked = _at_once(4, lambda i: stores[i].revoke(b"\xee" * 8, NOW))
        assert sorted(revoked) == [False, False, False, True] and stores[0].ledger_seq() == 101
    finally:
        for s in stores:
            s.close()


def test_a_batch_stored_by_three_workers_at_once_is_stored_and_rolled_up_once(pg_databases: Databases) -> None:
    url = pg_databases()
    assert url is not None
    stores = [PostgresStore(url, pool_max=2) for _ in range(3)]
    rows = synthetic_events(400, "bench-gate", seed=7)  # 400 taps + 40 annulments
    try:
        for chunk in (rows[:220], rows[220:]):
            results = _at_once(3, lambda i, chunk=chunk: stores[i].store_batch(_batch(chunk), "bench-gate", NOW))
            assert all(isinstance(r, IngestResult) for r in results), results
            assert all(set(r.acknowledged) == {row["event_id"] for row in chunk} for r in results)
            assert sum(r.new_taps for r in results) == sum(row["kind"] == "tap" for row in chunk)
        assert stores[0].tap_count() == 400
        hours = stores[1].tap_hours(NOW - DAY, NOW + DAY)
        assert sum(h[6] for h in hours) == 400 and sum(h[7] for h in hours) == 400
        assert sum(h[8] for h in hours) == 40  # every tenth tap annulled, once
        annulled = [t for t in stores[2].taps(limit=1000) if t.annulled]
        assert len(annulled) == 40 and all(t.annulled == 1 for t in annulled)
    finally:
        for s in stores:
            s.close()


def test_taps_go_to_day_partitions_and_retention_drops_whole_days(pg_databases: Databases) -> None:
    url = pg_databases()
    assert url is not None
    store = PostgresStore(url)
    try:
        day1, day2 = _events_on(NOW, "a", 30), _events_on(NOW + DAY, "b", 20)
        ancient = _events_on(NOW - 3 * 365 * DAY, "c", 5)  # a gate clock years off: the default partition
        received = NOW + DAY + 60
        for rows in (day1, day2, ancient):
            store.store_batch(_batch(rows), "bench-gate", received)
        parts = Counter(name for (name,) in store.fetchall("SELECT tableoid::regclass::text FROM taps"))
        first, second = partition_name(NOW - NOW % DAY), partition_name(NOW + DAY - (NOW + DAY) % DAY)
        assert parts == {first: 30, second: 20, "taps_other": 5}
        assert len(store.taps(since=NOW - NOW % DAY, until=NOW - NOW % DAY + DAY)) == 30
        dropped = store.drop_taps_before(NOW + DAY)
        assert dropped == [first]
        assert store.tap_count() == 20 and {t.at // DAY for t in store.taps()} == {(NOW + DAY) // DAY}
        assert store.scalar("SELECT count(*) FROM tap_ids") == 20
        assert sum(h[6] for h in store.tap_hours(0, 2**40)) == 20
        # A day dropped can be ingested again later (its partition is made anew).
        store.store_batch(_batch(_events_on(NOW, "d", 3)), "bench-gate", received)
        assert store.tap_count() == 23
    finally:
        store.close()


def _events_on(at: int, tag: str, count: int) -> list[dict[str, Any]]:
    """``count`` tap rows at ``at`` (no annulments), ids unique to ``tag``."""
    rows = [r for r in synthetic_events(count, "bench-gate", seed=ord(tag[0])) if r["kind"] == "tap"]
    out = []
    for r in rows:
        body = json.loads(r["body"])
        body["at"] = at
        out.append(dict(r, body=json.dumps(body, separators=(",", ":"), sort_keys=True), created_at=at))
    return out
