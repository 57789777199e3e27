"""The gate's durable offline ledger: one SQLite file that answers the decision core's questions.

:class:`GateLedger` implements :class:`citypass.gate.decision.LedgerView` (trust list, freshness, clock floor,
revocations, replay cache, usage, occupancy) and records every tap durably before the barrier moves.
It is the SQLite twin of :class:`citypass.gate.memory_ledger.MemoryLedger`, and answers the same questions.

Example — install the issuer's snapshot, decide, record, and only then open the barrier::

    ledger = GateLedger.open(Path("/var/lib/citypass/ledger.sqlite3"), root=pinned_root)
    ledger.load_snapshot(Path("snapshot.cpls").read_bytes())     # verified against the pinned root
    ctx = ledger.context()                                        # this gate's site and direction
    decision = decide(code_text, ledger, ctx, now=int(time.time()))
    tap = ledger.record(decision, ctx, {"captured": t0, "decoded": t1, "decided": t2})
    if decision.allowed:
        barrier.grant(decision.persons)     # the tap is committed (and fsynced) before this line
        ledger.set_stage(tap.tap_id, "relay", time.time())

Where the work is:

* reads on the decision path use cursors kept open on the raw ``sqlite3`` connection (SQLite keeps
  their statements prepared), ~10 µs per revocation lookup among 10 million ids;
* every write is one ``BEGIN IMMEDIATE`` transaction (:func:`citypass.gate.ledger.connection.write`): a tap
  and everything it changes commit together, or — when killed at any instant — not at all;
* snapshot installs and deltas are in :mod:`citypass.gate.ledger.snapshots`; taps in :mod:`citypass.gate.ledger.taps`;
  the upload queue in :mod:`citypass.gate.ledger.outbox`; the schema in :mod:`citypass.gate.ledger.migrations`.

A ``GateLedger`` belongs to the thread that opened it (sqlite3's default check). Other processes may
open the same file: the trust list and meta values are re-read when ``PRAGMA data_version`` says
another connection committed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlite_utils import Database

from citypass.credential.keys import VerifyKey
from citypass.credential.sites import SiteSettings
from citypass.credential.snapshot import LedgerSnapshot
from citypass.credential.trustlist import TrustList
from citypass.errors import InvalidInput
from citypass.gate.decision import Decision, GateContext, Usage
from citypass.gate.ledger import outbox, snapshots, taps
from citypass.gate.ledger.config import LedgerConfig
from citypass.gate.ledger.connection import LedgerError, connect, translate, write
from citypass.gate.ledger.migrations import migrate
from citypass.gate.ledger.outbox import OutboxRow
from citypass.gate.ledger.taps import Tap
from citypass.gate.policy import Direction

DAY = 86_400
# The decision path's queries, each run on its own long-lived cursor.
_REVOKED = "SELECT 1 FROM revocations WHERE id = ?"
_HOLDER_REVOKED = "SELECT 1 FROM revoked_holders WHERE id = ?"
_SEEN = "SELECT 1 FROM seen WHERE presentation_id = ?"
_OCCUPANCY = "SELECT persons FROM occupancy WHERE site = ?"
_BENEFIT_USES = (
    "SELECT (SELECT count(*) FROM taps WHERE product = 5 AND credential_id = ?1 AND at >= ?2 AND allowed = 1"
    " AND kind = 'entry' AND annulled = 0)"
    " + (SELECT count(*) FROM sibling_taps WHERE product = 5 AND credential_id = ?1 AND at >= ?2"
    " AND kind = 'entry' AND annulled = 0)"
)


class SiteNotConfigured(LedgerError, InvalidInput):
    """The gate has no identity yet, or its site is not in the installed snapshot."""


@dataclass(frozen=True)
class GateIdentity:
    gate_id: str
    site: int
    direction: Direction


@dataclass(frozen=True)
class Integrity:
    ok: bool
    problems: tuple[str, ...]


class Checkpoint(NamedTuple):
    busy: bool  # a reader kept the checkpoint from finishing (retry later)
    wal_pages: int
    checkpointed_pages: int


class GateLedger:
    """A :class:`~citypass.gate.decision.LedgerView` over one SQLite file, with durable tap recording."""

    def __init__(self, db: Database, config: LedgerConfig, root: VerifyKey | None,
                 clock: Callable[[], float]) -> None:
        self.db = db
        self.config = config
        self._root = root
        self._clock = clock
        conn = db.conn
        # One cursor per hot-path query: each keeps its statement prepared in SQLite's cache.
        self._q_revoked = conn.cursor()
        self._q_holder = conn.cursor()
        self._q_seen = conn.cursor()
        self._q_usage = conn.cursor()
        self._q_occupancy = conn.cursor()
        self._q_version = conn.cursor()
        self._state: snapshots.LedgerState | None = None
        self._data_version = -1

    # -- opening and closing -----------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, root: VerifyKey | None = None, config: LedgerConfig | None = None,
             clock: Callable[[], float] = time.time) -> GateLedger:
        """Open (create, migrate) the ledger at ``path``. Pass the pinned ``root`` key: the stored trust
        list is then re-verified against it (and a snapshot need not name it again). ``clock`` (Unix
        seconds) only stamps stage times and ids; decisions get their time from the caller."""
        cfg = (config or LedgerConfig()).model_copy(update={"path": Path(path)})
        db = connect(cfg.path, synchronous=cfg.synchronous, busy_timeout_ms=cfg.busy_timeout_ms)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        return cls(db, cfg, root, clock)

    @classmethod
    def from_config(cls, config: LedgerConfig, *, root: VerifyKey | None = None) -> GateLedger:
        return cls.open(config.path, root=root, config=config)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> GateLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable=False`` is for facts that may be lost in a power cut without
        harm (a stage time, a passage confirmation, an upload acknowledgement that the issuer would
        simply acknowledge again): their COMMIT skips the fsync — on this VM's disk an fsync's tail is
        tens of milliseconds, and these writes sit in the frame loop — and they become durable with the
        next durable commit, which fsyncs the whole WAL. Taps themselves are always durable."""
        relax = not durable and self.config.synchronous != "NORMAL"
        try:
            if relax:
                self.db.conn.execute("PRAGMA synchronous=NORMAL")
            with write(self.db.conn) as conn:
                yield conn
        finally:
            if relax:
                self.db.conn.execute(f"PRAGMA synchronous={self.config.synchronous}")
            # our own commits do not change data_version: force a re-read, but keep _state so that
            # read_state can skip re-verifying a trust list that did not change
            self._data_version = -1

    def transaction(self, durable: bool = True) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction on this connection, for the ledger's other modules (see :meth:`_write`)."""
        return self._write(durable)

    def _now_ms(self, at_least: int = 0) -> int:
        return max(int(self._clock() * 1000), at_least * 1000)

    # -- LedgerView --------------------------------------------------------------------------------
    def _current(self) -> snapshots.LedgerState:
        try:
            version = self._q_version.execute("PRAGMA data_version").fetchone()[0]
            if self._state is None or version != self._data_version:
                self._state = snapshots.read_state(self.db, self._root, self._state)
                self._data_version = version
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return self._state

    @property
    def trust(self) -> TrustList:
        """The installed trust list (empty — every code ``unknown_key`` — before the first snapshot,
        or when it does not verify against the pinned root; see :attr:`trust_error`)."""
        return self._current().trust

    @property
    def trust_error(self) -> str | None:
        return self._current().trust_error

    @property
    def synced_at(self) -> int | None:
        return self._current().synced_at

    @property
    def clock_floor(self) -> int:
        return self._current().clock_floor

    @property
    def seq(self) -> int | None:
        """Sequence number of the installed snapshot or last delta (None before the first)."""
        return self._current().seq

    def is_revoked(self, credential_id: bytes) -> bool:
        try:
            row = self._q_revoked.execute(_REVOKED, (credential_id,)).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return row is not None

    def is_holder_revoked(self, holder_id: bytes) -> bool:
        try:
            row = self._q_holder.execute(_HOLDER_REVOKED, (holder_id,)).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return row is not None

    def presentation_seen(self, presentation_id: bytes) -> bool:
        try:
            row = self._q_seen.execute(_SEEN, (presentation_id,)).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return row is not None

    def usage(self, credential_id: bytes, site: int) -> Usage:
        try:
            return taps.read_usage(self._q_usage, credential_id, site)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def occupancy(self, site: int) -> int:
        try:
            row = self._q_occupancy.execute(_OCCUPANCY, (site,)).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return 0 if row is None else int(row[0])

    def benefit_uses(self, credential_id: bytes, since: int) -> int:
        """Benefit-card entries admitted here or at a sibling lane at or after ``since`` (partial indexes on
        product 5 keep this a probe of a few rows; see migration ``_v3_benefit``)."""
        try:
            row = self._q_occupancy.execute(_BENEFIT_USES, (credential_id, since)).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return int(row[0])

    # -- snapshots, deltas, sites, identity --------------------------------------------------------
    def load_snapshot(self, data: bytes, root: VerifyKey | None = None, *,
                      force: bool = False) -> LedgerSnapshot:
        """Verify a snapshot file's bytes against the pinned root and install it, built beside the live
        tables in short transactions and swapped in by one (:func:`~citypass.gate.ledger.snapshots.install_paced`):
        taps recorded meanwhile, by this process or another, wait at most one short batch.

        Raises :class:`SnapshotRefused` — and changes nothing — for a bad signature, a malformed
        file, or a snapshot older than the installed one (unless ``force``). Replaces trust list,
        sites and revocations; sets ``synced_at`` to its ``issued_at``; raises the clock floor."""
        pinned = snapshots.pinned_root(self._root, root)
        snap = snapshots.verify(data, pinned)
        snapshots.install_paced(self.db, snap, lambda durable: self._write(durable), force=force)
        self._best_effort_checkpoint()
        return snap

    def apply_delta(self, *, base_seq: int, seq: int, issued_at: int, revoked: Iterable[bytes] = (),
                    unrevoked: Iterable[bytes] = (), revoked_holders: Iterable[bytes] = (),
                    unrevoked_holders: Iterable[bytes] = (), sites: Iterable[SiteSettings] | None = None,
                    site_updates: Iterable[SiteSettings] = ()) -> int:
        """Apply a delta *whose signature the caller has verified* (the sync module checks it against a
        ``ledger`` key of :attr:`trust`). Refused unless the ledger is at ``base_seq``. ``site_updates``
        (the sites a delta says were added or changed) are upserted by number, every other site kept;
        ``sites``, when given (an older issuer's delta with the complete list), replaces the whole site
        list. Both in the same transaction as the revocations. Returns the number of rows changed."""
        with self._write():
            return snapshots.apply_delta(self.db, base_seq, seq, issued_at, revoked, unrevoked,
                                         revoked_holders, unrevoked_holders, sites, site_updates)

    def raise_clock_floor(self, at: int) -> bool:
        """Raise the clock floor to ``at`` (an issuer-signed time the caller has verified); never lowers it.
        Not fsynced: a floor lost in a power cut comes back with the next tick. True if it rose."""
        with self._write(durable=False) as conn:
            before = snapshots.get_meta(conn, "clock_floor") or 0
            snapshots.raise_floor(conn, at)
            return at > before

    def sites(self) -> list[SiteSettings]:
        rows = self.db.conn.execute("SELECT settings FROM sites ORDER BY number").fetchall()
        return [SiteSettings.model_validate_json(r[0]) for r in rows]

    def site(self, ref: str | int) -> SiteSettings | None:
        """A site by number or slug (a numeric string counts as a number; a slug made of digits is found when no
        site has that number). A primary-key probe for a number, not a read of every site: a city's ledger may
        hold tens of thousands of them."""
        text = str(ref)
        row = None
        if text.isdigit() and len(text) <= 10:
            row = self.db.conn.execute("SELECT settings FROM sites WHERE number = ?", (int(text),)).fetchone()
        if row is None:
            row = self.db.conn.execute("SELECT settings FROM sites WHERE name = ? ORDER BY number LIMIT 1",
                                       (text,)).fetchone()
        return None if row is None else SiteSettings.model_validate_json(row[0])

    def set_identity(self, gate_id: str, site: int, direction: Direction = Direction.ENTRY) -> None:
        with self._write():
            row = {"id": 1, "gate_id": gate_id, "site": site, "direction": direction.value}
            self.db.table("gate").upsert(row, pk="id")

    def identity(self) -> GateIdentity | None:
        row = self.db.conn.execute("SELECT gate_id, site, direction FROM gate WHERE id = 1").fetchone()
        return None if row is None else GateIdentity(row[0], row[1], Direction(row[2]))

    def context(self) -> GateContext:
        """This gate's :class:`GateContext`; :class:`SiteNotConfigured` until identity and site exist."""
        ident = self.identity()
        if ident is None:
            raise SiteNotConfigured("this gate has no identity yet (set_identity)")
        site = self.site(ident.site)
        if site is None:
            raise SiteNotConfigured(f"site {ident.site} is not in the installed snapshot")
        return GateContext(ident.gate_id, site, ident.direction)

    # -- taps --------------------------------------------------------------------------------------
    def record(self, decision: Decision, ctx: GateContext, stages: Mapping[str, float] | None = None, *,
               tap_id: str | None = None) -> Tap:
        """Record a decision (allowed or denied) in one transaction, committed before returning.

        ``stages`` are wall-clock stage times (``captured``, ``decoded``, ``decided``); ``committed``
        is added. Pass ``tap_id`` when retrying after an error whose outcome is unknown: a tap that
        already exists is returned unchanged, so the retry cannot count twice."""
        clean = taps.clean_stages(stages)
        with self._write() as conn:
            if tap_id is not None and (existing := taps.load_tap(conn, tap_id)) is not None:
                return existing
            ms = self._now_ms(decision.effective_now)
            tap_id = tap_id or outbox.new_id(ms)
            clean["committed"] = self._clock()
            tap = taps.insert_tap(self.db, decision, ctx, tap_id, clean, ms)
            snapshots.raise_floor(conn, decision.effective_now)
        return tap

    def annul(self, tap_id: str, persons_unused: int, at: int | None = None) -> Tap:
        """The barrier's grant expired with ``persons_unused`` persons not through: give them back
        (and the anti-passback time or metro tap-in this tap set). Idempotent by tap id."""
        when = int(self._clock()) if at is None else at
        with self._write() as conn:
            taps.annul_tap(self.db, tap_id, persons_unused, when, self._now_ms())
            return taps.require_tap(conn, tap_id)

    def confirm_passage(self, tap_id: str, person_index: int, at: float | None = None) -> bool:
        """Person ``person_index`` (0-based) of a tap passed. False if already recorded (idempotent)."""
        with self._write(durable=False):
            return taps.confirm_passage(self.db, tap_id, person_index, self._clock() if at is None else at,
                                        self._now_ms())

    def set_stage(self, tap_id: str, stage: str, at: float) -> bool:
        """Add a late stage time to a tap (``relay``, …). False if it was already recorded."""
        with self._write(durable=False):
            return taps.set_stage(self.db, tap_id, stage, at, self._now_ms())

    def tap(self, tap_id: str) -> Tap | None:
        return taps.load_tap(self.db.conn, tap_id)

    # -- outbox ------------------------------------------------------------------------------------
    def pending(self, limit: int = 500, *, after: int = 0) -> list[OutboxRow]:
        """Unacknowledged outbox events after outbox sequence ``after``, oldest first."""
        try:
            return outbox.pending(self.db, limit, after)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def mark_uploaded(self, event_ids: Iterable[str], at: int | None = None) -> int:
        """Mark events the issuer acknowledged. Call only with acked ids. Returns how many changed.

        Not fsynced (``durable=False``): an acknowledgement lost in a power cut only means the events are
        sent again and acknowledged again as duplicates."""
        with self._write(durable=False):
            return outbox.mark_uploaded(self.db, event_ids, int(self._clock()) if at is None else at)

    def backlog(self) -> int:
        """Outbox events not yet acknowledged."""
        try:
            return outbox.backlog(self.db)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def append_events(self, events: Iterable[tuple[str, str, Mapping[str, Any], int, int]]) -> list[str]:
        """Append outbox events ``(kind, tap_id, fields, created_at, unix_ms)`` in one durable transaction,
        without recording taps — how a backlog is carried over from another ledger file, and how the
        benchmarks and tests put a week of offline taps in the outbox in seconds. Returns their ids."""
        with self._write():
            return outbox.add_events(self.db, events)

    # -- maintenance -------------------------------------------------------------------------------
    def prune(self, now: int) -> int:
        """Forget replay-cache entries past their retention and acknowledged outbox rows (and their
        taps) past theirs. Returns the outbox rows deleted. Run it every few minutes, off the decision
        path. Replay entries are judged against ``min(now, clock_floor)``: the floor is at least every
        recorded tap's time, so a clock that jumps ahead cannot empty the cache."""
        horizon = min(now, self.clock_floor) - self.config.replay_retention_s
        with self._write() as conn:
            conn.execute("DELETE FROM seen WHERE seen_at < ?", (horizon,))
            return outbox.prune(self.db, now - self.config.outbox_retention_days * DAY)

    def integrity_check(self) -> Integrity:
        """``PRAGMA integrity_check``: ``ok`` or the problems SQLite found."""
        try:
            rows = [str(r[0]) for r in self.db.conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        ok = rows == ["ok"]
        return Integrity(ok, () if ok else tuple(rows))

    def checkpoint(self) -> Checkpoint:
        """Copy the WAL into the database file and truncate it (``wal_checkpoint(TRUNCATE)``)."""
        try:
            busy, log, done = self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return Checkpoint(bool(busy), int(log), int(done))

    def _best_effort_checkpoint(self) -> None:
        # After a snapshot install, fold what is left of the WAL into the database (reads that must consult a
        # large WAL index are slower). PASSIVE, never TRUNCATE: a TRUNCATE checkpoint blocks new writers while it
        # copies, and the decision loop may be waiting to record a tap (its busy timeout is 50 ms).
        with suppress(sqlite3.Error):
            self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
