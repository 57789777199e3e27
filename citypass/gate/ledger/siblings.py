"""The lanes of one site as one gate: what a lane shares with its siblings, and what it applies of theirs.

Every lane decides on its own ledger, so each must learn its siblings' admissions to refuse a screenshot
shown at the next lane. :class:`SiteLedger` works on a gate's ledger file (through its own
:class:`~citypass.gate.ledger.GateLedger` connection, the sync thread's) and does two things:

* **share** — :meth:`SiteLedger.own_events` reads, in outbox order, this lane's allowed admissions, exits,
  metro tap-ins and tap-outs, and their annulments, from the outbox the decision loop already writes (with
  the party size of single-use tickets from the ``taps`` row): nothing extra on the decision path.
  :meth:`SiteLedger.set_shared` remembers how far the siblings have them, so a lane killed mid-way shares
  the rest after its restart.
* **apply** — :meth:`SiteLedger.apply` stores a sibling's events in ``sibling_taps``, whose triggers apply
  them to the decision core's tables (``usage``, ``last_entry``, ``occupancy``, ``seen``) exactly as the
  lane's own tap would have: persons of a party ticket, anti-passback time, occupancy for capacity, metro
  tap-in state, the replay cache; an annulment gives back what its tap took. Sibling taps never enter the
  outbox: the issuer hears each tap once, from the lane that decided it.

Bounded work, off the decision path: a whole batch is two statements in one short transaction (a multi-row
``INSERT OR IGNORE`` whose trigger does the rest in SQLite, and one ``UPDATE … FROM (VALUES …)`` for
annulments), so the write lock is held for SQLite's time, not for the interpreter's (the decision loop's own
writer waits at most its 50 ms busy timeout). Idempotent by tap id: a batch received twice changes nothing.

**Races.** Two lanes that admit one single-use ticket before either heard of the other's tap have admitted
more persons than its party; a hard anti-passback site that admits one annual pass at two lanes inside its
window has let a pass be handed back. Each lane notices when the sibling's tap arrives:
:meth:`SiteLedger.apply` returns the :class:`Race` s it found (also kept in ``lane_races``), with how far
apart the two decisions were. The issuer sees both taps and reports the double use as an incident.

A sibling's clock is not this lane's: its times are clamped to this lane's clock at arrival (a sibling an
hour ahead cannot hold a pass in passback for an hour here), and they never raise this ledger's clock floor.

Example::

    site = SiteLedger(ledger)                          # the sync thread's own GateLedger
    events, upto = site.own_events(after=site.shared_seq(), limit=50)
    ...                                                # published to the siblings; the broker acknowledged
    site.set_shared(upto)
    applied = site.apply("gate-2", received_events, now_ms=int(time.time() * 1000))
    for race in applied.races: ...
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from citypass.gate.ledger.connection import translate

if TYPE_CHECKING:  # the store's migrations import this module's schema
    from citypass.gate.ledger.store import GateLedger

#: Tap kinds a lane shares (``tap``, a bus or water-bus ride, changes nothing another lane decides on).
SHARED_KINDS = ("entry", "exit", "tap_in", "tap_out")
#: Most events one :meth:`SiteLedger.apply` takes (bound variables: 11 per event, far under SQLite's limit).
MAX_APPLY = 500

SCHEMA = (
    "ALTER TABLE taps ADD COLUMN party INTEGER",  # party size of a single-use ticket, for the siblings
    """CREATE TABLE sibling_taps (
        tap_id TEXT PRIMARY KEY NOT NULL, gate_id TEXT NOT NULL, site INTEGER NOT NULL,
        credential_id BLOB NOT NULL, product INTEGER, kind TEXT NOT NULL, persons INTEGER NOT NULL,
        party INTEGER, at INTEGER NOT NULL, presentation_id BLOB, committed_ms INTEGER NOT NULL,
        applied_ms INTEGER NOT NULL, batch INTEGER NOT NULL, annulled INTEGER NOT NULL DEFAULT 0,
        prev_last_entry_at INTEGER, prev_tapped_in_at INTEGER, prev_tapped_in_site INTEGER)""",
    "CREATE INDEX sibling_taps_batch ON sibling_taps (batch)",
    "CREATE INDEX taps_credential ON taps (credential_id)",
    """CREATE TABLE lane_races (
        own_tap_id TEXT NOT NULL, sibling_tap_id TEXT NOT NULL, kind TEXT NOT NULL, credential_id BLOB NOT NULL,
        gate_id TEXT NOT NULL, apart_s INTEGER NOT NULL, detected_ms INTEGER NOT NULL,
        PRIMARY KEY (own_tap_id, sibling_tap_id))""",
    "CREATE TABLE lane_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), shared_seq INTEGER NOT NULL)",
    # A sibling's tap, applied as the lane's own would be (gate/ledger/taps.py insert_tap), in order:
    # what it replaces (for an exact annulment), then usage, anti-passback, occupancy, metro, replay cache.
    """CREATE TRIGGER sibling_tap_applies AFTER INSERT ON sibling_taps BEGIN
        UPDATE sibling_taps SET
            prev_last_entry_at = (SELECT at FROM last_entry WHERE credential_id = NEW.credential_id
                                  AND site = NEW.site),
            prev_tapped_in_at = (SELECT tapped_in_at FROM usage WHERE credential_id = NEW.credential_id),
            prev_tapped_in_site = (SELECT tapped_in_site FROM usage WHERE credential_id = NEW.credential_id)
        WHERE tap_id = NEW.tap_id;
        INSERT INTO usage (credential_id, persons_used) SELECT NEW.credential_id, NEW.persons
            WHERE NEW.kind = 'entry'
            ON CONFLICT (credential_id) DO UPDATE SET persons_used = persons_used + excluded.persons_used;
        INSERT INTO last_entry (credential_id, site, at) SELECT NEW.credential_id, NEW.site, NEW.at
            WHERE NEW.kind = 'entry'
            ON CONFLICT (credential_id, site) DO UPDATE SET at = max(at, excluded.at);
        INSERT INTO occupancy (site, persons) SELECT NEW.site, NEW.persons WHERE NEW.kind = 'entry'
            ON CONFLICT (site) DO UPDATE SET persons = persons + excluded.persons;
        UPDATE occupancy SET persons = max(0, persons - 1) WHERE NEW.kind = 'exit' AND site = NEW.site;
        INSERT INTO usage (credential_id, persons_used, tapped_in_at, tapped_in_site)
            SELECT NEW.credential_id, 0, NEW.at, NEW.site WHERE NEW.kind = 'tap_in'
            ON CONFLICT (credential_id) DO UPDATE SET tapped_in_at = excluded.tapped_in_at,
                tapped_in_site = excluded.tapped_in_site
            WHERE tapped_in_at IS NULL OR tapped_in_at <= excluded.tapped_in_at;
        UPDATE usage SET tapped_in_at = NULL, tapped_in_site = NULL
            WHERE NEW.kind = 'tap_out' AND credential_id = NEW.credential_id AND tapped_in_at <= NEW.at;
        INSERT OR IGNORE INTO seen (presentation_id, seen_at) SELECT NEW.presentation_id, NEW.at
            WHERE NEW.presentation_id IS NOT NULL;
    END""",
    # A sibling's annulment (its barrier timed out with persons unused), as gate/ledger/taps.py annul_tap.
    """CREATE TRIGGER sibling_annul_gives_back AFTER UPDATE OF annulled ON sibling_taps
    WHEN OLD.annulled = 0 AND NEW.annulled > 0 BEGIN
        UPDATE usage SET persons_used = max(0, persons_used - NEW.annulled)
            WHERE NEW.kind = 'entry' AND credential_id = NEW.credential_id;
        UPDATE occupancy SET persons = max(0, persons - NEW.annulled) WHERE NEW.kind = 'entry' AND site = NEW.site;
        DELETE FROM last_entry WHERE NEW.kind = 'entry' AND NEW.annulled = NEW.persons
            AND NEW.prev_last_entry_at IS NULL AND credential_id = NEW.credential_id AND site = NEW.site
            AND at = NEW.at;
        UPDATE last_entry SET at = NEW.prev_last_entry_at WHERE NEW.kind = 'entry' AND NEW.annulled = NEW.persons
            AND credential_id = NEW.credential_id AND site = NEW.site AND at = NEW.at;
        UPDATE occupancy SET persons = persons + NEW.annulled WHERE NEW.kind = 'exit' AND site = NEW.site;
        UPDATE usage SET tapped_in_at = NEW.prev_tapped_in_at, tapped_in_site = NEW.prev_tapped_in_site
            WHERE credential_id = NEW.credential_id AND ((NEW.kind = 'tap_in' AND tapped_in_at = NEW.at
                AND tapped_in_site = NEW.site) OR (NEW.kind = 'tap_out' AND tapped_in_at IS NULL));
    END""",
)


@dataclass(frozen=True)
class LaneEvent:
    """One fact a lane shares: ``event`` ``"tap"`` (an admission, exit, tap-in or tap-out of ``persons``)
    or ``"annul"`` (``persons`` of tap ``tap_id`` given back). ``seq`` is the outbox sequence at the lane
    that made it (meaningless elsewhere); ``committed_ms`` is when it committed there (its wall clock)."""

    seq: int
    event: str
    tap_id: str
    credential_id: bytes
    kind: str
    persons: int
    at: int
    committed_ms: int
    party: int | None = None
    product: int | None = None
    presentation_id: bytes | None = None


@dataclass(frozen=True)
class Race:
    """This lane and ``gate_id`` admitted ``credential_id`` beyond what it allows, ``apart_s`` apart:
    ``double_use`` (more persons than a single-use ticket's party) or ``passback`` (one annual pass twice
    inside a hard anti-passback window)."""

    kind: str
    credential_id: bytes
    own_tap_id: str
    sibling_tap_id: str
    gate_id: str
    apart_s: int


@dataclass(frozen=True)
class Applied:
    """What one :meth:`SiteLedger.apply` did: new taps, annulments, duplicates ignored, races found."""

    taps: int
    annulled: int
    duplicates: int
    races: tuple[Race, ...]


class SiteLedger:
    """A gate ledger's site-sharing tables. Use it on the thread that opened ``ledger``."""

    def __init__(self, ledger: GateLedger) -> None:
        self.ledger = ledger
        self.conn = ledger.db.conn
        self._batch = int(self.conn.execute("SELECT coalesce(max(batch), 0) FROM sibling_taps").fetchone()[0])

    # -- sharing ---------------------------------------------------------------------------------------
    def shared_seq(self) -> int:
        """The outbox sequence up to which the siblings have this lane's events (0: none yet)."""
        row = self.conn.execute("SELECT shared_seq FROM lane_cursor WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def set_shared(self, seq: int) -> None:
        """Remember that the siblings have every event up to outbox ``seq``. Not fsynced: after a power cut
        the last events are shared again, and a sibling ignores what it has (by tap id)."""
        with self.ledger.transaction(durable=False) as conn:
            conn.execute("INSERT INTO lane_cursor (id, shared_seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE"
                         " SET shared_seq = max(shared_seq, excluded.shared_seq)", (seq,))

    def own_events(self, after: int, limit: int = 50) -> tuple[list[LaneEvent], int]:
        """This lane's shareable events after outbox sequence ``after``, oldest first, and the outbox sequence
        looked up to (``after`` when there was nothing new). At most ``limit`` outbox rows are looked at; rows
        that are not for the siblings (denials, passages, stage times) are skipped."""
        try:
            rows = self.conn.execute(
                "SELECT o.seq, o.kind, o.tap_id, o.body, o.created_at, t.credential_id, t.kind, t.persons, t.at,"
                " t.party, t.product, t.presentation_id, t.allowed FROM outbox o JOIN taps t ON t.tap_id = o.tap_id"
                " WHERE o.seq > ? AND o.kind IN ('tap', 'annul') ORDER BY o.seq LIMIT ?", (after, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        out = []
        for seq, event, tap_id, body, created, cred, kind, persons, at, party, product, pid, allowed in rows:
            if not allowed or kind not in SHARED_KINDS or cred is None:
                continue
            fields = json.loads(body)
            if event == "tap":
                committed = fields.get("stages", {}).get("committed", created)
                out.append(LaneEvent(seq, "tap", tap_id, bytes(cred), kind, persons, at, int(committed * 1000),
                                     party, product, None if pid is None else bytes(pid)))
            else:
                out.append(LaneEvent(seq, "annul", tap_id, bytes(cred), kind, int(fields["persons_unused"]),
                                     int(fields["at"]), created * 1000))
        return out, (int(rows[-1][0]) if rows else after)

    # -- applying ------------------------------------------------------------------------------------
    def apply(self, gate_id: str, site: int, events: Sequence[LaneEvent], now_ms: int, *,
              passback_s: int | None = None) -> Applied:
        """Apply a sibling's ``events`` (already authenticated and validated by the caller) in one transaction.

        Times are clamped to this lane's best knowledge of now: ``now_ms``, or its clock floor if that is later
        (a lane whose clock is wrong judges at its floor). ``passback_s``: the site's hard anti-passback window, if
        it has one (an annual pass admitted here and at the sibling inside it is a race)."""
        if len(events) > MAX_APPLY:
            raise ValueError(f"apply at most {MAX_APPLY} events at once")
        now_s = max(now_ms // 1000, self.ledger.clock_floor)
        taps = [e for e in events if e.event == "tap"]
        annuls = [e for e in events if e.event == "annul"]
        self._batch += 1
        with self.ledger.transaction(durable=False) as conn:
            new_taps = 0
            if taps:
                rows = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(taps))
                params: list[object] = []
                for e in taps:
                    params += [e.tap_id, gate_id, site, e.credential_id, e.product, e.kind, e.persons, e.party,
                               min(e.at, now_s), e.presentation_id, e.committed_ms, now_ms, self._batch]
                # rowcount counts the rows inserted, not those ignored (known tap ids) nor the triggers' changes
                new_taps = conn.execute(
                    "INSERT OR IGNORE INTO sibling_taps (tap_id, gate_id, site, credential_id, product, kind, persons,"
                    f" party, at, presentation_id, committed_ms, applied_ms, batch) VALUES {rows}", params).rowcount
            annulled = 0
            if annuls:
                marks = ",".join(["(?, ?)"] * len(annuls))
                flat = [v for e in annuls for v in (e.tap_id, e.persons)]
                annulled = conn.execute(
                    f"UPDATE sibling_taps SET annulled = v.column2 FROM (VALUES {marks}) AS v"
                    " WHERE sibling_taps.tap_id = v.column1 AND sibling_taps.gate_id = ?"
                    " AND sibling_taps.annulled = 0 AND v.column2 BETWEEN 1 AND sibling_taps.persons",
                    [*flat, gate_id]).rowcount
            races = self._races(conn, passback_s, now_ms)
        return Applied(new_taps, annulled, len(taps) - new_taps, races)

    def _races(self, conn: sqlite3.Connection, passback_s: int | None, now_ms: int) -> tuple[Race, ...]:
        # Only this lane's own admissions (the taps table) count: a race between two siblings is theirs to find.
        own = ("JOIN taps t ON t.credential_id = s.credential_id AND t.allowed = 1 AND t.kind = 'entry'"
               " AND t.persons > t.annulled")
        pick = "SELECT s.tap_id, s.gate_id, s.credential_id, s.at, t.tap_id, t.at FROM sibling_taps s "
        rows = [("double_use", r) for r in conn.execute(
            pick + own + " JOIN usage u ON u.credential_id = s.credential_id WHERE s.batch = ? AND s.kind = 'entry'"
            " AND s.party IS NOT NULL AND u.persons_used > s.party", (self._batch,))]
        if passback_s is not None:
            rows += [("passback", r) for r in conn.execute(
                pick + own + " AND t.site = s.site AND abs(t.at - s.at) < ? WHERE s.batch = ? AND s.kind = 'entry'"
                " AND s.party IS NULL", (passback_s, self._batch))]
        found = tuple(Race(kind, bytes(cred), own_tap, sib, gate, abs(own_at - at))
                      for kind, (sib, gate, cred, at, own_tap, own_at) in rows)
        conn.executemany("INSERT OR IGNORE INTO lane_races (own_tap_id, sibling_tap_id, kind, credential_id, gate_id,"
                         " apart_s, detected_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(r.own_tap_id, r.sibling_tap_id, r.kind, r.credential_id, r.gate_id, r.apart_s, now_ms)
                          for r in found])
        return found

    # -- reading and upkeep ----------------------------------------------------------------------------
    def races(self) -> list[Race]:
        """Every race this lane has found, oldest first."""
        rows = self.conn.execute("SELECT kind, credential_id, own_tap_id, sibling_tap_id, gate_id, apart_s"
                                 " FROM lane_races ORDER BY detected_ms, own_tap_id")
        return [Race(kind, bytes(cred), own, sib, gate, apart) for kind, cred, own, sib, gate, apart in rows]

    def propagation_ms(self, since_ms: int = 0) -> list[tuple[str, int]]:
        """``(sibling gate, applied − committed in ms)`` for each sibling tap applied since ``since_ms``: how
        long a sibling's admission took to reach this ledger (both clocks: meaningful on one machine, or
        with clocks that agree)."""
        return [(str(g), int(d)) for g, d in self.conn.execute(
            "SELECT gate_id, applied_ms - committed_ms FROM sibling_taps WHERE applied_ms >= ? ORDER BY applied_ms",
            (since_ms,))]

    def sibling_tap_ids(self) -> set[str]:
        return {str(r[0]) for r in self.conn.execute("SELECT tap_id FROM sibling_taps")}

    def prune(self, before_s: int) -> int:
        """Forget sibling taps decided before ``before_s`` (keep them as long as the lane keeps its own)."""
        with self.ledger.transaction(durable=False) as conn:
            return conn.execute("DELETE FROM sibling_taps WHERE at < ?", (before_s,)).rowcount
