"""``/v1/groups``: tour groups registered by agencies and followed gate by gate (:mod:`citypass.issuer.groups`),
``/v1/sites/{site}/groups`` (the groups inside a site now: the emergency question) and the group thresholds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from citypass.issuer import groups
from citypass.issuer.api.common import AUTH_ERRORS, MAX_TIME, Strict, errors
from citypass.issuer.api.deps import (
    GROUPS_READ,
    GROUPS_WRITE,
    GroupsReadRole,
    GroupsWriteRole,
    ServicesDep,
    note,
    roles_doc,
)
from citypass.issuer.control_records import TourGroup
from citypass.issuer.records import NotFound

router = APIRouter(tags=["tour groups"])

GROUP_ID = Path(pattern=r"^g_[0-9a-f]{12}$", examples=["g_0123456789ab"])


class StopIn(Strict):
    site: str = Field(min_length=1, max_length=48, description="Site name or number.", examples=["west-lake"])
    planned_from: int = Field(ge=0, le=MAX_TIME, description="Planned arrival (Unix s).")
    planned_to: int = Field(ge=0, le=MAX_TIME, description="Planned departure (Unix s).")


class GroupIn(Strict):
    agency: str = Field(min_length=1, max_length=100, examples=["西湖国际旅行社"])
    guide: str = Field(min_length=1, max_length=100, description="The guide's name.", examples=["王导游"])
    contact: str = Field(min_length=1, max_length=100, description="How to reach the guide.",
                         examples=["+86 138 0000 0000"])
    party: int = Field(ge=1, le=99, description="Persons in the group, guide included.", examples=[24])
    price_per_person_fen: int = Field(ge=0, le=10**9, description="Contract price per person, fen.",
                                      examples=[18_000])
    itinerary: list[StopIn] = Field(min_length=1, max_length=groups.MAX_STOPS)


class GroupStopOut(BaseModel):
    stop: int
    site: int
    planned_from: int
    planned_to: int
    credential_id: str | None
    admitted: int = Field(description="Persons the gates admitted on this stop's pass (annulled ones excluded).")
    first_entry_at: int | None


class GroupOut(BaseModel):
    id: str
    agency: str
    guide: str
    contact: str
    party: int
    price_fen: int
    created_at: int
    warning: str | None = Field(description="Set at registration when the price per person is below the threshold.")
    last_site: int | None = Field(description="Where a gate last saw one of the group's passes.")
    last_at: int | None
    inside: bool = Field(description="That last tap admitted the group (it is inside `last_site`).")
    visited: int
    stops_total: int
    next_stop: int | None
    overdue: bool
    overdue_s: int = Field(description="Seconds beyond the allowed lateness at the next stop.")
    stops: list[GroupStopOut]


class RegistrationOut(GroupOut):
    codes: list[str] = Field(description="The group pass of each stop, in itinerary order (only in this answer).")


class GroupSettingsModel(Strict):
    price_floor_fen: int = Field(ge=0, le=10**9, description="Below this price per person, a registration is warned.")
    overdue_minutes: int = Field(ge=1, le=1440, description="Lateness at the next stop before a group is overdue.")


def group_out(services: ServicesDep, group: TourGroup) -> GroupOut:
    _, minutes = groups.settings(services.issuer)
    return GroupOut.model_validate(groups.status(group, services.now(), minutes * 60).to_dict())


@router.post("/v1/groups", status_code=201, response_model=RegistrationOut, summary="Register a tour group",
             description="Issues one group pass per stop of the itinerary. A contract price per person below the "
                         "configured threshold is registered with a `warning`. " + roles_doc(GROUPS_WRITE),
             responses=errors(*AUTH_ERRORS, 422))
def register_group(request: Request, body: GroupIn, services: ServicesDep, _: GroupsWriteRole) -> RegistrationOut:
    issuer = services.issuer
    stops = [groups.Stop(issuer.site_number(s.site), s.planned_from, s.planned_to) for s in body.itinerary]
    done = groups.register(issuer, agency=body.agency, guide=body.guide, contact=body.contact, party=body.party,
                           price_fen=body.price_per_person_fen, stops=stops, now=services.now())
    note(request, f"registered group {done.group.id} ({body.agency}, {body.party} persons, {len(stops)} stops)"
                  + (" with a price warning" if done.group.warning else ""))
    return RegistrationOut(**group_out(services, done.group).model_dump(), codes=list(done.codes))


@router.get("/v1/groups", response_model=list[GroupOut], summary="List tour groups",
            description="By id, a page at a time (`after` = the last id of the previous page); `overdue=true`: "
                        "the groups overdue at their next stop, most overdue first. " + roles_doc(GROUPS_READ),
            responses=errors(*AUTH_ERRORS, 422))
def list_groups(services: ServicesDep, _: GroupsReadRole,
                after: Annotated[str | None, Query(pattern=r"^g_[0-9a-f]{12}$")] = None,
                overdue: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[GroupOut]:
    if overdue:
        return [GroupOut.model_validate(s.to_dict()) for s in groups.overdue(services.issuer, services.now())[:limit]]
    return [group_out(services, g) for g in services.store.groups(after=after, limit=limit)]


@router.get("/v1/groups/{group_id}", response_model=GroupOut, summary="Show a tour group",
            description="Last seen site and time, persons admitted per stop, itinerary progress. "
                        + roles_doc(GROUPS_READ), responses=errors(*AUTH_ERRORS, 404, 422))
def show_group(group_id: Annotated[str, GROUP_ID], services: ServicesDep, _: GroupsReadRole) -> GroupOut:
    return group_out(services, services.store.group(group_id))


@router.get("/v1/sites/{site_id}/groups", response_model=list[GroupOut], summary="Groups inside a site now",
            description="The emergency question: the tour groups whose last tap admitted them here. "
                        + roles_doc(GROUPS_READ), responses=errors(*AUTH_ERRORS, 404, 422))
def groups_at_site(site_id: Annotated[str, Path(min_length=1, max_length=48)], services: ServicesDep,
                   _: GroupsReadRole, limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[GroupOut]:
    site = next((s for s in services.store.sites() if site_id in (s.name, str(s.number))), None)
    if site is None:
        raise NotFound(f"no site {site_id!r}")
    return [group_out(services, g) for g in services.store.groups(site=site.number, inside=True, limit=limit)]


@router.get("/v1/group-settings", response_model=GroupSettingsModel, summary="Group thresholds",
            description=roles_doc(GROUPS_READ), responses=errors(*AUTH_ERRORS))
def get_group_settings(services: ServicesDep, _: GroupsReadRole) -> GroupSettingsModel:
    floor, minutes = groups.settings(services.issuer)
    return GroupSettingsModel(price_floor_fen=floor, overdue_minutes=minutes)


@router.put("/v1/group-settings", response_model=GroupSettingsModel, summary="Set the group thresholds",
            description=roles_doc(GROUPS_WRITE), responses=errors(*AUTH_ERRORS, 422))
def put_group_settings(request: Request, body: GroupSettingsModel, services: ServicesDep,
                       _: GroupsWriteRole) -> GroupSettingsModel:
    groups.set_settings(services.issuer, body.price_floor_fen, body.overdue_minutes)
    note(request, f"group thresholds: price floor {body.price_floor_fen} fen, overdue {body.overdue_minutes} min")
    return body
