"""``/v1/ledger`` (the signed snapshot, signed deltas, status) and ``/v1/keys`` (list, rotate)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from citypass.issuer.api.common import AUTH_ERRORS, MAX_INT, MAX_TIME, Strict, errors
from citypass.issuer.api.deps import (
    ADMIN,
    AUDIT,
    LEDGER,
    AdminRole,
    KeysRole,
    LedgerRole,
    ServicesDep,
    note,
    roles_doc,
)
from citypass.issuer.deltas import build_delta

router = APIRouter(tags=["ledger and keys"])

CBOR = "application/cbor"
CBOR_BODY = {"content": {CBOR: {"schema": {"type": "string", "format": "binary"}}}}


@router.get("/v1/ledger/snapshot", response_class=Response, summary="Signed ledger snapshot",
            description="The whole ledger (trust list, sites, revocations) as the signed snapshot file gates "
                        "load (docs/credential-format.md §7). The `X-Ledger-Seq` header carries its sequence. "
                        + roles_doc(LEDGER),
            responses={200: {**CBOR_BODY, "description": "The snapshot file's bytes."}, **errors(*AUTH_ERRORS)})
def snapshot(services: ServicesDep, _: LedgerRole) -> Response:
    issuer = services.issuer
    seq = issuer.store.ledger_seq()
    data = issuer.export(services.now())
    return Response(data, media_type=CBOR, headers={"X-Ledger-Seq": str(seq)})


@router.get("/v1/ledger/deltas", response_class=Response, summary="Signed ledger delta",
            description="The changes since sequence `since`, as one signed delta (docs/issuer.md, *Ledger "
                        "deltas*) from `since` to the `X-Ledger-Seq` header's value; ask again from there until "
                        "204. 409 when only a snapshot can bring a gate at `since` forward (it predates the "
                        "change log, or the trust list changed). " + roles_doc(LEDGER),
            responses={200: {**CBOR_BODY, "description": "The delta's bytes (COSE_Sign1)."},
                       204: {"description": "The gate is current: no changes since `since`."},
                       **errors(*AUTH_ERRORS, 409, 422)})
def deltas(services: ServicesDep, _: LedgerRole,
           since: Annotated[int, Query(ge=0, le=MAX_INT, description="The gate's ledger sequence.")] = 0,
           limit: Annotated[int, Query(ge=1, le=100_000, description="Most changes in one delta.")] = 10_000,
           ) -> Response:
    issuer = services.issuer
    delta = build_delta(issuer.store, since, services.now(), limit)
    if delta is None:
        return Response(status_code=204, headers={"X-Ledger-Seq": str(since)})
    return Response(delta.sign(issuer.ledger_key()), media_type=CBOR, headers={"X-Ledger-Seq": str(delta.seq)})


class LedgerStatus(BaseModel):
    seq: int = Field(description="Current ledger sequence: a gate behind it fetches deltas.")
    trust_version: int
    revoked: int = Field(description="Revoked credential ids.")
    revoked_holders: int
    changes_logged_from: int = Field(description="Deltas can start from this sequence or later.")
    root_public_key: str = Field(description="The root public key (PEM): pin it on gates.")


@router.get("/v1/ledger", response_model=LedgerStatus, summary="Ledger status", description=roles_doc(LEDGER),
            responses=errors(*AUTH_ERRORS))
def status(services: ServicesDep, _: LedgerRole) -> LedgerStatus:
    issuer = services.issuer
    store = issuer.store
    return LedgerStatus(seq=store.ledger_seq(), trust_version=int(store.get_meta("trust_version", "0") or 0),
                        revoked=store.revocation_count("credential"),
                        revoked_holders=store.revocation_count("holder"),
                        changes_logged_from=store.changes_logged_from(),
                        root_public_key=issuer.root_key().public.pem().decode())


class KeyOut(BaseModel):
    role: str = Field(examples=["issuer"])
    kid: str = Field(examples=["a1b2"])
    alg: str = Field(examples=["Ed25519"])
    valid_from: int
    valid_to: int | None
    active: bool


@router.get("/v1/keys", response_model=list[KeyOut], summary="List trust-list keys",
            description=roles_doc(("issuer", *AUDIT)), responses=errors(*AUTH_ERRORS))
def keys(services: ServicesDep, _: KeysRole) -> list[KeyOut]:
    return [KeyOut(role=k.entry.role, kid=k.entry.kid.hex(), alg=k.entry.key.alg.label, valid_from=k.entry.valid_from,
                   valid_to=k.entry.valid_to, active=k.active) for k in services.store.keys()]


class RotateIn(Strict):
    retire_old_at: int | None = Field(None, ge=0, le=MAX_TIME,
                                      description="When the current issuer key stops verifying (default +30 days).")


class RotateOut(BaseModel):
    new_kid: str
    old_kid: str | None
    old_valid_to: int | None
    ledger_seq: int


@router.post("/v1/keys/rotate", response_model=RotateOut, summary="Rotate the issuer key",
             description="Add a new issuer signing key to the trust list; the old one keeps verifying until "
                         "`retire_old_at`. Gates need a snapshot for it (deltas stop before trust changes). "
                         + roles_doc(ADMIN), responses=errors(*AUTH_ERRORS, 422))
def rotate(request: Request, services: ServicesDep, _: AdminRole, body: RotateIn | None = None) -> RotateOut:
    issuer, now = services.issuer, services.now()
    old = issuer.store.active_key("issuer")
    new = issuer.rotate(now, body.retire_old_at if body else None)
    old_to = None
    if old is not None:
        old_to = next(k.entry.valid_to for k in issuer.store.keys()
                      if k.entry.role == "issuer" and k.entry.kid == old.kid)
    note(request, f"rotated issuer key to {new.kid.hex()}")
    return RotateOut(new_kid=new.kid.hex(), old_kid=old.kid.hex() if old else None, old_valid_to=old_to,
                     ledger_seq=issuer.store.ledger_seq())


@router.get("/v1/trust-list", response_class=Response, summary="Our trust list, signed (for partners' readers)",
            description="No token needed. The root-signed trust list (a COSE_Sign1 by the root key: our issuer and "
                        "ledger keys, the partners we admit and their scope), published the way EU DCC trust lists "
                        "are, so a partner's reader can verify our CP1 codes. Pin our root public key (`X-Root-Kid` "
                        "names it) out of band and check the signature with it: "
                        "`citypass.credential.trustlist.TrustList.verify` (docs/partners.md).",
            responses={200: {**CBOR_BODY, "description": "The signed trust list's bytes."}})
def trust_list(services: ServicesDep) -> Response:
    issuer = services.issuer
    root = issuer.root_key()
    trust = issuer.trust_list(services.now())
    return Response(trust.sign(root), media_type=CBOR,
                    headers={"X-Trust-Version": str(trust.version), "X-Root-Kid": root.kid.hex(),
                             "Cache-Control": "public, max-age=300"})
