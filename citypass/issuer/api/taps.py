"""``POST /v1/taps``: a gate's outbox events in batches, ingested exactly once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from citypass.issuer.api.common import AUTH_ERRORS, ID_PATTERN, MAX_TIME, Strict, errors
from citypass.issuer.api.deps import (
    UPLOAD,
    ServicesDep,
    UploadRole,
    note,
    roles_doc,
)
from citypass.issuer.api.fleet import HealthIn, record_health
from citypass.issuer.ingest import ingest
from citypass.issuer.records import DEVICE_ROLE

router = APIRouter(tags=["taps"])

#: Most events in one upload; a gate sends 500 at a time.
MAX_BATCH = 1000
MAX_BODY_CHARS = 16_384


class EventIn(Strict):
    """One outbox row (gate/ledger/outbox.py) as the gate holds it."""

    event_id: str = Field(pattern=ID_PATTERN, description="The event's stable id (UUIDv7).",
                          examples=["0190f1c2-7a3b-7c4d-8e5f-60718293a4b5"])
    tap_id: str = Field(pattern=ID_PATTERN, description="The tap the event is about.",
                        examples=["0190f1c2-7a3b-7000-8000-000000000001"])
    kind: Literal["tap", "annul", "passage", "stage"]
    body: dict[str, Any] | Annotated[str, Field(max_length=MAX_BODY_CHARS)] = Field(
        description="The row's body: the JSON object, or its text exactly as stored on the gate.",
        examples=[{"gate_id": "gate-west-lake-01", "site": 1, "direction": "entry", "decision": "allow",
                   "reason": None, "flags": [], "credential_id": "8f3a61c2d4e5f607", "product": 1, "persons": 1,
                   "kind": "entry", "presentation_id": None, "at": 1_800_000_000, "stages": {}}])
    created_at: int = Field(0, ge=0, le=MAX_TIME, description="When the gate recorded it (Unix s).")


class TapBatchIn(Strict):
    device_id: str | None = Field(None, pattern=ID_PATTERN, description=(
        "The uploading gate. Implied for a device token; an admin may name one (or none)."))
    events: list[EventIn] = Field(max_length=MAX_BATCH, description=f"At most {MAX_BATCH} events.")
    health: HealthIn | None = Field(None, description="The gate's health, reported with the batch.")


class QuarantinedOut(BaseModel):
    event_id: str
    error: str


class TapBatchOut(BaseModel):
    acknowledged: list[str] = Field(description="Event ids now held by the issuer: mark exactly these uploaded.")
    new_taps: int = Field(description="Taps stored for the first time by this call.")
    duplicates: int = Field(description="Events the issuer already had (acknowledged again, changed nothing).")
    quarantined: list[QuarantinedOut] = Field(description="Invalid events, kept aside with the reason and "
                                                          "acknowledged so the gate does not resend them forever.")


@router.post("/v1/taps", response_model=TapBatchOut, summary="Upload taps",
             description="Idempotent by event id and tap id: resending a batch (a lost acknowledgement), or "
                         "sending events out of order (an annulment before its tap), stores everything once. "
                         + roles_doc(UPLOAD), responses=errors(*AUTH_ERRORS, 404, 413, 422))
def upload(request: Request, batch: TapBatchIn, services: ServicesDep,
           principal: UploadRole) -> TapBatchOut:
    device_id = batch.device_id
    if principal.role == DEVICE_ROLE:
        if device_id is not None and device_id != principal.device_id:
            raise HTTPException(403, f"this device token belongs to {principal.device_id!r}, not {device_id!r}")
        device_id = principal.device_id
    store = services.store
    if device_id is not None:
        store.device(device_id)  # NotFound → 404: taps are accepted from registered devices only
    result = ingest(store, batch.events, device_id, services.now())
    if device_id is not None:
        record_health(services, device_id, batch.health)
    note(request, f"{len(result.acknowledged)} event(s) from {device_id or '-'}: {result.new_taps} new tap(s), "
                  f"{result.duplicates} repeated, {len(result.quarantined)} quarantined")
    return TapBatchOut(acknowledged=list(result.acknowledged), new_taps=result.new_taps, duplicates=result.duplicates,
                       quarantined=[QuarantinedOut(event_id=q.event_id, error=q.error) for q in result.quarantined])
