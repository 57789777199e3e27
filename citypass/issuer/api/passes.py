"""``/v1/passes`` (sign annual, transit and group credentials) and ``/v1/revocations``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, model_validator

from citypass.credential.claims import Category, Event, HolderKey, Mode, Period
from citypass.credential.codes import parse
from citypass.credential.keys import VerifyKey
from citypass.errors import InvalidInput
from citypass.issuer import benefits
from citypass.issuer.api.common import AUTH_ERRORS, MAX_TIME, Strict, errors, parse_holder_key
from citypass.issuer.api.deps import (
    ADMIN,
    ISSUING,
    READ_REVOCATIONS,
    REVOKING,
    AdminRole,
    IssuingRole,
    ReadRevocationsRole,
    RevokingRole,
    ServicesDep,
    note,
    roles_doc,
)
from citypass.issuer.records import NotFound
from citypass.issuer.service import Issuer, Order
from citypass.issuer.wallet import claims

router = APIRouter(tags=["passes and revocations"])

HOLDER_KEY = Field(None, max_length=4000, description=(
    "Bind the credential to the holder's phone key: PEM (`-----BEGIN PUBLIC KEY-----`) or raw base64 (32 "
    "bytes Ed25519, 33/65 bytes P-256). The phone then shows dynamic codes (`citypass holder present`)."),
    examples=["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="])
VALID_FROM = Field(None, ge=0, le=MAX_TIME, description="Start of validity, Unix seconds (default: now).")
HOLDER = Field(None, description=(
    "`wallet`: do not sign yet; answer a one-time `claim_url` for the visitor's phone instead. The wallet page "
    "opened from it makes the holder key in the browser and receives the credential bound to it "
    "(docs/wallet.md). Not together with `holder_key`."))
CLAIM_TTL = Field(claims.DEFAULT_TTL_S, ge=60, le=claims.MAX_TTL_S,
                  description="With `holder: wallet`: seconds the claim link can be used.")


class AnnualPassIn(Strict):
    product: Literal["annual"]
    sites: list[Annotated[str, Field(min_length=1, max_length=48)]] = Field(
        min_length=1, max_length=64, description="Site names or numbers the pass admits to.",
        examples=[["west-lake", "lingyin"]])
    valid_from: int | None = VALID_FROM
    valid_to: int | None = Field(None, ge=0, le=MAX_TIME, description="End of validity (default: one year).")
    passback_minutes: int | None = Field(None, ge=0, le=1440, description="Anti-passback override.")
    holder_key: str | None = HOLDER_KEY
    holder: Literal["wallet"] | None = HOLDER
    claim_ttl_s: int = CLAIM_TTL


class TransitPassIn(Strict):
    product: Literal["transit"]
    account: str = Field(min_length=1, max_length=32, description="The account taps are charged to.",
                         examples=["13800000000"])
    modes: list[Literal["metro", "bus", "water_bus"]] = Field(
        default=["metro", "bus", "water_bus"], min_length=1, max_length=3, description="Modes it may be used on.")
    valid_to: int | None = Field(None, ge=0, le=MAX_TIME,
                                 description="End of the offline authorisation (default: one day).")
    category: Literal["resident", "senior", "student"] | None = Field(
        None, description="A concession rider: journeys are priced at the concession fare (senior free, student "
                          "half).")
    holder_key: str | None = HOLDER_KEY
    holder: Literal["wallet"] | None = HOLDER
    claim_ttl_s: int = CLAIM_TTL


class GroupPassIn(Strict):
    product: Literal["group"]
    site: str = Field(min_length=1, max_length=48, description="Site name or number.", examples=["lingyin"])
    party: int = Field(ge=1, le=99, description="Persons admitted on this code.", examples=[20])
    valid_from: int | None = VALID_FROM
    valid_to: int | None = Field(None, ge=0, le=MAX_TIME, description="End of validity (default: one day).")
    holder_key: str | None = HOLDER_KEY
    holder: Literal["wallet"] | None = HOLDER
    claim_ttl_s: int = CLAIM_TTL


class BenefitPassIn(Strict):
    product: Literal["benefit"]
    sites: list[Annotated[str, Field(min_length=1, max_length=48)]] = Field(
        min_length=1, max_length=64, description="Site names or numbers where the card's uses count.",
        examples=[["zhejiang-museum", "lingyin"]])
    quota: int = Field(ge=1, le=255, description="Free or discounted uses per period.", examples=[4])
    period: Literal["month", "week", "year"] = Field("month", description="The quota renews each period.")
    category: Literal["resident", "senior", "student"] = Field("resident", description="Who the card is for.")
    valid_to: int | None = Field(None, ge=0, le=MAX_TIME, description="End of validity (default: one year).")
    holder_key: str | None = HOLDER_KEY
    holder: Literal["wallet"] | None = HOLDER
    claim_ttl_s: int = CLAIM_TTL


class EventPassIn(Strict):
    product: Literal["event"]
    sessions: list[Annotated[str, Field(min_length=1, max_length=48)]] = Field(
        min_length=1, max_length=64, description="The sessions' sites (names or numbers): checked in once at each.",
        examples=[["expo-hall-a-day1", "expo-hall-b-day1"]])
    valid_from: int | None = VALID_FROM
    valid_to: int | None = Field(None, ge=0, le=MAX_TIME, description="End of the event (default: one day).")
    holder_key: str | None = HOLDER_KEY
    holder: Literal["wallet"] | None = HOLDER
    claim_ttl_s: int = CLAIM_TTL


AnyPassIn = AnnualPassIn | TransitPassIn | GroupPassIn | BenefitPassIn | EventPassIn
PassIn = Annotated[AnyPassIn, Field(discriminator="product")]


class PassOut(BaseModel):
    credential_id: str = Field(description="Hex id: what revocations and taps name.", examples=["8f3a61c2d4e5f607"])
    product: str = Field(examples=["annual"])
    code: str = Field(description="The code text to render as a QR code (alphanumeric mode, ECC M).",
                      examples=["CP1:6BFOXN*TS0BI$ZD8UE6YT…"])
    valid_from: int | None
    valid_to: int | None
    holder_bound: bool


class WalletOfferOut(BaseModel):
    """A pass ordered for a phone wallet: nothing is signed until the phone claims it."""

    product: str = Field(examples=["transit"])
    holder: Literal["wallet"] = "wallet"
    claim_id: str = Field(description="Names the claim (not secret).", examples=["3f9a0c1d2e4b"])
    claim_url: str = Field(description="The one-time claim link for the visitor's phone. Its secret is in the "
                                       "fragment (after `#`) and is shown only here, once.",
                           examples=["https://issuer.example/wallet/#claim=cpw_3f9a0c1d2e4b_…"])
    claim_expires_at: int = Field(description="Unix seconds; an unclaimed link stops working then.")


def _holder(text: str | None) -> VerifyKey | None:
    return None if text is None else parse_holder_key(text)


def _order(issuer: Issuer, body: AnyPassIn, now: int) -> Order:
    if isinstance(body, BenefitPassIn):
        if body.holder_key is None and body.holder is None:
            raise InvalidInput("a benefit card is holder-bound: give holder_key or holder: wallet")
        return benefits.order(issuer, body.sites, body.quota, now, period=Period[body.period.upper()],
                              category=Category.from_name(body.category), valid_to=body.valid_to)
    if isinstance(body, EventPassIn):
        start = now if body.valid_from is None else body.valid_from
        sessions = frozenset(issuer.site_number(s) for s in body.sessions)
        return Order(Event(sessions), start, body.valid_to if body.valid_to is not None else start + 86_400)
    if isinstance(body, AnnualPassIn):
        return issuer.annual_order(body.sites, now, body.valid_from, body.valid_to, body.passback_minutes)
    if isinstance(body, TransitPassIn):
        return issuer.transit_order(body.account, Mode.parse(",".join(body.modes)), now, body.valid_to,
                                    None if body.category is None else Category.from_name(body.category))
    return issuer.group_order(body.site, body.party, now, body.valid_from, body.valid_to)


def wallet_url(request: Request) -> str:
    """The wallet page's public address: the app's ``wallet_url`` setting, else this request's own origin."""
    configured: str | None = getattr(request.app.state, "wallet_url", None)
    return configured or str(request.base_url).rstrip("/") + "/wallet/"


@router.post("/v1/passes", status_code=201, response_model=PassOut | WalletOfferOut, summary="Sign a pass",
             description="Sign an annual, transit, group, event (a badge checked in once per session) or benefit "
                         "(惠民卡, holder-bound) credential and return its "
                         "code text; with "
                         "`\"holder\": \"wallet\"`, answer a one-time claim link for a phone wallet instead. "
                         + roles_doc(ISSUING), responses=errors(*AUTH_ERRORS, 422))
def create_pass(request: Request, body: PassIn, services: ServicesDep, _: IssuingRole) -> PassOut | WalletOfferOut:
    issuer, now = services.issuer, services.now()
    if body.holder == "wallet":
        if body.holder_key is not None:
            raise InvalidInput("give either holder_key or holder: wallet, not both")
        made = claims.offer(issuer, _order(issuer, body, now), now, body.claim_ttl_s)
        note(request, f"wallet offer {made.claim_id} for {body.product}")
        return WalletOfferOut(product=body.product, claim_id=made.claim_id, claim_url=made.url(wallet_url(request)),
                              claim_expires_at=made.expires_at)
    code = issuer.mint_order(_order(issuer, body, now), now, _holder(body.holder_key))
    cred = parse(code).credential
    note(request, f"signed {body.product} {cred.id.hex()}")
    return PassOut(credential_id=cred.id.hex(), product=cred.product_name, code=code, valid_from=cred.valid_from,
                   valid_to=cred.valid_to, holder_bound=cred.holder is not None)


class RevocationIn(Strict):
    """Exactly one of ``credential_id``, ``code`` or ``holder_key``."""

    credential_id: str | None = Field(None, pattern=r"^([0-9a-fA-F]{2}){1,16}$", examples=["8f3a61c2d4e5f607"])
    code: str | None = Field(None, min_length=4, max_length=1200, description="A whole code text.")
    holder_key: str | None = Field(None, max_length=4000, description="Revoke every credential of this phone key.")
    reason: str = Field("", max_length=200, examples=["reported lost"])

    @model_validator(mode="after")
    def _one_target(self) -> RevocationIn:
        given = [n for n in ("credential_id", "code", "holder_key") if getattr(self, n) is not None]
        if len(given) != 1:
            raise InvalidInput("give exactly one of credential_id, code, holder_key")
        return self


class RevocationOut(BaseModel):
    kind: Literal["credential", "holder"]
    id: str = Field(description="Credential id or holder id (hex).")
    revoked_at: int
    reason: str


class RevocationResult(RevocationOut):
    new: bool = Field(description="False when it was revoked already (nothing changed).")
    ledger_seq: int = Field(description="The ledger sequence after this call; gates learn it from deltas.")


class RevocationPage(BaseModel):
    items: list[RevocationOut]
    limit: int
    offset: int


@router.post("/v1/revocations", status_code=201, response_model=RevocationResult, summary="Revoke",
             description="Revoke a credential (by id or code text) or a holder key (a lost phone). Idempotent. "
                         + roles_doc(REVOKING), responses=errors(*AUTH_ERRORS, 422))
def revoke(request: Request, body: RevocationIn, services: ServicesDep, _: RevokingRole) -> RevocationResult:
    store, now = services.store, services.now()
    if body.holder_key is not None:
        holder_id = HolderKey(parse_holder_key(body.holder_key)).holder_id
        new = store.revoke_holder(holder_id, now, body.reason)
        kind: Literal["credential", "holder"] = "holder"
        ident = holder_id.hex()
    else:
        cred_id = services.issuer.credential_ref(body.code or body.credential_id or "")
        new = store.revoke(cred_id, now, body.reason)
        kind, ident = "credential", cred_id.hex()
    note(request, f"revoked {kind} {ident}" + ("" if new else " (already)"))
    return RevocationResult(kind=kind, id=ident, revoked_at=now, reason=body.reason, new=new,
                            ledger_seq=store.ledger_seq())


@router.get("/v1/revocations", response_model=RevocationPage, summary="List revocations",
            description="Newest first. " + roles_doc(READ_REVOCATIONS), responses=errors(*AUTH_ERRORS, 422))
def list_revocations(services: ServicesDep, _: ReadRevocationsRole,
                     kind: Literal["credential", "holder"] | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> RevocationPage:
    items = services.store.revocations(kind=kind, limit=limit, offset=offset)
    return RevocationPage(items=[RevocationOut(kind=r.kind, id=r.id, revoked_at=r.revoked_at,
                                               reason=r.reason) for r in items], limit=limit, offset=offset)


class LiftOut(BaseModel):
    id: str
    lifted: bool
    ledger_seq: int


@router.delete("/v1/revocations/{credential_id}", response_model=LiftOut, summary="Lift a revocation",
               description="Un-revoke a credential (a pass reported lost was found). " + roles_doc(ADMIN),
               responses=errors(*AUTH_ERRORS, 404, 422))
def lift(request: Request, services: ServicesDep,
         credential_id: Annotated[str, Path(pattern=r"^([0-9a-fA-F]{2}){1,16}$")],
         _: AdminRole) -> LiftOut:
    if not services.issuer.unrevoke(credential_id, services.now()):
        raise NotFound(f"credential {credential_id.lower()} is not revoked")
    note(request, f"lifted revocation of {credential_id.lower()}")
    return LiftOut(id=credential_id.lower(), lifted=True, ledger_seq=services.store.ledger_seq())
