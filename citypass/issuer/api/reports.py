"""What operators read: ``/v1/incidents``, ``/v1/sites/{id}/occupancy``, ``/v1/journeys`` (with the
``/v1/fares`` table), ``/v1/activity`` (taps per gate), and the ``/v1/audit`` log. The arithmetic is
:mod:`citypass.issuer.reconcile`'s; this module chooses which taps to give it."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, field_validator

from citypass.credential.claims import MAX_SITE_NUMBER
from citypass.errors import InvalidInput
from citypass.issuer.api.common import AUTH_ERRORS, ID_PATTERN, MAX_TIME, Strict, errors
from citypass.issuer.api.deps import (
    AUDIT,
    CONTROL,
    FARES_WRITE,
    REPORTS,
    AuditRole,
    ControlRole,
    FaresWriteRole,
    ReportsRole,
    ServicesDep,
    note,
    roles_doc,
)
from citypass.issuer.benefits import over_quota_incidents
from citypass.issuer.journeys import window_journeys
from citypass.issuer.quarantine import quarantine_incidents
from citypass.issuer.reconcile import (
    FareTable,
    TapRecord,
    gate_activity,
    local_midnight,
    occupancy_from_quarters,
)
from citypass.issuer.records import NotFound

router = APIRouter(tags=["reports"])

DAY = 86_400
MAX_WINDOW_S = 31 * DAY
#: Most taps one report reads; a busier window must be narrowed rather than silently cut short.
MAX_REPORT_TAPS = 1_000_000
MAX_JOURNEY_S = 4 * 3600
#: Until an operator sets fares, every complete ride costs this (fen).
DEFAULT_FARES = {"default_fare": 200}

Since = Annotated[int | None, Query(ge=0, le=MAX_TIME, description="Window start, Unix s (default: a day ago).")]
Until = Annotated[int | None, Query(ge=0, le=MAX_TIME, description="Window end, Unix s (default: now).")]


def _window(services: ServicesDep, since: int | None, until: int | None, default_s: int) -> tuple[int, int]:
    end = until if until is not None else services.now() + 1
    start = since if since is not None else max(0, end - default_s)
    if start >= end:
        raise InvalidInput("since must be before until")
    if end - start > MAX_WINDOW_S:
        raise InvalidInput("a report window is at most 31 days")
    return start, end


def _taps(services: ServicesDep, **query: Any) -> list[TapRecord]:
    taps = services.store.taps(**query, limit=MAX_REPORT_TAPS + 1)
    if len(taps) > MAX_REPORT_TAPS:
        raise InvalidInput(f"more than {MAX_REPORT_TAPS} taps in this window: narrow since/until")
    return taps


QUARANTINE_KINDS = ("quarantined_upload", "id_collision")


class IncidentOut(BaseModel):
    incident_id: str = Field(examples=["double_use-0123456789abcdef01234567"])
    kind: str = Field(description="double_use, passback, forged_code, replayed_code, revoked_code, "
                                  "clock_untrusted, shared_pass, quarantined_upload, id_collision, …",
                      examples=["double_use"])
    credential_id: str | None
    tap_ids: list[str]
    gate_ids: list[str]
    sites: list[int]
    first_at: int
    last_at: int
    detail: str
    found_at: int | None = Field(None, description="When ingest found it (null: computed from the quarantine).")
    acked_at: int | None = None
    acked_by: str | None = Field(None, description="The token id of the operator who acknowledged it.")
    ack_note: str | None = None


@router.get("/v1/incidents", response_model=list[IncidentOut], summary="Incidents",
            description="Double use of single-use tickets across gates (often both offline), passback violations, "
                        "forged, replayed or revoked codes seen, untrusted gate clocks, shared passes, gate jumpers "
                        "(a ride ended with no tap-in) — kept in a table maintained at ingest — and uploads kept "
                        "aside: taps a device is not registered for or that are implausible (`quarantined_upload`), "
                        "event ids another device used first (`id_collision`). `open=true`: only the ones no "
                        "operator has acknowledged. " + roles_doc(REPORTS), responses=errors(*AUTH_ERRORS, 422))
def incidents(services: ServicesDep, _: ReportsRole, since: Since = None, until: Until = None,
              kind: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
              open: Annotated[bool, Query(description="Only unacknowledged incidents.")] = False,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[IncidentOut]:
    start, end = _window(services, since, until, 7 * DAY)
    store = services.store
    stored = store.stored_incidents(since=start, until=end, kind=kind, open_only=open, limit=limit)
    found: list[IncidentOut] = [IncidentOut(**i.to_dict()) for i in stored]
    if kind is None or kind in QUARANTINE_KINDS:
        # What devices uploaded that the issuer would not believe (by the time it was received).
        found += [IncidentOut(**i.to_dict()) for i in quarantine_incidents(
            store.quarantined(since=start, until=end, limit=MAX_REPORT_TAPS)) if kind is None or i.kind == kind]
    if kind in (None, "benefit_over_quota"):
        # Benefit cards used beyond their quota, from the city-wide count (taps and online bookings).
        found += [IncidentOut(**i.to_dict()) for i in over_quota_incidents(store, start) if i.first_at < end]
    found.sort(key=lambda i: (i.first_at, i.kind, i.incident_id))
    return found[:limit]


class AckIn(Strict):
    note: str = Field("", max_length=500, description="What the operator did about it.")


@router.post("/v1/incidents/{incident_id}/ack", response_model=IncidentOut, summary="Acknowledge an incident",
             description="Marks it seen and handled (once: the first acknowledgement stays); audited. "
                         + roles_doc(CONTROL), responses=errors(*AUTH_ERRORS, 404, 422))
def ack_incident(request: Request, incident_id: Annotated[str, Path(pattern=r"^[a-z_]+-[0-9a-f]{24}$")],
                 body: AckIn, services: ServicesDep, principal: ControlRole) -> IncidentOut:
    stored, changed = services.store.ack_incident(incident_id, services.now(), principal.token_id, body.note)
    note(request, f"acknowledged {incident_id}" + ("" if changed else " (already)") + f": {body.note}")
    return IncidentOut(**stored.to_dict())


class TapOut(BaseModel):
    tap_id: str
    gate_id: str
    site: int
    direction: str
    decision: str
    reason: str | None
    flags: list[str]
    credential_id: str | None
    product: int | None
    persons: int
    kind: str | None
    at: int
    annulled: int
    received_at: int | None


class TapPageOut(BaseModel):
    taps: list[TapOut]
    next: str | None = Field(description="Pass as `after` for the next page; null: the window is exhausted.")


def tap_out(t: TapRecord) -> TapOut:
    return TapOut(tap_id=t.tap_id, gate_id=t.gate_id, site=t.site, direction=t.direction, decision=t.decision,
                  reason=t.reason, flags=list(t.flags), credential_id=t.credential_id, product=t.product,
                  persons=t.persons, kind=t.kind, at=t.at, annulled=t.annulled, received_at=t.received_at)


@router.get("/v1/reports/taps", response_model=TapPageOut, summary="Taps, a page at a time",
            description="Every tap of a window of any size, in `(at, tap_id)` order, by keyset paging: each page "
                        "ends with a `next` cursor to pass as `after`. " + roles_doc(REPORTS),
            responses=errors(*AUTH_ERRORS, 422))
def tap_pages(services: ServicesDep, _: ReportsRole,
              since: Annotated[int, Query(ge=0, le=MAX_TIME)], until: Annotated[int, Query(ge=0, le=MAX_TIME)],
              after: Annotated[str | None, Query(pattern=r"^\d{1,13}:[A-Za-z0-9._:-]{1,64}$")] = None,
              site: Annotated[int | None, Query(ge=0, le=MAX_SITE_NUMBER)] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> TapPageOut:
    cursor = None if after is None else (int(after.split(":", 1)[0]), after.split(":", 1)[1])
    page = services.store.taps_page(since=since, until=until, after=cursor, site=site, limit=limit)
    last = page[-1] if len(page) == limit else None
    return TapPageOut(taps=[tap_out(t) for t in page], next=None if last is None else f"{last.at}:{last.tap_id}")


class OccupancyPointOut(BaseModel):
    hour_start: int
    entries: int
    exits: int
    inside_at_end: int


class OccupancyOut(BaseModel):
    site: int
    at: int
    inside: int = Field(description="Persons inside now (entries minus exits, annulled persons excluded).")
    entries_today: int = Field(description="Since local midnight.")
    capacity: int | None
    series: list[OccupancyPointOut] = Field(description="One point per local hour, oldest first.")


@router.get("/v1/sites/{site_id}/occupancy", response_model=OccupancyOut, summary="Site occupancy",
            description="Who is inside a site now, site-wide across all its gates, and an hourly series (the "
                        "emergency use: knowing who is where). " + roles_doc(REPORTS),
            responses=errors(*AUTH_ERRORS, 404, 422))
def site_occupancy(site_id: Annotated[str, Path(min_length=1, max_length=48, examples=["west-lake"])],
                   services: ServicesDep, _: ReportsRole,
                   hours: Annotated[int, Query(ge=1, le=168)] = 24) -> OccupancyOut:
    site = next((s for s in services.store.sites() if s.name == site_id or str(s.number) == site_id), None)
    if site is None:
        raise NotFound(f"no site {site_id!r}")
    now = services.now()
    start = min(local_midnight(now, site.utc_offset_minutes), now - hours * 3600) - DAY
    tallies = services.store.quarter_tallies(start, now + 1, site=site.number)  # kept at ingest: no day of taps
    occ = occupancy_from_quarters(tallies, site.number, now, hours=hours, utc_offset_minutes=site.utc_offset_minutes)
    data: dict[str, Any] = occ.to_dict()
    return OccupancyOut(**data, capacity=site.capacity)


class JourneyOut(BaseModel):
    credential_id: str
    tap_in_id: str | None
    tap_out_id: str | None
    from_site: int | None
    to_site: int | None
    started_at: int | None
    ended_at: int | None
    fare: int | None = Field(description="Fen; None for an incomplete journey.")
    complete: bool
    flag: Literal["no_tap_out", "no_tap_in"] | str | None
    single_tap: bool
    category: str | None = Field(None, description="senior or student: the fare is the concession fare.")


@router.get("/v1/journeys", response_model=list[JourneyOut], summary="Transit journeys",
            description="Metro tap-ins paired with tap-outs (across stations and midnight), bus and water-bus "
                        "rides, priced from the fare table; incomplete journeys are flagged. " + roles_doc(REPORTS),
            responses=errors(*AUTH_ERRORS, 422))
def list_journeys(services: ServicesDep, _: ReportsRole, since: Since = None, until: Until = None,
                  credential_id: Annotated[str | None, Query(pattern=r"^([0-9a-f]{2}){1,16}$")] = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[JourneyOut]:
    start, end = _window(services, since, until, DAY)
    store = services.store
    # Journeys are kept at ingest (citypass.issuer.watch.update_journeys): the report's first ``limit`` legs are
    # read, in its order, not the window's taps.
    kept = store.journey_legs(start, end, max_journey_s=MAX_JOURNEY_S, credential_id=credential_id, limit=limit)

    def category_of(cid: str) -> str | None:  # a concession rider's category, from the credential we issued
        details = store.credential_details(bytes.fromhex(cid)) or {}
        category = details.get("category")
        return category if isinstance(category, str) else None

    rides = window_journeys(kept, _fares(services), since=start, until=end, now=min(end, services.now()),
                            max_journey_s=MAX_JOURNEY_S, category_of=category_of)
    return [JourneyOut(**j.to_dict()) for j in rides]


class GateActivityOut(BaseModel):
    gate_id: str = Field(description="The gate (device id) that recorded the taps.", examples=["lake-in"])
    site: int = Field(description="Site number the gate stands at.", examples=[1])
    direction: Literal["entry", "exit"] = Field(description="The gate's direction.", examples=["entry"])
    taps: int = Field(description="Distinct taps recorded (each tap id once): allowed + denied.", examples=[3])
    allowed: int = Field(description="Taps the gate allowed.", examples=[2])
    denied: int = Field(description="Taps the gate refused: the sum of `denials`.", examples=[1])
    persons: int = Field(description="Persons admitted by the allowed taps (a group tap counts its party), "
                                     "annulled ones included.", examples=[4])
    annulled: int = Field(description="Persons given back: the barrier opened and they never passed. "
                                      "Persons who really passed: persons − annulled.", examples=[1])
    denials: dict[str, int] = Field(description="Deny reason → taps refused for it (sorted by reason).",
                                    examples=[{"expired": 1}])
    first_at: int = Field(description="The earliest tap's decision time, Unix s.", examples=[1800000000])
    last_at: int = Field(description="The latest tap's decision time, Unix s.", examples=[1800003600])


@router.get("/v1/activity", response_model=list[GateActivityOut], summary="Tap activity per gate",
            description="Per gate in the window: taps, allowed and denied, persons admitted and given back, "
                        "denials by reason — each tap counted once however often it was uploaded, so the "
                        "figures can be checked against the gates' own counts. One row per gate (per site and "
                        "direction, if the gate was moved), sorted by gate id; gates with no taps are not "
                        "listed. " + roles_doc(REPORTS), responses=errors(*AUTH_ERRORS, 422))
def activity(services: ServicesDep, _: ReportsRole, since: Since = None, until: Until = None,
             gate_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="Only this gate.",
                                                  examples=["lake-in"])] = None,
             site: Annotated[int | None, Query(ge=0, le=MAX_SITE_NUMBER,
                                               description="Only gates at this site number.")] = None,
             ) -> list[GateActivityOut]:
    start, end = _window(services, since, until, DAY)
    taps = _taps(services, since=start, until=end, site=site)
    if gate_id is not None:  # the store filters by site and time only; a gate's taps are a subset of those
        taps = [t for t in taps if t.gate_id == gate_id]
    return [GateActivityOut(**a.to_dict()) for a in gate_activity(taps)]


class FaresModel(Strict):
    """Fares in fen: an explicit pair wins, else zones (``base + per_zone × |zone difference|``), else default."""

    default_fare: int = Field(ge=0, le=10**7, examples=[200])
    pairs: list[Annotated[list[Annotated[int, Field(ge=0, le=10**7)]], Field(min_length=3, max_length=3)]] = Field(
        default_factory=list, max_length=100_000,
        description="[from_site, to_site, fare] (sites 0..2**32-1); a pair applies in either direction.",
        examples=[[[30, 31, 400]]])
    zones: dict[Annotated[str, Field(pattern=r"^\d{1,10}$")], Annotated[int, Field(ge=0, le=MAX_SITE_NUMBER)]] = Field(
        default_factory=dict, description="Site number → zone.", examples=[{"30": 1, "31": 3}])
    base: int = Field(0, ge=0, le=10**7)
    per_zone: int = Field(0, ge=0, le=10**7)

    @field_validator("pairs")
    @classmethod
    def _sites_exist(cls, pairs: list[list[int]]) -> list[list[int]]:
        for pair in pairs:
            if pair[0] > MAX_SITE_NUMBER or pair[1] > MAX_SITE_NUMBER:
                raise InvalidInput(f"fare pair {pair}: site numbers are 0..{MAX_SITE_NUMBER}")
        return pairs


def _fares(services: ServicesDep) -> FareTable:
    return FareTable.from_dict(json.loads(services.store.get_meta("fares") or "null") or DEFAULT_FARES)


@router.get("/v1/fares", response_model=FaresModel, summary="The fare table", description=roles_doc(REPORTS),
            responses=errors(*AUTH_ERRORS))
def get_fares(services: ServicesDep, _: ReportsRole) -> FaresModel:
    return FaresModel.model_validate(_fares(services).to_dict())


@router.put("/v1/fares", response_model=FaresModel, summary="Set the fare table",
            description="Replaces the table used by /v1/journeys. " + roles_doc(FARES_WRITE),
            responses=errors(*AUTH_ERRORS, 422))
def put_fares(request: Request, body: FaresModel, services: ServicesDep, _: FaresWriteRole) -> FaresModel:
    table = FareTable.from_dict(body.model_dump())
    services.store.set_meta("fares", json.dumps(table.to_dict()))
    note(request, f"fares: default {table.default_fare}, {len(table.pairs)} pair(s), {len(table.zones)} zone(s)")
    return FaresModel.model_validate(table.to_dict())


class AuditOut(BaseModel):
    id: int
    at: int
    actor: str = Field(description="Token id (or `enrollment:<id>`, or `-` when unauthenticated).")
    role: str
    method: str
    path: str
    status: int
    detail: str


@router.get("/v1/audit", response_model=list[AuditOut], summary="Audit log",
            description="Every mutating call, newest first. " + roles_doc(AUDIT), responses=errors(*AUTH_ERRORS, 422))
def audit(services: ServicesDep, _: AuditRole, since: Since = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[AuditOut]:
    return [AuditOut(**vars(e)) for e in services.store.audit_log(since=since, limit=limit, offset=offset)]
