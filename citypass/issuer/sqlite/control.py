"""SQLite tables of the control room: incidents kept at ingest, quarter-hour tallies, tour groups, and the
site updates and tap pages the console reads. Plain SQL only (``?`` placeholders, ``ON CONFLICT``, no
SQLite-only functions), so that the PostgreSQL twin of the repository can run the same statements.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from citypass.credential.sites import SiteSettings
from citypass.issuer.control_records import QUARTER, GroupStop, QuarterTally, StoredIncident, TourGroup
from citypass.issuer.incidents import Incident
from citypass.issuer.journeys import LEG_COLUMNS, Leg
from citypass.issuer.records import Conflict, DeviceHealth, NotFound, RevocationRecord
from citypass.issuer.sqlite.ledger import LedgerTables
from citypass.issuer.sqlite.taps import _TAP_COLUMNS, _chunks, _record
from citypass.issuer.tap_records import TapRecord

_INCIDENT_COLUMNS = ("id, kind, scope, credential_id, tap_ids, gate_ids, sites, first_at, last_at, detail, found_at,"
                     " acked_at, acked_by, ack_note")
_GROUP_COLUMNS = "id, agency, guide, contact, party, price_fen, created_at, warning, last_site, last_at, inside"
_STOP_COLUMNS = "stop, site, planned_from, planned_to, credential_id, admitted, first_entry_at"


class ControlTables(LedgerTables):
    def exclusive(self) -> AbstractContextManager[object]:
        return self.write()

    # -- sites -----------------------------------------------------------------------------------------
    def update_site(self, settings: SiteSettings, at: int) -> None:
        with self.write() as conn:
            row = conn.execute("SELECT name FROM sites WHERE number = ?", [settings.number]).fetchone()
            if row is None:
                raise NotFound(f"no site number {settings.number}")
            if row[0] != settings.name:
                raise Conflict("a site's name cannot change (credentials and gates know it by number and name)")
            conn.execute("UPDATE sites SET settings = ? WHERE number = ?",
                         [settings.model_dump_json(), settings.number])
            self.log_change("site", settings.name, at)

    def change_seq(self, kind: str, ref: str) -> int | None:
        row = self.conn.execute("SELECT max(seq) FROM ledger_changes WHERE kind = ? AND ref = ?",
                                [kind, ref]).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def credential_revocation(self, credential_id: str) -> RevocationRecord | None:
        row = self.conn.execute("SELECT id, revoked_at, reason FROM revocations WHERE id = ?",
                                [credential_id]).fetchone()
        return None if row is None else RevocationRecord("credential", row[0], row[1], row[2] or "")

    def credentials_for_account(self, account: str, limit: int = 20) -> list[str]:
        fragment = json.dumps({"account": account})[1:-1]  # as json.dumps wrote it in record_credential
        pattern = "%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.conn.execute("SELECT id, details FROM credentials WHERE product = 3 AND details LIKE ? ESCAPE '\\'"
                                 " ORDER BY issued_at DESC LIMIT ?", [pattern, limit]).fetchall()
        return [r[0] for r in rows if json.loads(r[1]).get("account") == account]

    def all_health(self) -> dict[str, DeviceHealth]:
        rows = self.conn.execute("SELECT device_id, last_seen, ledger_seq, outbox_backlog, clock_offset_s,"
                                 " reported_at, details FROM device_health").fetchall()
        return {r[0]: DeviceHealth(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows}

    # -- tallies ---------------------------------------------------------------------------------------
    def recount_quarters(self, keys: Iterable[tuple[int, int]]) -> None:
        with self.write() as conn:
            for site, quarter in sorted(set(keys)):
                conn.execute(
                    "INSERT INTO site_quarters (site, quarter, entries, exits) SELECT ?1, ?2,"
                    " coalesce(sum(CASE WHEN kind = 'entry' THEN persons - annulled ELSE 0 END), 0),"
                    " coalesce(sum(CASE WHEN kind = 'exit' THEN persons - annulled ELSE 0 END), 0)"
                    " FROM taps WHERE site = ?1 AND at >= ?2 AND at < ?2 + ?3 AND decision = 'allow'"
                    " AND kind IN ('entry', 'exit')"
                    " ON CONFLICT (site, quarter) DO UPDATE SET entries = excluded.entries, exits = excluded.exits",
                    [site, quarter, QUARTER])

    def quarter_tallies(self, since: int, until: int, site: int | None = None) -> list[QuarterTally]:
        only = "" if site is None else " AND site = ?"
        rows = self.conn.execute(
            f"SELECT site, quarter, entries, exits FROM site_quarters WHERE quarter >= ? AND quarter < ?{only}"
            " ORDER BY site, quarter", [since, until, *([] if site is None else [site])]).fetchall()
        return [QuarterTally(*row) for row in rows]

    # -- taps by credential, by page, as received -----------------------------------------------------
    def taps_of_credentials(self, credential_ids: Iterable[str], since: int, until: int) -> list[TapRecord]:
        out: list[TapRecord] = []
        for chunk in _chunks(sorted(set(credential_ids))):
            marks = ",".join("?" * len(chunk))
            out += [_record(r) for r in self.conn.execute(
                f"SELECT {_TAP_COLUMNS} FROM taps WHERE credential_id IN ({marks}) AND at >= ? AND at < ?",
                [*chunk, since, until])]
        return out

    def open_incident_credentials(self, credential_ids: Iterable[str], since: int) -> list[str]:
        out: list[str] = []  # one writer at a time (BEGIN IMMEDIATE): nothing to lock
        for chunk in _chunks(sorted({f"c:{c}" for c in credential_ids})):
            marks = ",".join("?" * len(chunk))
            out += [r[0] for r in self.conn.execute(
                f"SELECT DISTINCT substr(scope, 3) FROM incidents WHERE scope IN ({marks}) AND acked_at IS NULL"
                " AND first_at >= ?", [*chunk, since])]
        return out

    def gate_taps_of_note(self, site: int, gate_id: str, since: int, until: int) -> list[TapRecord]:
        rows = self.conn.execute(
            f"SELECT {_TAP_COLUMNS} FROM taps WHERE site = ? AND at >= ? AND at < ? AND gate_id = ?"
            " AND (decision = 'deny' OR flags <> '[]')", [site, since, until, gate_id]).fetchall()
        return [_record(r) for r in rows]

    def taps_by_id(self, tap_ids: Iterable[str]) -> list[TapRecord]:
        out: list[TapRecord] = []
        for chunk in _chunks(sorted(set(tap_ids))):
            marks = ",".join("?" * len(chunk))
            out += [_record(r) for r in self.conn.execute(
                f"SELECT {_TAP_COLUMNS} FROM taps WHERE tap_id IN ({marks})", chunk)]
        return out

    def taps_page(self, *, since: int, until: int, after: tuple[int, str] | None = None, site: int | None = None,
                  limit: int = 1000) -> list[TapRecord]:
        at, tap_id = after if after is not None else (since - 1, "")
        only = "" if site is None else " AND site = ?"
        rows = self.conn.execute(
            f"SELECT {_TAP_COLUMNS} FROM taps WHERE at >= ? AND at < ? AND (at > ? OR (at = ? AND tap_id > ?)){only}"
            " ORDER BY at, tap_id LIMIT ?",
            [since, until, at, at, tap_id, *([] if site is None else [site]), limit]).fetchall()
        return [_record(r) for r in rows]

    def tap_ids_received(self, since: int, limit: int = 50_000) -> list[tuple[int, str]]:
        rows = self.conn.execute("SELECT received_at, tap_id FROM taps WHERE received_at >= ?"
                                 " ORDER BY received_at, tap_id LIMIT ?", [since, limit]).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    # -- journeys --------------------------------------------------------------------------------------
    def replace_journeys(self, credential_ids: Sequence[str], since: int, legs: Sequence[Leg]) -> None:
        with self.write() as conn:
            for chunk in _chunks(sorted(set(credential_ids))):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM journeys WHERE credential_id IN ({marks}) AND coalesce(ended_at, at) >= ?",
                             [*chunk, since])
            conn.executemany(f"INSERT INTO journeys ({LEG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             [leg.as_row() for leg in legs])

    def journey_legs(self, since: int, until: int, *, max_journey_s: int, credential_id: str | None = None,
                     limit: int = 1_000_000) -> list[Leg]:
        only = "" if credential_id is None else " AND credential_id = :cid"
        rows = self.conn.execute(
            f"SELECT {LEG_COLUMNS} FROM journeys WHERE ((at >= :since AND at < :until) OR (at >= :early"
            " AND at < :since AND shape = 'complete' AND ended_at >= :since AND ended_at < :until))"
            f"{only} ORDER BY at, credential_id, coalesce(tap_in_id, ''), coalesce(tap_out_id, '') LIMIT :limit",
            {"since": since, "until": until, "early": since - max_journey_s, "cid": credential_id,
             "limit": limit}).fetchall()
        return [Leg(*r[:-1]) for r in rows]

    # -- incidents -------------------------------------------------------------------------------------
    def save_incidents(self, scopes: Sequence[str], since: int, incidents: Sequence[tuple[str, Incident]],
                       found_at: int) -> int:
        new = 0
        with self.write() as conn:
            for chunk in _chunks(sorted(set(scopes))):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM incidents WHERE scope IN ({marks}) AND acked_at IS NULL AND first_at >= ?",
                             [*chunk, since])
            for scope, i in incidents:
                cur = conn.execute(
                    f"INSERT INTO incidents ({_INCIDENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL,"
                    " NULL) ON CONFLICT (id) DO NOTHING",
                    [i.incident_id, i.kind, scope, i.credential_id, json.dumps(list(i.tap_ids)),
                     json.dumps(list(i.gate_ids)), json.dumps(list(i.sites)), i.first_at, i.last_at, i.detail,
                     found_at])
                new += cur.rowcount
        return new

    def stored_incidents(self, *, since: int | None = None, until: int | None = None, kind: str | None = None,
                         open_only: bool = False, after: tuple[int, str] | None = None,
                         limit: int = 100, latest_first: bool = False) -> list[StoredIncident]:
        where, params = ["1 = 1"], []
        for clause, value in (("last_at >= ?", since), ("first_at < ?", until), ("kind = ?", kind)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if open_only:
            where.append("acked_at IS NULL")
        if after is not None:
            where.append("(first_at > ? OR (first_at = ? AND id > ?))")
            params += [after[0], after[0], after[1]]
        rows = self.conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {' AND '.join(where)} ORDER BY "
            f"{'last_at DESC, id DESC' if latest_first else 'first_at, id'} LIMIT ?", [*params, limit]).fetchall()
        return [_incident(r) for r in rows]

    def stored_incident(self, incident_id: str) -> StoredIncident:
        row = self.conn.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", [incident_id]).fetchone()
        if row is None:
            raise NotFound(f"no incident {incident_id!r}")
        return _incident(row)

    def ack_incident(self, incident_id: str, at: int, actor: str, note: str) -> tuple[StoredIncident, bool]:
        with self.write() as conn:
            cur = conn.execute("UPDATE incidents SET acked_at = ?, acked_by = ?, ack_note = ? WHERE id = ?"
                               " AND acked_at IS NULL", [at, actor, note, incident_id])
            return self.stored_incident(incident_id), cur.rowcount == 1

    def open_incident_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM incidents WHERE acked_at IS NULL").fetchone()[0])

    # -- tour groups -----------------------------------------------------------------------------------
    def add_group(self, group: TourGroup) -> None:
        with self.write() as conn:
            if conn.execute("SELECT 1 FROM tour_groups WHERE id = ?", [group.id]).fetchone() is not None:
                raise Conflict(f"group {group.id!r} exists")
            conn.execute(f"INSERT INTO tour_groups ({_GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0)",
                         [group.id, group.agency, group.guide, group.contact, group.party, group.price_fen,
                          group.created_at, group.warning])
            conn.executemany(
                f"INSERT INTO group_stops (group_id, {_STOP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, NULL)",
                [(group.id, s.stop, s.site, s.planned_from, s.planned_to, s.credential_id) for s in group.stops])

    def group(self, group_id: str) -> TourGroup:
        row = self.conn.execute(f"SELECT {_GROUP_COLUMNS} FROM tour_groups WHERE id = ?", [group_id]).fetchone()
        if row is None:
            raise NotFound(f"no group {group_id!r}")
        return self._groups_with_stops([row])[0]

    def groups(self, *, site: int | None = None, inside: bool | None = None, after: str | None = None,
               limit: int = 200) -> list[TourGroup]:
        where, params = ["1 = 1"], []
        for clause, value in (("last_site = ?", site), ("inside = ?", None if inside is None else int(inside)),
                              ("id > ?", after)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self.conn.execute(f"SELECT {_GROUP_COLUMNS} FROM tour_groups WHERE {' AND '.join(where)}"
                                 " ORDER BY id LIMIT ?", [*params, limit]).fetchall()
        return self._groups_with_stops(rows)

    def groups_due(self, *, planned_before: int, limit: int = 1000) -> list[TourGroup]:
        rows = self.conn.execute(
            f"SELECT {_GROUP_COLUMNS} FROM tour_groups WHERE id IN (SELECT group_id FROM group_stops"
            " WHERE planned_from < ? AND first_entry_at IS NULL) ORDER BY id LIMIT ?",
            [planned_before, limit]).fetchall()
        return self._groups_with_stops(rows)

    def group_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM tour_groups").fetchone()[0])

    def _groups_with_stops(self, rows: Sequence[Any]) -> list[TourGroup]:
        stops: dict[str, list[GroupStop]] = {r[0]: [] for r in rows}
        for chunk in _chunks(list(stops)):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT group_id, {_STOP_COLUMNS} FROM group_stops WHERE group_id IN"
                                       f" ({marks}) ORDER BY group_id, stop", chunk):
                stops[r[0]].append(GroupStop(*r[1:]))
        return [TourGroup(id=r[0], agency=r[1], guide=r[2], contact=r[3], party=r[4], price_fen=r[5], created_at=r[6],
                          stops=tuple(stops[r[0]]), warning=r[7], last_site=r[8], last_at=r[9], inside=bool(r[10]))
                for r in rows]

    def group_stops_of(self, credential_ids: Iterable[str]) -> dict[str, tuple[str, GroupStop]]:
        out: dict[str, tuple[str, GroupStop]] = {}
        for chunk in _chunks(sorted(set(credential_ids))):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT group_id, {_STOP_COLUMNS} FROM group_stops WHERE credential_id IN"
                                       f" ({marks})", chunk):
                stop = GroupStop(*r[1:])
                out[str(stop.credential_id)] = (r[0], stop)
        return out

    def track_groups(self, credential_ids: Sequence[str], moves: Sequence[tuple[str, int, int, bool]]) -> None:
        with self.write() as conn:
            conn.executemany(
                "UPDATE group_stops SET"
                " admitted = (SELECT coalesce(sum(persons - annulled), 0) FROM taps WHERE credential_id = ?1"
                " AND decision = 'allow' AND kind = 'entry'),"
                " first_entry_at = (SELECT min(at) FROM taps WHERE credential_id = ?1 AND decision = 'allow'"
                " AND kind = 'entry') WHERE credential_id = ?1", [(c,) for c in credential_ids])
            conn.executemany(
                "UPDATE tour_groups SET last_site = ?, last_at = ?, inside = ? WHERE id = ?"
                " AND (last_at IS NULL OR last_at <= ?)",
                [(site, at, int(inside), group_id, at) for group_id, site, at, inside in moves])


def _incident(row: Any) -> StoredIncident:
    (_id, kind, scope, cred, tap_ids, gate_ids, sites, first_at, last_at, detail, found_at, acked_at, acked_by,
     ack_note) = row
    incident = Incident(kind=kind, credential_id=cred, tap_ids=tuple(json.loads(tap_ids)),
                        gate_ids=tuple(json.loads(gate_ids)), sites=tuple(json.loads(sites)), first_at=first_at,
                        last_at=last_at, detail=detail)
    return StoredIncident(incident, scope, found_at, acked_at, acked_by, ack_note)
