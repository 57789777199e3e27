"""``/v1/sites``, ``/v1/venues`` with their ``slots``, and ``/v1/reservations`` (never overbooked)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from citypass.credential.claims import MAX_SITE_NUMBER
from citypass.credential.codes import CodeError
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.errors import InvalidInput
from citypass.issuer import benefits, bookings
from citypass.issuer.api.common import AUTH_ERRORS, MAX_TIME, NAME_PATTERN, Strict, errors, parse_holder_key
from citypass.issuer.api.deps import (
    CATALOG,
    HOLDS,
    ISSUING,
    SITES_WRITE,
    CatalogRole,
    HoldsRole,
    IssuingRole,
    ServicesDep,
    SitesWriteRole,
    note,
    roles_doc,
)
from citypass.issuer.records import Conflict, NotFound, ReservationRecord, Slot
from citypass.issuer.service import IssueError

router = APIRouter(tags=["sites, venues and reservations"])

SITE_REF = Path(min_length=1, max_length=48, description="Site name (slug) or number.", examples=["zhejiang-museum"])


class SiteIn(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Short slug.", examples=["zhejiang-museum"])
    kind: SiteKind = Field(SiteKind.SCENIC, description="scenic, museum, metro, bus or water_bus.")
    title: str = Field("", max_length=100, description="Display name in Chinese.", examples=["浙江省博物馆"])
    title_en: str = Field("", max_length=100, description="Display name in English.",
                          examples=["Zhejiang Provincial Museum"])
    capacity: int | None = Field(None, ge=1, le=10_000_000, description="Most people inside at once.")
    opens: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["09:00"])
    closes: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["17:00"])
    passback_minutes: int = Field(30, ge=0, le=1440)
    passback_hard: bool = True


class VenueIn(SiteIn):
    kind: Literal[SiteKind.MUSEUM, SiteKind.SCENIC] = Field(SiteKind.MUSEUM,
                                                            description="museum (default) or scenic.")


class SiteOut(BaseModel):
    number: int = Field(description="The number credentials carry.")
    name: str
    kind: str
    title: str
    title_en: str = ""
    capacity: int | None
    opens: str | None
    closes: str | None
    passback_minutes: int
    passback_hard: bool

    @classmethod
    def of(cls, s: SiteSettings) -> SiteOut:
        return cls(number=s.number, name=s.name, kind=s.kind.value, title=s.title, title_en=s.title_en,
                   capacity=s.capacity, opens=s.opens,
                   closes=s.closes, passback_minutes=s.passback_minutes, passback_hard=s.passback_hard)


def _add_site(request: Request, services: ServicesDep, body: SiteIn) -> SiteOut:
    issuer = services.issuer
    if any(s.name == body.name for s in issuer.store.sites()):
        raise Conflict(f"site {body.name!r} already exists")
    settings = SiteSettings(number=issuer.store.next_site_number(), **body.model_dump())
    if settings.number > MAX_SITE_NUMBER:
        raise IssueError(f"no site numbers left (0..{MAX_SITE_NUMBER})")
    issuer.add_site(settings, services.now())
    note(request, f"added site {settings.name} = {settings.number}")
    return SiteOut.of(settings)


@router.get("/v1/sites", response_model=list[SiteOut], summary="List sites", description=roles_doc(CATALOG),
            responses=errors(*AUTH_ERRORS))
def list_sites(services: ServicesDep, _: CatalogRole) -> list[SiteOut]:
    return [SiteOut.of(s) for s in services.store.sites()]


@router.post("/v1/sites", status_code=201, response_model=SiteOut, summary="Add a site",
             description="Any kind of site, numbered next. Reaches gates with the next ledger delta. "
                         + roles_doc(ISSUING), responses=errors(*AUTH_ERRORS, 409, 422))
def add_site(request: Request, body: SiteIn, services: ServicesDep, _: IssuingRole) -> SiteOut:
    return _add_site(request, services, body)


class SiteEditIn(Strict):
    """The settings an operator may change once a site exists (its number, name and kind stay)."""

    title: str | None = Field(None, max_length=100, description="Display name (signed: what gates show).")
    title_en: str | None = Field(None, max_length=100, description="Display name in English.")
    capacity: int | None = Field(None, ge=1, le=10_000_000, description="Most people inside at once; null: no limit.")
    opens: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="null: open all day.")
    closes: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    passback_minutes: int | None = Field(None, ge=0, le=1440)
    passback_hard: bool | None = None


def edit_site(services: ServicesDep, ref: str, changes: dict[str, object]) -> SiteSettings:
    """Apply ``changes`` (field → new value) to a site and log the change: gates get it with their next delta."""
    site = next((s for s in services.store.sites() if ref in (s.name, str(s.number))), None)
    if site is None:
        raise NotFound(f"no site {ref!r}")
    updated = SiteSettings.model_validate(site.model_dump() | changes)
    if (updated.opens is None) != (updated.closes is None):
        raise IssueError("opening hours need both opens and closes (or neither)")
    if updated != site:
        services.store.update_site(updated, services.now())
    return updated


@router.patch("/v1/sites/{site_id}", response_model=SiteOut, summary="Edit a site",
              description="Change hours, capacity, title or anti-passback; fields left out stay as they are (null "
                          "clears capacity or hours). Signed into the ledger: gates use the new settings from their "
                          "next delta. " + roles_doc(SITES_WRITE), responses=errors(*AUTH_ERRORS, 404, 422))
def patch_site(request: Request, site_id: Annotated[str, SITE_REF], body: SiteEditIn, services: ServicesDep,
               _: SitesWriteRole) -> SiteOut:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("title", "title_en", "passback_minutes", "passback_hard"):
        if name in changes and changes[name] is None:
            raise IssueError(f"{name} cannot be null")
    updated = edit_site(services, site_id, changes)
    note(request, f"edited site {updated.name}: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())))
    return SiteOut.of(updated)


@router.get("/v1/venues", response_model=list[SiteOut], summary="List venues",
            description="Sites that take reservations (museums and scenic spots). " + roles_doc(CATALOG),
            responses=errors(*AUTH_ERRORS))
def list_venues(services: ServicesDep, _: CatalogRole) -> list[SiteOut]:
    return [SiteOut.of(s) for s in bookings.venues(services.issuer)]


@router.post("/v1/venues", status_code=201, response_model=SiteOut, summary="Add a venue",
             description="A site that takes reservations. " + roles_doc(ISSUING),
             responses=errors(*AUTH_ERRORS, 409, 422))
def add_venue(request: Request, body: VenueIn, services: ServicesDep, _: IssuingRole) -> SiteOut:
    return _add_site(request, services, body)


class SlotIn(Strict):
    starts_at: int = Field(ge=0, le=MAX_TIME, description="Unix seconds.", examples=[1_800_000_000])
    ends_at: int = Field(ge=0, le=MAX_TIME, description="Unix seconds, after starts_at (at most 7 days later).",
                         examples=[1_800_007_200])
    capacity: int = Field(ge=1, le=100_000, description="Persons the slot admits.", examples=[120])


class SlotOut(BaseModel):
    id: str = Field(examples=["s_1a2b3c4d5e6f"])
    venue: int
    starts_at: int
    ends_at: int
    capacity: int
    booked: int
    available: int

    @classmethod
    def of(cls, s: Slot) -> SlotOut:
        return cls(id=s.id, venue=s.venue, starts_at=s.starts_at, ends_at=s.ends_at, capacity=s.capacity,
                   booked=s.booked, available=s.available)


@router.get("/v1/venues/{venue_id}/slots", response_model=list[SlotOut], summary="List a venue's slots",
            description="Slots that have not ended (or ending after `since`). " + roles_doc(CATALOG),
            responses=errors(*AUTH_ERRORS, 404, 422))
def list_slots(venue_id: Annotated[str, SITE_REF], services: ServicesDep, _: CatalogRole,
               since: Annotated[int | None, Query(ge=0, le=MAX_TIME)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[SlotOut]:
    site = bookings.venue(services.issuer, venue_id)
    bookings.expire_holds(services.issuer, services.now())  # places a dead booking held are free again
    start = since if since is not None else services.now()
    return [SlotOut.of(s) for s in services.store.slots(site.number, since=start, limit=limit)]


@router.post("/v1/venues/{venue_id}/slots", status_code=201, response_model=SlotOut, summary="Add a slot",
             description=roles_doc(ISSUING), responses=errors(*AUTH_ERRORS, 404, 422))
def add_slot(request: Request, venue_id: Annotated[str, SITE_REF], body: SlotIn, services: ServicesDep,
             _: IssuingRole) -> SlotOut:
    slot = bookings.add_slot(services.issuer, venue_id, body.starts_at, body.ends_at, body.capacity, services.now())
    note(request, f"added slot {slot.id} at venue {slot.venue} for {slot.capacity}")
    return SlotOut.of(slot)


class ReservationIn(Strict):
    slot_id: str = Field(pattern=r"^s_[0-9a-f]{12}$", examples=["s_1a2b3c4d5e6f"])
    party: int = Field(1, ge=1, le=99, description="Persons on this reservation.", examples=[3])
    grace_minutes: int = Field(15, ge=0, le=1440, description="Entry grace before and after the slot.")
    holder_key: str | None = Field(None, max_length=4000, description="Bind the code to a phone key (PEM or base64).")
    benefit_code: str | None = Field(
        None, max_length=1200, description="A benefit card's code (惠民卡, its static text): the booking uses one of "
                                           "the card's uses this period, counted online; party must be 1. 409 when "
                                           "none is left.")


class ReservationOut(BaseModel):
    id: str = Field(examples=["r_0123456789abcdef"])
    slot_id: str
    venue: int
    party: int
    status: Literal["held", "active", "cancelled", "expired"]
    credential_id: str | None
    created_at: int
    cancelled_at: int | None
    code: str | None = Field(None, description="The code text (only in the response that created it).")
    benefit_left: int | None = Field(None, description="With a benefit card: its uses left this period after this "
                                                       "booking.")

    @classmethod
    def of(cls, r: ReservationRecord, code: str | None = None) -> ReservationOut:
        return cls(id=r.id, slot_id=r.slot_id, venue=r.venue, party=r.party, status=r.status,
                   credential_id=r.credential_id, created_at=r.created_at, cancelled_at=r.cancelled_at, code=code)


RESERVATION_ID = Path(pattern=r"^r_[0-9a-f]{16}$", examples=["r_0123456789abcdef"])


@router.post("/v1/reservations", status_code=201, response_model=ReservationOut, summary="Reserve",
             description="Take `party` places of a slot and sign a reservation code. Never overbooks: when the "
                         "places are not there the answer is 409, whatever the concurrency. " + roles_doc(ISSUING),
             responses=errors(*AUTH_ERRORS, 404, 409, 422))
def reserve(request: Request, body: ReservationIn, services: ServicesDep,
            _: IssuingRole) -> ReservationOut:
    holder = None if body.holder_key is None else parse_holder_key(body.holder_key)
    now = services.now()
    if body.benefit_code is not None and body.party != 1:
        raise InvalidInput("a benefit card books one place: party must be 1")
    record, code = bookings.reserve(services.issuer, body.slot_id, body.party, now, holder=holder,
                                    grace_minutes=body.grace_minutes)
    left = None
    if body.benefit_code is not None:
        try:  # counted online against the central count: an online booking never goes beyond the quota
            left = benefits.book(services.store, body.benefit_code, record.venue, record.id, now)
        except (benefits.BenefitError, benefits.QuotaExhausted, CodeError) as exc:
            bookings.cancel(services.issuer, record.id, now)  # give the places back, revoke the code
            if isinstance(exc, CodeError):
                raise InvalidInput(f"benefit_code: {exc.reason.value}") from None
            raise
    note(request, f"reserved {record.id}: {record.party} at {record.slot_id}, credential {record.credential_id}"
         + ("" if left is None else f", benefit card ({left} left)"))
    out = ReservationOut.of(record, code)
    out.benefit_left = left
    return out


@router.get("/v1/reservations", response_model=list[ReservationOut], summary="List held or expired reservations",
            description="For operators: `held` — places taken by a booking still being signed (seconds at most); "
                        "`expired` — holds whose booking died (a crash between taking the places and signing the "
                        f"code), given back after {bookings.HOLD_TTL_S} s. " + roles_doc(HOLDS),
            responses=errors(*AUTH_ERRORS, 422))
def list_reservations(services: ServicesDep, _: HoldsRole,
                      status: Annotated[Literal["held", "expired"], Query(description="Which ones.")] = "held",
                      since: Annotated[int | None, Query(ge=0, le=MAX_TIME, description="Made at or after.")] = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[ReservationOut]:
    bookings.expire_holds(services.issuer, services.now())
    return [ReservationOut.of(r) for r in services.store.reservations(status=status, since=since, limit=limit)]


@router.get("/v1/reservations/{reservation_id}", response_model=ReservationOut, summary="Show a reservation",
            description=roles_doc(CATALOG), responses=errors(*AUTH_ERRORS, 404, 422))
def show_reservation(reservation_id: Annotated[str, RESERVATION_ID], services: ServicesDep,
                     _: CatalogRole) -> ReservationOut:
    return ReservationOut.of(services.store.reservation(reservation_id))


@router.delete("/v1/reservations/{reservation_id}", response_model=ReservationOut, summary="Cancel a reservation",
               description="Gives the places back and revokes the code. Idempotent. " + roles_doc(ISSUING),
               responses=errors(*AUTH_ERRORS, 404, 422))
def cancel_reservation(request: Request, reservation_id: Annotated[str, RESERVATION_ID], services: ServicesDep,
                       _: IssuingRole) -> ReservationOut:
    record, changed = bookings.cancel(services.issuer, reservation_id, services.now())
    note(request, f"cancelled {record.id}" + ("" if changed else " (already)"))
    return ReservationOut.of(record)
