"""The ledger's schema, as an ordered list of migrations.

The schema version is SQLite's ``PRAGMA user_version``: the number of migrations applied. Opening a
file runs the missing ones in order, each in its own transaction together with the version bump, so a
kill during an upgrade leaves the file at the previous version, never half way. A file whose version
is higher than :data:`SCHEMA_VERSION` was written by newer software and is refused (downgrading would
silently drop whatever the newer schema records). ``PRAGMA application_id`` marks the file as a City
Pass ledger, so pointing the daemon at some other SQLite file fails instead of "migrating" it.

To change the schema, append a function; never edit one that has shipped::

    def _v2_tap_lane(db: Database) -> None:
        db.table("taps").add_column("lane", int)

    MIGRATIONS.append(_v2_tap_lane)

Tables (ids are BLOBs; times are Unix seconds unless named otherwise):

=================  ===========================================================================
``meta``           key → integer: ``snapshot_seq``, ``synced_at``, ``clock_floor``, counts
``trust``          the root-signed trust list bytes, its version, and the root key it verified with
``sites``          site settings from the snapshot (JSON of :class:`citypass.credential.sites.SiteSettings`)
``gate``           this gate's identity: gate id, site number, direction (one row)
``revocations``    revoked credential ids (WITHOUT ROWID: the id *is* the B-tree key)
``revoked_holders`` revoked holder-key ids
``usage``          per credential: persons admitted, metro tap-in (per credential, not per station)
``last_entry``     per credential and site: last admission, for anti-passback
``occupancy``      per site: persons inside
``seen``           replay cache of dynamic presentations
``taps``           every decision recorded, allowed or denied, with its stage times
``passages``       confirmed passages per tap and person
``outbox``         events to upload (tap, annul, passage, stage), each with its own stable id
``sibling_taps``   (v2) admissions shared by the other lanes of this site, applied by triggers
``lane_races``     (v2) a single-use ticket or annual pass admitted here and at a sibling beyond its rules
``lane_cursor``    (v2) how far this lane's own events have been shared with its siblings
=================  ===========================================================================

(v2 also adds ``taps.party``, the party size of a single-use ticket, which the siblings need to see a race.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from sqlite_utils import Database

from citypass.gate.ledger.connection import LedgerSchemaError, translate, write
from citypass.gate.ledger.siblings import SCHEMA

#: ``PRAGMA application_id`` of a ledger file: "CPLG" in ASCII.
APPLICATION_ID = 0x43504C47

Migration = Callable[[Database], None]


def _v1_initial(db: Database) -> None:
    db.table("meta").create({"key": str, "value": int}, pk="key", not_null={"value"})
    db.table("trust").create(
        {"id": int, "version": int, "issued_at": int, "signed": bytes, "root_alg": int, "root_pub": bytes},
        pk="id", not_null={"version", "issued_at", "signed", "root_alg", "root_pub"},
    )
    db.table("sites").create({"number": int, "name": str, "settings": str}, pk="number",
                       not_null={"name", "settings"})
    db.table("gate").create({"id": int, "gate_id": str, "site": int, "direction": str}, pk="id",
                      not_null={"gate_id", "site", "direction"})
    db.table("occupancy").create({"site": int, "persons": int}, pk="site", not_null={"persons"})
    # sqlite-utils has no WITHOUT ROWID option. For tables looked up by a BLOB key, WITHOUT ROWID
    # stores the key in the table's own B-tree: one tree and one lookup instead of index + table,
    # and ~half the size for 10 million 8-byte ids.
    db.execute("CREATE TABLE revocations (id BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE revoked_holders (id BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID")
    db.execute(
        "CREATE TABLE usage (credential_id BLOB PRIMARY KEY NOT NULL,"
        " persons_used INTEGER NOT NULL DEFAULT 0, tapped_in_at INTEGER, tapped_in_site INTEGER)"
        " WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE last_entry (credential_id BLOB NOT NULL, site INTEGER NOT NULL, at INTEGER NOT NULL,"
        " PRIMARY KEY (credential_id, site)) WITHOUT ROWID"
    )
    # No index on seen_at: the cache holds a few minutes of presentations, so pruning scans a few
    # hundred rows at most, and an index would cost a second B-tree write on every tap.
    db.execute(
        "CREATE TABLE seen (presentation_id BLOB PRIMARY KEY NOT NULL, seen_at INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )
    db.table("taps").create(
        {
            "seq": int, "tap_id": str, "gate_id": str, "site": int, "direction": str, "allowed": int,
            "reason": str, "flags": str, "credential_id": bytes, "product": int, "persons": int,
            "kind": str, "presentation_id": bytes, "at": int, "stages": str,
            "prev_last_entry_at": int, "prev_tapped_in_at": int, "prev_tapped_in_site": int,
            "annulled": int, "annulled_at": int,
        },
        pk="seq",
        not_null={"tap_id", "gate_id", "site", "direction", "allowed", "flags", "persons", "at", "stages",
                  "annulled"},
        defaults={"annulled": 0},
    )
    db.table("taps").create_index(["tap_id"], unique=True)
    db.execute(
        "CREATE TABLE passages (tap_id TEXT NOT NULL, person INTEGER NOT NULL, at REAL NOT NULL,"
        " PRIMARY KEY (tap_id, person)) WITHOUT ROWID"
    )
    db.table("outbox").create(
        {"seq": int, "event_id": str, "tap_id": str, "kind": str, "body": str, "created_at": int,
         "uploaded_at": int},
        pk="seq", not_null={"event_id", "tap_id", "kind", "body", "created_at"},
    )
    db.table("outbox").create_index(["event_id"], unique=True)
    db.table("outbox").create_index(["tap_id"])
    # A partial index holds only the rows still to upload: pending() and backlog() stay fast with a
    # week of acknowledged history in the table.
    db.execute("CREATE INDEX outbox_pending ON outbox (seq) WHERE uploaded_at IS NULL")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _v2_site_lanes(db: Database) -> None:
    # The lanes of one site share their admissions (gate/ledger/siblings.py): the party size of this lane's
    # single-use taps, siblings' taps with the triggers that apply them, races found, what was shared.
    for statement in SCHEMA:
        db.execute(statement)


def _v3_benefit(db: Database) -> None:
    # Benefit cards (credential/benefit.py) count their entries this period: partial indexes hold only product 5
    # (benefit) rows, so no other tap pays for them.
    db.execute("CREATE INDEX taps_benefit ON taps (credential_id, at) WHERE product = 5")
    db.execute("CREATE INDEX sibling_taps_benefit ON sibling_taps (credential_id, at) WHERE product = 5")


#: Every migration ever shipped, oldest first. ``user_version`` = how many of them a file has had.
MIGRATIONS: list[Migration] = [_v1_initial, _v2_site_lanes, _v3_benefit]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: Database) -> int:
    """The file's ``user_version`` (0 for a new, empty file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the file up to ``len(migrations)``; return the version it is at afterwards.

    Raises :class:`LedgerSchemaError` for a file written by newer software or one that is not a ledger."""
    target = len(migrations)
    try:
        _check_identity(db, target)
        while True:
            with write(db.conn):
                # Re-read inside the write lock: another process may have migrated meanwhile.
                version = schema_version(db)
                _check_identity(db, target)
                if version >= target:
                    return version
                migrations[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")
    except sqlite3.Error as exc:
        raise translate(exc) from exc


def _check_identity(db: Database, target: int) -> None:
    version = schema_version(db)
    app = int(db.execute("PRAGMA application_id").fetchone()[0])
    if app not in (0, APPLICATION_ID) or (app == 0 and version > 0) or (version == 0 and db.table_names()):
        raise LedgerSchemaError("this SQLite file is not a City Pass gate ledger")
    if version > target:
        raise LedgerSchemaError(
            f"ledger schema version {version} is newer than this software's {target}: "
            "upgrade the software (downgrading the file would lose what the newer version records)"
        )
