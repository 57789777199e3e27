"""The PostgreSQL schema of the issuer, as an ordered list of migrations.

Same rule as the SQLite store (:mod:`citypass.issuer.sqlite.migrations`): the version is ``meta``'s
``schema_version`` row; opening a store runs the missing migrations in order, each in one transaction with
the version bump, under a transaction-level advisory lock — so several nodes starting at once migrate the
database once, the others wait and find it done. A database whose version is higher than
:data:`SCHEMA_VERSION` was written by newer software and is refused. Append; never edit a shipped one.

The tables are the SQLite store's, column for column (times ``bigint`` Unix seconds, ids ``text``), with
three differences made for a city's volume:

``taps``
    **partitioned by UTC day** of the tap's time ``at`` (``taps_YYYYMMDD``, made on demand by ingest —
    :mod:`citypass.issuer.postgres.taps`), so a day's reports read one partition and retention drops whole
    partitions instead of deleting rows. A tap far outside the ingest day (a gate clock years off) lands in
    ``taps_other``, the default partition. A partitioned table's unique key must contain the partition key,
    so uniqueness of the tap id itself is kept by…
``tap_ids``
    one row per tap id ever stored (its gate and time): the claim that makes a tap stored once whatever
    worker inserts it, and the index an annulment finds its tap's partition by.
``tap_hours``
    a rollup maintained at ingest, in the batch's transaction: taps, persons and annulled persons per
    (hour, site, gate, direction, decision, product). Occupancy and activity figures for a day read its
    few thousand rows instead of the day's millions of taps.

Version 2 adds the control room's tables (issue 16; the SQLite store's ``_control_room`` migration, column for
column): ``incidents`` found at ingest, ``site_quarters`` tallies, ``tour_groups`` and ``group_stops``, and the
``(received_at, tap_id)`` index the live stream reads. Version 3 adds ``benefit_uses``, the benefit card's
city-wide count (issue 18; SQLite's v6). Version 4 adds ``journeys``, the legs kept at ingest. Version 5 drops
the taps' ``(tap_id, at)`` key (``tap_ids`` keeps tap ids unique; ``taps_at`` finds a tap by time and id) and makes
the live stream's index ``received_at`` alone (no tap id in it): a smaller index write per tap, one less.
"""

from __future__ import annotations

from psycopg import errors as pg_errors

from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.sqlite.migrations import StoreSchemaError

#: Advisory lock key taken while migrating (any fixed number: "citypass" in ASCII, cut to 63 bits).
MIGRATION_LOCK = 0x63697479706173


_V1 = """
CREATE TABLE meta (key text PRIMARY KEY, value text);
INSERT INTO meta (key, value) VALUES ('ledger_seq', '0'), ('trust_version', '0'), ('require_dynamic', ''),
    ('changes_from', '0');
CREATE TABLE sites (number integer PRIMARY KEY, name text NOT NULL UNIQUE, settings text NOT NULL);
CREATE TABLE keys (role text NOT NULL, kid text NOT NULL, alg integer NOT NULL, pub bytea NOT NULL,
    valid_from bigint NOT NULL, valid_to bigint, products text, sites text, active integer NOT NULL,
    PRIMARY KEY (role, kid));
CREATE TABLE credentials (id text PRIMARY KEY, product integer, issued_at bigint, kid text, holder_id text,
    details text);
CREATE TABLE revocations (id text PRIMARY KEY, revoked_at bigint, reason text);
CREATE TABLE holder_revocations (holder_id text PRIMARY KEY, revoked_at bigint, reason text);
CREATE TABLE ledger_changes (seq bigint PRIMARY KEY, at bigint NOT NULL, kind text NOT NULL, ref text NOT NULL);

CREATE TABLE slots (id text PRIMARY KEY, venue integer NOT NULL, starts_at bigint NOT NULL, ends_at bigint NOT NULL,
    capacity integer NOT NULL, booked integer NOT NULL, created_at bigint NOT NULL);
CREATE INDEX slots_venue_starts ON slots (venue, starts_at);
CREATE TABLE reservations (id text PRIMARY KEY, slot_id text NOT NULL, venue integer NOT NULL, party integer NOT NULL,
    status text NOT NULL, credential_id text, created_at bigint NOT NULL, cancelled_at bigint);
CREATE INDEX reservations_slot ON reservations (slot_id);
CREATE INDEX reservations_held ON reservations (created_at) WHERE status = 'held';

CREATE TABLE devices (id text PRIMARY KEY, site integer NOT NULL, direction text NOT NULL, description text,
    status text NOT NULL, registered_at bigint NOT NULL, enrolled_at bigint, retired_at bigint);
CREATE TABLE device_health (device_id text PRIMARY KEY, last_seen bigint, ledger_seq bigint, outbox_backlog bigint,
    clock_offset_s double precision, reported_at bigint, details text);
CREATE TABLE enrollments (id text PRIMARY KEY, device_id text NOT NULL, secret_hash bytea NOT NULL,
    created_at bigint NOT NULL, expires_at bigint NOT NULL, used_at bigint);
CREATE TABLE tokens (id text PRIMARY KEY, role text NOT NULL, secret_hash bytea NOT NULL, label text,
    created_at bigint NOT NULL, device_id text, revoked_at bigint);
CREATE TABLE audit (id bigserial PRIMARY KEY, at bigint, actor text, role text, method text, path text,
    status integer, detail text);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE tap_events (event_id text PRIMARY KEY, tap_id text NOT NULL, kind text NOT NULL, body text NOT NULL,
    created_at bigint, received_at bigint NOT NULL, device_id text, error text);
-- Annulments are found by tap id (a partial index: tap events, the millions, cost it nothing); retention
-- finds old events by their time of arrival, which grows with insertion order (a BRIN index: a few pages).
CREATE INDEX tap_events_annul ON tap_events (tap_id) WHERE kind = 'annul';
CREATE INDEX tap_events_received ON tap_events USING brin (received_at);
CREATE INDEX tap_events_quarantined ON tap_events (received_at) WHERE error IS NOT NULL;
CREATE TABLE tap_collisions (event_id text NOT NULL, device_id text NOT NULL, tap_id text NOT NULL, kind text NOT NULL,
    body text NOT NULL, received_at bigint NOT NULL, error text NOT NULL, PRIMARY KEY (event_id, device_id));
CREATE INDEX tap_collisions_received ON tap_collisions (received_at);

CREATE TABLE tap_ids (tap_id text PRIMARY KEY, gate_id text NOT NULL, at bigint NOT NULL);
CREATE INDEX tap_ids_at ON tap_ids USING brin (at);  -- for retention only: a few pages
CREATE TABLE taps (tap_id text NOT NULL, event_id text, gate_id text NOT NULL, site integer NOT NULL,
    direction text NOT NULL, decision text NOT NULL, reason text, flags text, credential_id text, product integer,
    persons integer NOT NULL, kind text, presentation_id text, at bigint NOT NULL, annulled integer NOT NULL,
    received_at bigint, PRIMARY KEY (tap_id, at)) PARTITION BY RANGE (at);
CREATE TABLE taps_other PARTITION OF taps DEFAULT;
CREATE INDEX taps_at ON taps (at, tap_id);
CREATE INDEX taps_site_at ON taps (site, at);
CREATE INDEX taps_credential ON taps (credential_id, at);
CREATE TABLE tap_hours (hour bigint NOT NULL, site integer NOT NULL, gate_id text NOT NULL, direction text NOT NULL,
    decision text NOT NULL, product integer NOT NULL, taps bigint NOT NULL, persons bigint NOT NULL,
    annulled bigint NOT NULL, PRIMARY KEY (hour, site, gate_id, direction, decision, product));

CREATE TABLE wallet_claims (id text PRIMARY KEY, secret_hash bytea NOT NULL, product integer NOT NULL,
    order_cbor bytea NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL, claimed_at bigint,
    holder_id text, credential_id text, code text);
"""

_V2_CONTROL_ROOM = """
CREATE TABLE incidents (id text PRIMARY KEY, kind text NOT NULL, scope text NOT NULL, credential_id text,
    tap_ids text NOT NULL, gate_ids text NOT NULL, sites text NOT NULL, first_at bigint NOT NULL,
    last_at bigint NOT NULL, detail text NOT NULL, found_at bigint NOT NULL, acked_at bigint, acked_by text,
    ack_note text);
CREATE INDEX incidents_scope ON incidents (scope);
CREATE INDEX incidents_first ON incidents (first_at, id);
CREATE INDEX incidents_open ON incidents (first_at) WHERE acked_at IS NULL;
CREATE TABLE site_quarters (site integer NOT NULL, quarter bigint NOT NULL, entries bigint NOT NULL,
    exits bigint NOT NULL, PRIMARY KEY (site, quarter));
CREATE INDEX site_quarters_quarter ON site_quarters (quarter);
CREATE TABLE tour_groups (id text PRIMARY KEY, agency text NOT NULL, guide text NOT NULL, contact text NOT NULL,
    party integer NOT NULL, price_fen bigint NOT NULL, created_at bigint NOT NULL, warning text, last_site integer,
    last_at bigint, inside integer NOT NULL DEFAULT 0);
CREATE INDEX tour_groups_site ON tour_groups (last_site, inside);
CREATE TABLE group_stops (group_id text NOT NULL, stop integer NOT NULL, site integer NOT NULL,
    planned_from bigint NOT NULL, planned_to bigint NOT NULL, credential_id text, admitted bigint NOT NULL DEFAULT 0,
    first_entry_at bigint, PRIMARY KEY (group_id, stop));
CREATE UNIQUE INDEX group_stops_credential ON group_stops (credential_id);
CREATE INDEX group_stops_planned ON group_stops (planned_from);
CREATE INDEX taps_received ON taps (received_at, tap_id);
INSERT INTO site_quarters (site, quarter, entries, exits) SELECT site, at / 900 * 900,
    sum(CASE WHEN kind = 'entry' THEN persons - annulled ELSE 0 END),
    sum(CASE WHEN kind = 'exit' THEN persons - annulled ELSE 0 END)
    FROM taps WHERE decision = 'allow' AND kind IN ('entry', 'exit') GROUP BY 1, 2;
"""

_V3_BENEFIT_USES = """
CREATE TABLE benefit_uses (ref text PRIMARY KEY, credential_id text NOT NULL, period_start bigint NOT NULL,
    at bigint NOT NULL, source text NOT NULL, gate_id text, site integer, quota integer NOT NULL);
CREATE INDEX benefit_uses_card ON benefit_uses (credential_id, period_start);
"""

# Journeys kept at ingest (citypass.issuer.journeys.Leg), read by /v1/journeys instead of the taps; filled for the
# taps already stored when the store opens (citypass.issuer.watch.rebuild_journeys).
_V4_JOURNEYS = """
CREATE TABLE journeys (credential_id text NOT NULL, shape text NOT NULL, tap_in_id text, tap_out_id text,
    from_site integer, to_site integer, started_at bigint, ended_at bigint, closed_at bigint, at bigint NOT NULL);
CREATE INDEX journeys_at ON journeys (at);
CREATE INDEX journeys_credential ON journeys (credential_id, at);
"""

# Leaner index writes per tap. The primary key (tap_id, at) enforced nothing tap_ids does not (ingest stores a
# tap only after claiming its id there) and served no lookup taps_at (at, tap_id) cannot; the live stream's index
# keeps received_at alone (8 bytes a tap instead of 8 + a 36-character id; ties sorted by id in the read). Not a
# BRIN: its last, partly filled range of every day's partition is never summarised, so every poll of the stream
# read the tail of every partition.
_V5_LEANER_TAPS = """
ALTER TABLE taps DROP CONSTRAINT taps_pkey;
DROP INDEX taps_received;
CREATE INDEX taps_received ON taps (received_at);
"""

#: Each entry is one migration's SQL (several statements); version = its position, from 1.
MIGRATIONS: list[str] = [_V1, _V2_CONTROL_ROOM, _V3_BENEFIT_USES, _V4_JOURNEYS, _V5_LEANER_TAPS]
#: The version that added the journeys table (a store opened from before it has its journeys rebuilt).
JOURNEYS_VERSION = 4
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(base: PgBase) -> int:
    if base.scalar("SELECT to_regclass('meta')") is None:
        return 0
    value = base.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
    return 0 if value is None else int(value)


def migrate(base: PgBase) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION`; return the version it had before."""
    before = current_version(base)
    if before > SCHEMA_VERSION:
        raise StoreSchemaError(f"the database has schema version {before}, newer than this software's "
                               f"{SCHEMA_VERSION}: upgrade citypass")
    for index, sql in enumerate(MIGRATIONS, start=1):
        if index > before:
            _apply(base, index, sql)
    return before


def _apply(base: PgBase, index: int, sql: str) -> None:
    """Run migration ``index`` unless another node has (re-checked under the lock). A backend that looked for
    ``meta`` before another node created it may still have "no such table" cached when it gets the lock (an
    advisory lock does not make PostgreSQL read the catalog changes others committed; a new transaction does):
    it then fails on a table that exists, and the migration is checked again in a new transaction."""
    for attempt in range(3):
        try:
            with base.write() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
                if current_version(base) >= index:  # another node got there first
                    return
                conn.execute(sql)
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT (key)"
                             " DO UPDATE SET value = excluded.value", [str(index)])
                return
        except (pg_errors.DuplicateTable, pg_errors.DuplicateObject):
            if attempt == 2:
                raise
