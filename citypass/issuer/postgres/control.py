"""PostgreSQL tables of the control room (incidents kept at ingest, quarter-hour tallies, tour groups, site
updates, tap pages): the twin of :mod:`citypass.issuer.sqlite.control`, same statements where they can be.

One difference matters with several ingest workers. SQLite runs one writer at a time, so ingest's
:meth:`ControlTables.exclusive` block (store a batch, then recompute what it touched from the stored taps) can
never interleave with another. Here it is an ordinary transaction, and what must not interleave is locked
*per thing recomputed*: before a (site, quarter hour) is recounted, a credential's or a gate's incidents are
recomputed, the transaction takes a transaction-level advisory lock on that key. A second worker touching the
same key waits until the first commits, and then — each statement reading what is committed when it starts —
recomputes from the first one's taps as well as its own. Workers touching different credentials and sites
(nearly all of them, in a city) never wait for each other. Locks are taken in one global order (quarters,
then credentials, then gates; by key within each), so two workers cannot deadlock on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from citypass.credential.sites import SiteSettings
from citypass.issuer.control_records import QUARTER, GroupStop, QuarterTally, StoredIncident, TourGroup
from citypass.issuer.incidents import Incident
from citypass.issuer.journeys import LEG_COLUMNS, Leg
from citypass.issuer.postgres.ledger import LedgerTables
from citypass.issuer.postgres.taps import _TAP_COLUMNS
from citypass.issuer.records import Conflict, DeviceHealth, NotFound, RevocationRecord
from citypass.issuer.sqlite.control import _incident  # row decoders: the same columns on both backends
from citypass.issuer.sqlite.taps import _record
from citypass.issuer.tap_records import TapRecord

_INCIDENT_COLUMNS = ("id, kind, scope, credential_id, tap_ids, gate_ids, sites, first_at, last_at, detail, found_at,"
                     " acked_at, acked_by, ack_note")
_GROUP_COLUMNS = "id, agency, guide, contact, party, price_fen, created_at, warning, last_site, last_at, inside"
_STOP_COLUMNS = "stop, site, planned_from, planned_to, credential_id, admitted, first_entry_at"
#: Advisory lock classes (the first of the two-int lock key), in the order they are taken.
LOCK_QUARTER, LOCK_CREDENTIAL, LOCK_GATE = 0x63700001, 0x63700002, 0x63700003


def lock_keys(conn: psycopg.Connection[Any], lock_class: int, keys: Iterable[str]) -> None:
    """Take the transaction-level advisory locks of ``keys`` (in ``lock_class``), in key-hash order."""
    names = sorted(set(keys))
    if names:
        conn.execute("SELECT pg_advisory_xact_lock(%s, h) FROM (SELECT DISTINCT hashtext(k) AS h"
                     " FROM unnest(%b::text[]) AS u(k) ORDER BY 1) s", [lock_class, names])


class ControlTables(LedgerTables):
    @contextmanager
    def exclusive(self) -> Iterator[object]:
        with self.write() as conn:
            yield conn

    # -- sites -----------------------------------------------------------------------------------------
    def update_site(self, settings: SiteSettings, at: int) -> None:
        with self.write() as conn:
            row = conn.execute("SELECT name FROM sites WHERE number = %s FOR UPDATE", [settings.number]).fetchone()
            if row is None:
                raise NotFound(f"no site number {settings.number}")
            if row[0] != settings.name:
                raise Conflict("a site's name cannot change (credentials and gates know it by number and name)")
            conn.execute("UPDATE sites SET settings = %s WHERE number = %s",
                         [settings.model_dump_json(), settings.number])
            self.log_change("site", settings.name, at)

    def change_seq(self, kind: str, ref: str) -> int | None:
        value = self.scalar("SELECT max(seq) FROM ledger_changes WHERE kind = %s AND ref = %s", [kind, ref])
        return None if value is None else int(value)

    def credential_revocation(self, credential_id: str) -> RevocationRecord | None:
        row = self.fetchone("SELECT id, revoked_at, reason FROM revocations WHERE id = %s", [credential_id])
        return None if row is None else RevocationRecord("credential", row[0], row[1], row[2] or "")

    def credentials_for_account(self, account: str, limit: int = 20) -> list[str]:
        fragment = json.dumps({"account": account})[1:-1]  # as json.dumps wrote it in record_credential
        pattern = "%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.fetchall("SELECT id, details FROM credentials WHERE product = 3 AND details LIKE %s"
                             " ORDER BY issued_at DESC LIMIT %s", [pattern, limit])
        return [r[0] for r in rows if json.loads(r[1]).get("account") == account]

    def all_health(self) -> dict[str, DeviceHealth]:
        rows = self.fetchall("SELECT device_id, last_seen, ledger_seq, outbox_backlog, clock_offset_s, reported_at,"
                             " details FROM device_health")
        return {r[0]: DeviceHealth(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows}

    # -- tallies ---------------------------------------------------------------------------------------
    def recount_quarters(self, keys: Iterable[tuple[int, int]]) -> None:
        pairs = sorted(set(keys))
        if not pairs:
            return
        with self.write() as conn:
            lock_keys(conn, LOCK_QUARTER, [f"{site}:{quarter}" for site, quarter in pairs])
            conn.execute(
                "INSERT INTO site_quarters (site, quarter, entries, exits)"
                " SELECT k.site, k.quarter,"
                " coalesce(sum(CASE WHEN t.kind = 'entry' THEN t.persons - t.annulled ELSE 0 END), 0),"
                " coalesce(sum(CASE WHEN t.kind = 'exit' THEN t.persons - t.annulled ELSE 0 END), 0)"
                " FROM unnest(%b::int[], %b::bigint[]) AS k(site, quarter) LEFT JOIN taps t ON t.site = k.site"
                " AND t.at >= k.quarter AND t.at < k.quarter + %s AND t.decision = 'allow'"
                " AND t.kind IN ('entry', 'exit') GROUP BY k.site, k.quarter ORDER BY 1, 2"
                " ON CONFLICT (site, quarter) DO UPDATE SET entries = excluded.entries, exits = excluded.exits",
                [[s for s, _ in pairs], [q for _, q in pairs], QUARTER])

    def quarter_tallies(self, since: int, until: int, site: int | None = None) -> list[QuarterTally]:
        only = "" if site is None else " AND site = %s"
        rows = self.fetchall(f"SELECT site, quarter, entries, exits FROM site_quarters WHERE quarter >= %s"
                             f" AND quarter < %s{only} ORDER BY site, quarter",
                             [since, until, *([] if site is None else [site])])
        return [QuarterTally(*row) for row in rows]

    # -- taps by credential, by page, as received -----------------------------------------------------
    def taps_of_credentials(self, credential_ids: Iterable[str], since: int, until: int) -> list[TapRecord]:
        ids = sorted(set(credential_ids))
        if not ids:
            return []
        rows = self.fetchall(f"SELECT t.* FROM unnest(%b::text[]) AS u(id) CROSS JOIN LATERAL (SELECT {_TAP_COLUMNS}"
                             " FROM taps WHERE credential_id = u.id AND at >= %s AND at < %s OFFSET 0) t",
                             [ids, since, until])
        return [_record(r) for r in rows]

    def open_incident_credentials(self, credential_ids: Iterable[str], since: int) -> list[str]:
        ids = sorted(set(credential_ids))
        if not ids:
            return []
        with self.write() as conn:  # inside ingest's transaction: the locks last until it commits
            lock_keys(conn, LOCK_CREDENTIAL, ids)
            rows = conn.execute(
                # Only the scope inside the fence: with the other conditions there, the planner took the partial index
                # of open incidents and read all of them for every credential (the day's ingest slowed 4× at 0.8 M).
                "SELECT DISTINCT substr(i.scope, 3) FROM unnest(%b::text[]) AS u(s) CROSS JOIN LATERAL (SELECT scope,"
                " acked_at, first_at FROM incidents WHERE scope = u.s OFFSET 0) i WHERE i.acked_at IS NULL"
                " AND i.first_at >= %s",
                [[f"c:{c}" for c in ids], since]).fetchall()
        return [r[0] for r in rows]

    def gate_taps_of_note(self, site: int, gate_id: str, since: int, until: int) -> list[TapRecord]:
        with self.write() as conn:
            lock_keys(conn, LOCK_GATE, [gate_id])
            rows = conn.execute(
                f"SELECT {_TAP_COLUMNS} FROM taps WHERE site = %s AND at >= %s AND at < %s AND gate_id = %s"
                " AND (decision = 'deny' OR flags <> '[]')", [site, since, until, gate_id]).fetchall()
        return [_record(r) for r in rows]

    def taps_by_id(self, tap_ids: Iterable[str]) -> list[TapRecord]:
        ids = sorted(set(tap_ids))
        if not ids:
            return []
        rows = self.fetchall(f"SELECT t.* FROM unnest(%b::text[]) AS u(id) CROSS JOIN LATERAL (SELECT at FROM tap_ids"
                             f" WHERE tap_id = u.id OFFSET 0) i CROSS JOIN LATERAL (SELECT {_TAP_COLUMNS} FROM taps"
                             " WHERE tap_id = u.id AND at = i.at OFFSET 0) t", [ids])
        return [_record(r) for r in rows]

    def taps_page(self, *, since: int, until: int, after: tuple[int, str] | None = None, site: int | None = None,
                  limit: int = 1000) -> list[TapRecord]:
        at, tap_id = after if after is not None else (since - 1, "")
        only = "" if site is None else " AND site = %s"
        rows = self.fetchall(
            f"SELECT {_TAP_COLUMNS} FROM taps WHERE at >= %s AND at < %s AND (at, tap_id) > (%s, %s){only}"
            " ORDER BY at, tap_id LIMIT %s", [since, until, at, tap_id, *([] if site is None else [site]), limit])
        return [_record(r) for r in rows]

    def tap_ids_received(self, since: int, limit: int = 50_000) -> list[tuple[int, str]]:
        rows = self.fetchall("SELECT received_at, tap_id FROM taps WHERE received_at >= %s"
                             " ORDER BY received_at, tap_id LIMIT %s", [since, limit])
        return [(int(r[0]), str(r[1])) for r in rows]

    # -- journeys --------------------------------------------------------------------------------------
    def replace_journeys(self, credential_ids: Sequence[str], since: int, legs: Sequence[Leg]) -> None:
        ids = sorted(set(credential_ids))
        if not ids:
            return
        with self.write() as conn:
            lock_keys(conn, LOCK_CREDENTIAL, ids)  # held already when ingest looked for incidents
            conn.execute("DELETE FROM journeys WHERE ctid = ANY(ARRAY(SELECT j.ctid FROM unnest(%b::text[]) AS u(id)"
                         " CROSS JOIN LATERAL (SELECT ctid FROM journeys WHERE credential_id = u.id"
                         " AND coalesce(ended_at, at) >= %s OFFSET 0) j))", [ids, since])
            if legs:
                conn.execute(f"INSERT INTO journeys ({LEG_COLUMNS}) SELECT * FROM unnest(%b::text[], %b::text[],"
                             " %b::text[], %b::text[], %b::int[], %b::int[], %b::bigint[], %b::bigint[], %b::bigint[],"
                             " %b::bigint[])", [list(c) for c in zip(*[leg.as_row() for leg in legs], strict=True)])

    def journey_legs(self, since: int, until: int, *, max_journey_s: int, credential_id: str | None = None,
                     limit: int = 1_000_000) -> list[Leg]:
        only = "" if credential_id is None else " AND credential_id = %(cid)s"
        rows = self.fetchall(
            f"SELECT {LEG_COLUMNS} FROM journeys WHERE ((at >= %(since)s AND at < %(until)s) OR (at >= %(early)s"
            " AND at < %(since)s AND shape = 'complete' AND ended_at >= %(since)s AND ended_at < %(until)s))"
            f"{only} ORDER BY at, credential_id COLLATE \"C\", coalesce(tap_in_id, '') COLLATE \"C\","
            " coalesce(tap_out_id, '') COLLATE \"C\" LIMIT %(limit)s",  # the report's order: Python's, code points
            {"since": since, "until": until, "early": since - max_journey_s, "cid": credential_id, "limit": limit})
        return [Leg(*r[:-1]) for r in rows]

    # -- incidents -------------------------------------------------------------------------------------
    def save_incidents(self, scopes: Sequence[str], since: int, incidents: Sequence[tuple[str, Incident]],
                       found_at: int) -> int:
        with self.write() as conn:
            if scopes:  # one index probe per scope (the planner would read every open incident of the window)
                conn.execute("DELETE FROM incidents WHERE ctid = ANY(ARRAY(SELECT i.ctid FROM unnest(%b::text[])"
                             " AS u(s) CROSS JOIN LATERAL (SELECT ctid, acked_at, first_at FROM incidents"
                             " WHERE scope = u.s OFFSET 0) i WHERE i.acked_at IS NULL AND i.first_at >= %s))",
                             [sorted(set(scopes)), since])
            if not incidents:
                return 0
            rows = conn.execute(
                f"INSERT INTO incidents ({_INCIDENT_COLUMNS}) SELECT *, NULL::bigint, NULL::text, NULL::text FROM"
                " unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
                " %b::bigint[], %b::bigint[], %b::text[], %b::bigint[]) ON CONFLICT (id) DO NOTHING RETURNING id",
                [list(col) for col in zip(*[
                    (i.incident_id, i.kind, scope, i.credential_id, json.dumps(list(i.tap_ids)),
                     json.dumps(list(i.gate_ids)), json.dumps(list(i.sites)), i.first_at, i.last_at, i.detail,
                     found_at) for scope, i in incidents], strict=True)]).fetchall()
        return len(rows)

    def stored_incidents(self, *, since: int | None = None, until: int | None = None, kind: str | None = None,
                         open_only: bool = False, after: tuple[int, str] | None = None,
                         limit: int = 100, latest_first: bool = False) -> list[StoredIncident]:
        where, params = ["true"], []
        for clause, value in (("last_at >= %s", since), ("first_at < %s", until), ("kind = %s", kind)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if open_only:
            where.append("acked_at IS NULL")
        if after is not None:
            where.append("(first_at, id) > (%s, %s)")
            params += [after[0], after[1]]
        rows = self.fetchall(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {' AND '.join(where)}"
                             f" ORDER BY {'last_at DESC, id DESC' if latest_first else 'first_at, id'} LIMIT %s",
                             [*params, limit])
        return [_incident(r) for r in rows]

    def stored_incident(self, incident_id: str) -> StoredIncident:
        row = self.fetchone(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = %s", [incident_id])
        if row is None:
            raise NotFound(f"no incident {incident_id!r}")
        return _incident(row)

    def ack_incident(self, incident_id: str, at: int, actor: str, note: str) -> tuple[StoredIncident, bool]:
        with self.write() as conn:
            cur = conn.execute("UPDATE incidents SET acked_at = %s, acked_by = %s, ack_note = %s WHERE id = %s"
                               " AND acked_at IS NULL", [at, actor, note, incident_id])
            return self.stored_incident(incident_id), cur.rowcount == 1

    def open_incident_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM incidents WHERE acked_at IS NULL"))

    # -- tour groups -----------------------------------------------------------------------------------
    def add_group(self, group: TourGroup) -> None:
        with self.write() as conn:
            cur = conn.execute(
                f"INSERT INTO tour_groups ({_GROUP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, 0)"
                " ON CONFLICT (id) DO NOTHING",
                [group.id, group.agency, group.guide, group.contact, group.party, group.price_fen, group.created_at,
                 group.warning])
            if cur.rowcount == 0:
                raise Conflict(f"group {group.id!r} exists")
            with conn.cursor() as c:
                c.executemany(
                    f"INSERT INTO group_stops (group_id, {_STOP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, 0, NULL)",
                    [(group.id, s.stop, s.site, s.planned_from, s.planned_to, s.credential_id) for s in group.stops])

    def group(self, group_id: str) -> TourGroup:
        row = self.fetchone(f"SELECT {_GROUP_COLUMNS} FROM tour_groups WHERE id = %s", [group_id])
        if row is None:
            raise NotFound(f"no group {group_id!r}")
        return self._groups_with_stops([row])[0]

    def groups(self, *, site: int | None = None, inside: bool | None = None, after: str | None = None,
               limit: int = 200) -> list[TourGroup]:
        where, params = ["true"], []
        for clause, value in (("last_site = %s", site), ("inside = %s", None if inside is None else int(inside)),
                              ("id > %s", after)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self.fetchall(f"SELECT {_GROUP_COLUMNS} FROM tour_groups WHERE {' AND '.join(where)}"
                             " ORDER BY id LIMIT %s", [*params, limit])
        return self._groups_with_stops(rows)

    def groups_due(self, *, planned_before: int, limit: int = 1000) -> list[TourGroup]:
        rows = self.fetchall(
            f"SELECT {_GROUP_COLUMNS} FROM tour_groups WHERE id IN (SELECT group_id FROM group_stops"
            " WHERE planned_from < %s AND first_entry_at IS NULL) ORDER BY id LIMIT %s", [planned_before, limit])
        return self._groups_with_stops(rows)

    def group_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM tour_groups"))

    def _groups_with_stops(self, rows: Sequence[Any]) -> list[TourGroup]:
        stops: dict[str, list[GroupStop]] = {r[0]: [] for r in rows}
        if stops:
            for r in self.fetchall(f"SELECT group_id, {_STOP_COLUMNS} FROM group_stops WHERE group_id = ANY(%b::text[])"
                                   " ORDER BY group_id, stop", [list(stops)]):
                stops[r[0]].append(GroupStop(*r[1:]))
        return [TourGroup(id=r[0], agency=r[1], guide=r[2], contact=r[3], party=r[4], price_fen=r[5], created_at=r[6],
                          stops=tuple(stops[r[0]]), warning=r[7], last_site=r[8], last_at=r[9], inside=bool(r[10]))
                for r in rows]

    def group_stops_of(self, credential_ids: Iterable[str]) -> dict[str, tuple[str, GroupStop]]:
        ids = sorted(set(credential_ids))
        out: dict[str, tuple[str, GroupStop]] = {}
        if ids:
            for r in self.fetchall(f"SELECT group_id, {_STOP_COLUMNS} FROM group_stops"
                                   " WHERE credential_id = ANY(%b::text[])", [ids]):
                stop = GroupStop(*r[1:])
                out[str(stop.credential_id)] = (r[0], stop)
        return out

    def track_groups(self, credential_ids: Sequence[str], moves: Sequence[tuple[str, int, int, bool]]) -> None:
        with self.write() as conn:
            lock_keys(conn, LOCK_CREDENTIAL, credential_ids)  # held already when ingest looked for incidents
            with conn.cursor() as c:
                c.executemany(
                    "UPDATE group_stops SET"
                    " admitted = (SELECT coalesce(sum(persons - annulled), 0) FROM taps WHERE credential_id = %(c)s"
                    " AND decision = 'allow' AND kind = 'entry'),"
                    " first_entry_at = (SELECT min(at) FROM taps WHERE credential_id = %(c)s AND decision = 'allow'"
                    " AND kind = 'entry') WHERE credential_id = %(c)s", [{"c": c} for c in credential_ids])
                c.executemany(
                    "UPDATE tour_groups SET last_site = %s, last_at = %s, inside = %s WHERE id = %s"
                    " AND (last_at IS NULL OR last_at <= %s)",
                    [(site, at, int(inside), group_id, at) for group_id, site, at, inside in moves])

