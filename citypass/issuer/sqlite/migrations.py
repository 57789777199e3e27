"""The issuer store's schema, as an ordered list of migrations.

The schema version is the ``schema_version`` row of the ``meta`` table (an ``issuer.db`` written by the
first release already has ``1`` there, so it upgrades in place). Opening a store runs the missing
migrations in order, each in its own ``BEGIN IMMEDIATE`` transaction together with the version bump —
re-reading the version inside it, so two processes opening one file at once migrate it once. A file
whose version is higher than :data:`SCHEMA_VERSION` was written by newer software and is refused.

To change the schema, append a function; never edit one that has shipped.

Tables (times are Unix seconds; ids text, credential and holder ids lowercase hex):

===================  ====================================================================
``meta``             key → text: schema_version, ledger_seq, trust_version, root_kid, fares…
``sites``            site settings (JSON of :class:`citypass.credential.sites.SiteSettings`) by number
``keys``             public halves of root/issuer/ledger keys, validity, scope, active flag
``credentials``      every credential signed: product, key, holder, details
``revocations``      revoked credential ids; ``holder_revocations``: revoked holder ids
``ledger_changes``   one row per ledger sequence number (v2): what changed, for deltas
``slots``            bookable time slots per venue, capacity and places booked (v2)
``reservations``     reservations: slot, party, status, credential (v2)
``devices``          registered gates and readers (v2); ``device_health``: last report per device
``enrollments``      one-time provisioning secrets, hashed, with expiry (v2)
``tokens``           API tokens, hashed, with role (v2); ``audit``: every mutating call
``tap_events``       every uploaded outbox event by event id (v2), quarantined ones with the error
``taps``             one row per tap id, annulments applied (v2)
``tap_collisions``   events whose event id another device used first, quarantined (v3)
(v3 also)            partial indexes: held reservations by age, quarantined events by time
``wallet_claims``    passes ordered for a phone wallet: the unsigned order, the hashed one-time claim
                     secret, expiry, and once claimed the holder id and the signed code (v4)
``incidents``        incidents found at ingest, by id, with the scope they were computed from and
                     the operator's acknowledgement (control room, v5)
``site_quarters``    persons in and out per site and quarter hour, recounted at ingest (v5)
``tour_groups``      tour groups: agency, guide, party, price, where the gates last saw them (v5)
``group_stops``      a group's itinerary: site, planned window, the group pass, persons admitted (v5)
``benefit_uses``     the benefit card's city-wide count: one row per use (tap or booking), by ref (v6)
===================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

from citypass.errors import Unavailable
from citypass.issuer.sqlite.connection import SqliteBase

Migration = Callable[[Database], None]


class StoreSchemaError(Unavailable):
    """The file is not an issuer store, or was written by newer software."""


def _v1_initial(db: Database) -> None:
    """The first release's tables (kept byte for byte: existing homes were created by it)."""
    if "meta" in db.table_names():
        return
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("sites").create({"number": int, "name": str, "settings": str}, pk="number")
    db.table("sites").create_index(["name"], unique=True)
    db.table("keys").create(
        {"role": str, "kid": str, "alg": int, "pub": bytes, "valid_from": int, "valid_to": int, "products": str,
         "sites": str, "active": int},
        pk=("role", "kid"), not_null={"role", "kid", "alg", "pub", "valid_from", "active"},
    )
    db.table("credentials").create(
        {"id": str, "product": int, "issued_at": int, "kid": str, "holder_id": str, "details": str}, pk="id",
    )
    db.table("revocations").create({"id": str, "revoked_at": int, "reason": str}, pk="id")
    db.table("holder_revocations").create({"holder_id": str, "revoked_at": int, "reason": str}, pk="holder_id")
    for key, value in (("ledger_seq", "0"), ("trust_version", "0"), ("require_dynamic", "")):
        db.table("meta").insert({"key": key, "value": value}, pk="key", ignore=True)


def _v2_service(db: Database) -> None:
    """The HTTP service's tables, and the ledger change log deltas are computed from."""
    db.table("ledger_changes").create({"seq": int, "at": int, "kind": str, "ref": str}, pk="seq",
                                      not_null={"at", "kind", "ref"})
    # Changes before this sequence number were made before the log existed: deltas start here.
    row = db.execute("SELECT value FROM meta WHERE key = 'ledger_seq'").fetchone()
    db.table("meta").upsert({"key": "changes_from", "value": row[0] if row else "0"}, pk="key")

    db.table("slots").create(
        {"id": str, "venue": int, "starts_at": int, "ends_at": int, "capacity": int, "booked": int,
         "created_at": int},
        pk="id", not_null={"venue", "starts_at", "ends_at", "capacity", "booked", "created_at"},
    )
    db.table("slots").create_index(["venue", "starts_at"])
    db.table("reservations").create(
        {"id": str, "slot_id": str, "venue": int, "party": int, "status": str, "credential_id": str,
         "created_at": int, "cancelled_at": int},
        pk="id", not_null={"slot_id", "venue", "party", "status", "created_at"},
    )
    db.table("reservations").create_index(["slot_id"])
    db.table("devices").create(
        {"id": str, "site": int, "direction": str, "description": str, "status": str, "registered_at": int,
         "enrolled_at": int, "retired_at": int},
        pk="id", not_null={"site", "direction", "status", "registered_at"},
    )
    db.table("device_health").create(
        {"device_id": str, "last_seen": int, "ledger_seq": int, "outbox_backlog": int, "clock_offset_s": float,
         "reported_at": int, "details": str},
        pk="device_id",
    )
    db.table("enrollments").create(
        {"id": str, "device_id": str, "secret_hash": bytes, "created_at": int, "expires_at": int, "used_at": int},
        pk="id", not_null={"device_id", "secret_hash", "created_at", "expires_at"},
    )
    db.table("tokens").create(
        {"id": str, "role": str, "secret_hash": bytes, "label": str, "created_at": int, "device_id": str,
         "revoked_at": int},
        pk="id", not_null={"role", "secret_hash", "created_at"},
    )
    db.table("audit").create(
        {"id": int, "at": int, "actor": str, "role": str, "method": str, "path": str, "status": int,
         "detail": str},
        pk="id",
    )
    db.table("audit").create_index(["at"])
    db.table("tap_events").create(
        {"event_id": str, "tap_id": str, "kind": str, "body": str, "created_at": int, "received_at": int,
         "device_id": str, "error": str},
        pk="event_id", not_null={"tap_id", "kind", "body", "received_at"},
    )
    db.table("tap_events").create_index(["tap_id"])
    db.table("taps").create(
        {"tap_id": str, "event_id": str, "gate_id": str, "site": int, "direction": str, "decision": str,
         "reason": str, "flags": str, "credential_id": str, "product": int, "persons": int, "kind": str,
         "presentation_id": str, "at": int, "annulled": int, "received_at": int},
        pk="tap_id", not_null={"gate_id", "site", "direction", "decision", "persons", "at", "annulled"},
    )
    db.table("taps").create_index(["site", "at"])
    db.table("taps").create_index(["at"])
    db.table("taps").create_index(["credential_id"])


def _v3_collisions(db: Database) -> None:
    """Events whose id was used first by another device: kept aside and reported, never taken for a repeat."""
    db.table("tap_collisions").create(
        {"event_id": str, "device_id": str, "tap_id": str, "kind": str, "body": str, "received_at": int,
         "error": str},
        pk=("event_id", "device_id"), not_null={"tap_id", "kind", "body", "received_at", "error"},
    )
    db.table("tap_collisions").create_index(["received_at"])
    # Holds left by a process killed while booking are found by age (a handful at most: a partial index).
    db.execute("CREATE INDEX idx_reservations_held ON reservations (created_at) WHERE status = 'held'")
    # Only quarantined events are listed by time: a partial index costs ingest nothing for valid ones.
    db.execute("CREATE INDEX idx_tap_events_quarantined ON tap_events (received_at) WHERE error IS NOT NULL")


def _v4_wallet(db: Database) -> None:
    """Wallet claims (citypass.issuer.wallet): a pass ordered for a phone, signed when the phone claims it."""
    db.table("wallet_claims").create(
        {"id": str, "secret_hash": bytes, "product": int, "order_cbor": bytes, "created_at": int, "expires_at": int,
         "claimed_at": int, "holder_id": str, "credential_id": str, "code": str},
        pk="id", not_null={"secret_hash", "product", "order_cbor", "created_at", "expires_at"},
    )


def _v5_control_room(db: Database) -> None:
    """The control room: incidents kept at ingest, quarter-hour tallies, tour groups. Plain SQL
    (no sqlite-utils helpers) so the PostgreSQL twin can run the same statements."""
    for statement in (
        "CREATE TABLE incidents (id TEXT PRIMARY KEY, kind TEXT NOT NULL, scope TEXT NOT NULL, credential_id TEXT,"
        " tap_ids TEXT NOT NULL, gate_ids TEXT NOT NULL, sites TEXT NOT NULL, first_at INTEGER NOT NULL,"
        " last_at INTEGER NOT NULL, detail TEXT NOT NULL, found_at INTEGER NOT NULL, acked_at INTEGER,"
        " acked_by TEXT, ack_note TEXT)",
        "CREATE INDEX idx_incidents_scope ON incidents (scope)",
        "CREATE INDEX idx_incidents_first ON incidents (first_at, id)",
        "CREATE TABLE site_quarters (site INTEGER NOT NULL, quarter INTEGER NOT NULL, entries INTEGER NOT NULL,"
        " exits INTEGER NOT NULL, PRIMARY KEY (site, quarter))",
        "CREATE INDEX idx_site_quarters_quarter ON site_quarters (quarter)",
        "CREATE TABLE tour_groups (id TEXT PRIMARY KEY, agency TEXT NOT NULL, guide TEXT NOT NULL,"
        " contact TEXT NOT NULL, party INTEGER NOT NULL, price_fen INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        " warning TEXT, last_site INTEGER, last_at INTEGER, inside INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX idx_tour_groups_site ON tour_groups (last_site, inside)",
        "CREATE TABLE group_stops (group_id TEXT NOT NULL, stop INTEGER NOT NULL, site INTEGER NOT NULL,"
        " planned_from INTEGER NOT NULL, planned_to INTEGER NOT NULL, credential_id TEXT,"
        " admitted INTEGER NOT NULL DEFAULT 0, first_entry_at INTEGER, PRIMARY KEY (group_id, stop))",
        "CREATE UNIQUE INDEX idx_group_stops_credential ON group_stops (credential_id)",
        "CREATE INDEX idx_group_stops_planned ON group_stops (planned_from)",
        # The live stream and keyset paging read taps in the order the issuer received them.
        "CREATE INDEX idx_taps_received ON taps (received_at, tap_id)",
    ):
        db.execute(statement)
    # Incidents of taps stored before this migration: computed at the next tap of each credential (or on
    # `citypass issuer incidents-rebuild`); the tallies are recounted from the taps here, once.
    db.execute("INSERT INTO site_quarters (site, quarter, entries, exits) SELECT site, at / 900 * 900,"
               " sum(CASE WHEN kind = 'entry' THEN persons - annulled ELSE 0 END),"
               " sum(CASE WHEN kind = 'exit' THEN persons - annulled ELSE 0 END)"
               " FROM taps WHERE decision = 'allow' AND kind IN ('entry', 'exit') GROUP BY site, at / 900 * 900")



def _v6_benefit_uses(db: Database) -> None:
    """The benefit card's central count (citypass.issuer.benefits): one row per use (an admitted tap or a booking),
    keyed by ``tap:<tap id>`` / ``booking:<reservation id>`` so that a use is counted once."""
    db.table("benefit_uses").create(
        {"ref": str, "credential_id": str, "period_start": int, "at": int, "source": str, "gate_id": str,
         "site": int, "quota": int},
        pk="ref", not_null={"credential_id", "period_start", "at", "source", "quota"},
    )
    db.table("benefit_uses").create_index(["credential_id", "period_start"])


def _v7_journeys(db: Database) -> None:
    """Journeys kept at ingest (citypass.issuer.journeys.Leg): the ``/v1/journeys`` report reads these, not the taps.
    Filled for the taps already stored when the store opens (:func:`citypass.issuer.watch.rebuild_journeys`)."""
    for statement in (
        "CREATE TABLE journeys (credential_id TEXT NOT NULL, shape TEXT NOT NULL, tap_in_id TEXT, tap_out_id TEXT,"
        " from_site INTEGER, to_site INTEGER, started_at INTEGER, ended_at INTEGER, closed_at INTEGER,"
        " at INTEGER NOT NULL)",
        "CREATE INDEX idx_journeys_at ON journeys (at)",
        "CREATE INDEX idx_journeys_credential ON journeys (credential_id, at)",
    ):
        db.execute(statement)


MIGRATIONS: list[Migration] = [_v1_initial, _v2_service, _v3_collisions, _v4_wallet, _v5_control_room,
                             _v6_benefit_uses, _v7_journeys]
#: The version that added the journeys table (a store opened from before it has its journeys rebuilt).
JOURNEYS_VERSION = 7
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(db: Database) -> int:
    if "meta" not in db.table_names():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 1 if row is None else int(row[0])  # a v1 store always wrote its version; be lenient


def migrate(store: SqliteBase) -> int:
    """Bring the file up to :data:`SCHEMA_VERSION`; return the version it had before."""
    before = current_version(store.db)
    if before > SCHEMA_VERSION:
        raise StoreSchemaError(f"{store.path} has schema version {before}, newer than this software's "
                          f"{SCHEMA_VERSION}: upgrade citypass")
    for index, migration in enumerate(MIGRATIONS, start=1):
        if index <= before:
            continue
        with store.write():
            if current_version(store.db) >= index:  # another process got there first
                continue
            migration(store.db)
            store.db.table("meta").upsert({"key": "schema_version", "value": str(index)}, pk="key")
    return before
