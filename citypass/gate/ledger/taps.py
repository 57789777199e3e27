"""Taps: what one decision writes, and what the barrier later tells us about it.

Every decision the daemon acts on becomes a :class:`Tap`, allowed or denied (the issuer wants to see
forged and replayed attempts too). The functions here run *inside* a write transaction opened by
:class:`citypass.gate.ledger.GateLedger`, so a tap, the usage it consumes, the replay-cache entry, the
occupancy change and its outbox event are committed together or not at all:

* :func:`insert_tap` — usage via :func:`citypass.gate.decision.usage_after` (allowed taps only), replay cache,
  occupancy, the tap row and a ``tap`` outbox event;
* :func:`annul_tap` — the barrier's grant expired with persons unused: give the persons back, restore
  the anti-passback time or metro tap-in state this tap set, and add an ``annul`` event;
* :func:`confirm_passage` and :func:`set_stage` — later facts about a tap, each an outbox event.

The tap row keeps the usage it replaced (``prev_*``), which is what makes an annulment exact.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlite_utils

from citypass.credential.claims import Group, Reservation
from citypass.credential.reasons import Reason
from citypass.gate.decision import Decision, GateContext, Usage, usage_after
from citypass.gate.ledger.connection import TapNotFound
from citypass.gate.ledger.outbox import add_event
from citypass.gate.policy import Direction, TapKind

#: Anything with ``execute`` (a connection, or a cursor kept for the hot path).
Executor = sqlite3.Connection | sqlite3.Cursor

_TAP_COLUMNS = (
    "seq, tap_id, gate_id, site, direction, allowed, reason, flags, credential_id, product, persons, kind, "
    "presentation_id, at, stages, annulled, annulled_at"
)


@dataclass(frozen=True)
class Tap:
    """One recorded decision. ``at`` is the decision's effective time (Unix s); ``stages`` are the
    wall-clock instants (Unix s, float) of each stage: ``captured``, ``decoded``, ``decided``,
    ``committed`` (taken just before COMMIT), later ``relay``, and whatever else the daemon adds."""

    tap_id: str
    seq: int
    gate_id: str
    site: int
    direction: Direction
    allowed: bool
    reason: Reason | None
    flags: tuple[Reason, ...]
    credential_id: bytes | None
    product: int | None
    persons: int
    kind: TapKind | None
    presentation_id: bytes | None
    at: int
    stages: dict[str, float] = field(default_factory=dict)
    annulled: int = 0  # persons given back by an annulment (0: none)
    annulled_at: int | None = None
    passages: dict[int, float] = field(default_factory=dict)  # person index (0-based) → time

    def event_fields(self) -> dict[str, Any]:
        """The fields of this tap's ``tap`` outbox event (JSON-ready)."""
        return {
            "gate_id": self.gate_id, "site": self.site, "direction": self.direction.value,
            "decision": "allow" if self.allowed else "deny",
            "reason": self.reason.value if self.reason else None, "flags": [f.value for f in self.flags],
            "credential_id": self.credential_id.hex() if self.credential_id else None,
            "product": self.product, "persons": self.persons, "kind": self.kind.value if self.kind else None,
            "presentation_id": self.presentation_id.hex() if self.presentation_id else None,
            "at": self.at, "stages": self.stages,
        }


def clean_stages(stages: Mapping[str, float] | None) -> dict[str, float]:
    """Validate stage times: short names, finite numbers (JSON has no NaN)."""
    out: dict[str, float] = {}
    for name, value in (stages or {}).items():
        if not isinstance(name, str) or not 0 < len(name) <= 32:
            raise ValueError(f"bad stage name {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"stage {name!r} must be a finite number, not {value!r}")
        out[name] = float(value)
    return out


# -- usage ----------------------------------------------------------------------------------------
def read_usage(conn: Executor, credential_id: bytes, site: int) -> Usage:
    """Usage of one credential: persons and metro tap-in are per credential, ``last_entry_at`` per
    site (anti-passback is about *this* site; a rider taps in at station A and out at station B)."""
    row = conn.execute(
        "SELECT persons_used, tapped_in_at, tapped_in_site FROM usage WHERE credential_id = ?",
        (credential_id,),
    ).fetchone()
    entry = conn.execute(
        "SELECT at FROM last_entry WHERE credential_id = ? AND site = ?", (credential_id, site)
    ).fetchone()
    last = None if entry is None else int(entry[0])
    if row is None:
        return Usage(last_entry_at=last)
    return Usage(persons_used=row[0], last_entry_at=last, tapped_in_at=row[1], tapped_in_site=row[2])


def write_usage(conn: Executor, credential_id: bytes, site: int, usage: Usage) -> None:
    conn.execute(
        "INSERT INTO usage (credential_id, persons_used, tapped_in_at, tapped_in_site) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (credential_id) DO UPDATE SET persons_used = excluded.persons_used,"
        " tapped_in_at = excluded.tapped_in_at, tapped_in_site = excluded.tapped_in_site",
        (credential_id, usage.persons_used, usage.tapped_in_at, usage.tapped_in_site),
    )
    if usage.last_entry_at is None:
        conn.execute("DELETE FROM last_entry WHERE credential_id = ? AND site = ?", (credential_id, site))
    else:
        conn.execute(
            "INSERT INTO last_entry (credential_id, site, at) VALUES (?, ?, ?)"
            " ON CONFLICT (credential_id, site) DO UPDATE SET at = excluded.at",
            (credential_id, site, usage.last_entry_at),
        )


def add_occupancy(conn: Executor, site: int, delta: int) -> None:
    """Change a site's occupancy, never below zero (an exit without a recorded entry is normal:
    the entry may have been at another gate of the same site)."""
    conn.execute(
        "INSERT INTO occupancy (site, persons) VALUES (?1, max(0, ?2))"
        " ON CONFLICT (site) DO UPDATE SET persons = max(0, persons + ?2)",
        (site, delta),
    )


# -- taps -----------------------------------------------------------------------------------------
def insert_tap(db: sqlite_utils.Database, decision: Decision, ctx: GateContext, tap_id: str,
               stages: dict[str, float], unix_ms: int) -> Tap:
    """Write one decision's tap, usage, replay-cache entry, occupancy and outbox event."""
    conn = db.conn
    cred = decision.credential
    site = ctx.site.number
    now = decision.effective_now
    before = read_usage(conn, cred.id, site) if cred is not None else Usage()
    if decision.allowed and cred is not None:
        write_usage(conn, cred.id, site, usage_after(decision, before, site))
        if decision.presentation_id is not None:
            conn.execute("INSERT OR IGNORE INTO seen (presentation_id, seen_at) VALUES (?, ?)",
                         (decision.presentation_id, now))
        if decision.kind is TapKind.ENTRY:
            add_occupancy(conn, site, decision.persons)
        elif decision.kind is TapKind.EXIT:
            add_occupancy(conn, site, -1)
    tap = Tap(
        tap_id=tap_id, seq=0, gate_id=ctx.gate_id, site=site, direction=ctx.direction,
        allowed=decision.allowed, reason=decision.reason, flags=decision.flags,
        credential_id=cred.id if cred else None, product=cred.product if cred else None,
        persons=decision.persons if decision.allowed else 0, kind=decision.kind if decision.allowed else None,
        presentation_id=decision.presentation_id, at=now, stages=stages,
    )
    cur = conn.execute(
        "INSERT INTO taps (tap_id, gate_id, site, direction, allowed, reason, flags, credential_id, product,"
        " persons, kind, presentation_id, at, stages, prev_last_entry_at, prev_tapped_in_at,"
        " prev_tapped_in_site, annulled, party) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
        (tap.tap_id, tap.gate_id, site, tap.direction.value, int(tap.allowed),
         tap.reason.value if tap.reason else None, json.dumps([f.value for f in tap.flags]),
         tap.credential_id, tap.product, tap.persons, tap.kind.value if tap.kind else None,
         tap.presentation_id, now, json.dumps(stages), before.last_entry_at, before.tapped_in_at,
         before.tapped_in_site, cred.terms.party if cred is not None and isinstance(cred.terms, Reservation | Group)
         else None),  # the siblings need a single-use ticket's party to see a race (gate/ledger/siblings.py)
    )
    add_event(db, "tap", tap_id, tap.event_fields(), now, unix_ms)
    return replace(tap, seq=int(cur.lastrowid or 0))


def load_tap(conn: Executor, tap_id: str) -> Tap | None:
    row = conn.execute(f"SELECT {_TAP_COLUMNS} FROM taps WHERE tap_id = ?", (tap_id,)).fetchone()
    if row is None:
        return None
    passages = dict(conn.execute("SELECT person, at FROM passages WHERE tap_id = ?", (tap_id,)).fetchall())
    (seq, tid, gate_id, site, direction, allowed, reason, flags, cred_id, product, persons, kind, pid, at,
     stages, annulled, annulled_at) = row
    return Tap(
        tap_id=tid, seq=seq, gate_id=gate_id, site=site, direction=Direction(direction),
        allowed=bool(allowed), reason=Reason(reason) if reason else None,
        flags=tuple(Reason(f) for f in json.loads(flags)),
        credential_id=cred_id, product=product, persons=persons, kind=TapKind(kind) if kind else None,
        presentation_id=pid, at=at, stages=json.loads(stages), annulled=annulled, annulled_at=annulled_at,
        passages=passages,
    )


def require_tap(conn: Executor, tap_id: str) -> Tap:
    tap = load_tap(conn, tap_id)
    if tap is None:
        raise TapNotFound(f"no tap {tap_id!r} in this ledger")
    return tap


def annul_tap(db: sqlite_utils.Database, tap_id: str, persons_unused: int, at: int, unix_ms: int) -> bool:
    """Give back ``persons_unused`` of an allowed tap's persons. False if it was already annulled
    (idempotent by tap id: a repeated report changes nothing and adds no event)."""
    conn = db.conn
    tap = require_tap(conn, tap_id)
    if tap.annulled:
        return False
    if not tap.allowed or tap.kind is None or tap.credential_id is None:
        raise ValueError(f"tap {tap_id} was denied: there is nothing to annul")
    if not 1 <= persons_unused <= tap.persons:
        raise ValueError(f"persons_unused must be 1..{tap.persons}, not {persons_unused}")
    prev_last, prev_in_at, prev_in_site = conn.execute(
        "SELECT prev_last_entry_at, prev_tapped_in_at, prev_tapped_in_site FROM taps WHERE tap_id = ?",
        (tap_id,),
    ).fetchone()
    usage = read_usage(conn, tap.credential_id, tap.site)
    nobody_passed = persons_unused == tap.persons
    if tap.kind is TapKind.ENTRY:
        usage = Usage(max(0, usage.persons_used - persons_unused), usage.last_entry_at, usage.tapped_in_at,
                      usage.tapped_in_site)
        if nobody_passed and usage.last_entry_at == tap.at:
            # The visit never happened: without this the visitor would be held by anti-passback.
            usage = Usage(usage.persons_used, prev_last, usage.tapped_in_at, usage.tapped_in_site)
        add_occupancy(conn, tap.site, -persons_unused)
    elif tap.kind is TapKind.EXIT:
        add_occupancy(conn, tap.site, persons_unused)
    elif tap.kind is TapKind.TAP_IN and usage.tapped_in_at == tap.at and usage.tapped_in_site == tap.site:
        usage = Usage(usage.persons_used, usage.last_entry_at, prev_in_at, prev_in_site)  # may tap in again
    elif tap.kind is TapKind.TAP_OUT and usage.tapped_in_at is None:
        usage = Usage(usage.persons_used, usage.last_entry_at, prev_in_at, prev_in_site)  # journey still open
    write_usage(conn, tap.credential_id, tap.site, usage)
    conn.execute("UPDATE taps SET annulled = ?, annulled_at = ? WHERE tap_id = ?",
                 (persons_unused, at, tap_id))
    add_event(db, "annul", tap_id, {"persons_unused": persons_unused, "at": at}, at, unix_ms)
    return True


def confirm_passage(db: sqlite_utils.Database, tap_id: str, person: int, at: float, unix_ms: int) -> bool:
    """Record that person ``person`` (0-based) of a tap passed at ``at``. False if already recorded."""
    tap = require_tap(db.conn, tap_id)
    if not 0 <= person < tap.persons:  # a denied tap granted nobody (tailgating is the barrier's report)
        raise ValueError(f"tap {tap_id} granted {tap.persons} persons: no person index {person}")
    cur = db.conn.execute("INSERT OR IGNORE INTO passages (tap_id, person, at) VALUES (?, ?, ?)",
                          (tap_id, person, float(at)))
    if cur.rowcount == 0:
        return False
    add_event(db, "passage", tap_id, {"person": person, "at": float(at)}, int(at), unix_ms)
    return True


def set_stage(db: sqlite_utils.Database, tap_id: str, stage: str, at: float, unix_ms: int) -> bool:
    """Add a late stage time (e.g. ``relay``) to a tap. False if that stage already has this time."""
    tap = require_tap(db.conn, tap_id)
    value = clean_stages({stage: at})[stage]
    if tap.stages.get(stage) == value:
        return False
    stages = tap.stages | {stage: value}
    db.conn.execute("UPDATE taps SET stages = ? WHERE tap_id = ?", (json.dumps(stages), tap_id))
    add_event(db, "stage", tap_id, {"stage": stage, "at": value}, int(at), unix_ms)
    return True
