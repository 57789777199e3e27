"""``/v1/devices`` (register, list, retire, health) and ``/v1/enrollments`` (one-time provisioning).

When the app is built with a device authority (``create_app(…, authority=…)``: ``citypass issuer serve
--broker-home DIR`` plugs in the broker home's CA, see :mod:`citypass.issuer.authority`), the issuer hands
out device identity: redeeming an enrollment with a CSR returns the device certificate (CN = device id)
signed by that CA, and the device joins the broker's ACL; retiring a device revokes its certificate and
regenerates the CRL, so the broker refuses it from then on.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from citypass.credential.devices import DEVICE_ID_PATTERN, check_device_id
from citypass.credential.enrollment import (
    RELEASE_WINDOW_S,
    EnrollmentCheck,
    EnrollmentGrant,
    EnrollmentPreview,
    EnrollmentRedeem,
)
from citypass.errors import InvalidInput
from citypass.issuer.api.common import AUTH_ERRORS, ID_PATTERN, MAX_INT, MAX_TIME, Strict, errors
from citypass.issuer.api.deps import (
    FLEET_READ,
    FLEET_WRITE,
    UPLOAD,
    FleetReadRole,
    FleetWriteRole,
    Principal,
    ServicesDep,
    UploadRole,
    note,
    roles_doc,
)
from citypass.issuer.authority import AuthorityError, DeviceAuthority
from citypass.issuer.records import DEVICE_ROLE, Conflict, Device, DeviceHealth, Enrollment, NotFound
from citypass.issuer.tokens import ENROLLMENT_PREFIX, create_token, hash_secret, new_secret, parse_secret

router = APIRouter(tags=["devices and enrollments"])


def device_authority(request: Request) -> DeviceAuthority | None:
    authority: DeviceAuthority | None = getattr(request.app.state, "device_authority", None)
    return authority


DEVICE_ID = Path(pattern=ID_PATTERN, description="The device's id (its gate id).", examples=["gate-west-lake-01"])
#: A device that has not reported for this long is ``stale`` in its health.
STALE_AFTER_S = 15 * 60


class DeviceIn(Strict):
    id: str = Field(pattern=DEVICE_ID_PATTERN, max_length=64,
                    description="The gate id the device will use: also its certificate's name, MQTT user and "
                                "topic level, so 1-64 of a-z 0-9 . _ - (citypass.credential.devices).",
                    examples=["gate-west-lake-01"])
    site: int | str = Field(description="The site it stands at: its number or its name (slug).",
                            examples=[1, "west-lake"])
    direction: Literal["entry", "exit"] = "entry"
    description: str = Field("", max_length=200, examples=["north gate, lane 1"])


class DeviceOut(BaseModel):
    id: str
    site: int
    direction: str
    description: str
    status: Literal["registered", "enrolled", "retired"]
    registered_at: int
    enrolled_at: int | None
    retired_at: int | None

    @classmethod
    def of(cls, d: Device) -> DeviceOut:
        return cls(id=d.id, site=d.site, direction=d.direction, description=d.description,
                   status=d.status, registered_at=d.registered_at,
                   enrolled_at=d.enrolled_at, retired_at=d.retired_at)


@router.post("/v1/devices", status_code=201, response_model=DeviceOut, summary="Register a device",
             description=roles_doc(FLEET_WRITE), responses=errors(*AUTH_ERRORS, 409, 422))
def register(request: Request, body: DeviceIn, services: ServicesDep, _: FleetWriteRole) -> DeviceOut:
    sites = services.store.sites()
    site = next((s for s in sites if body.site in (s.number, s.name, str(s.number))), None)
    if site is None:
        known = ", ".join(f"{s.name} (#{s.number})" for s in sites)
        raise HTTPException(422, f"no site {body.site!r}: known sites are {known}")
    device = Device(body.id, site.number, body.direction, body.description, "registered", services.now())
    services.store.add_device(device)
    note(request, f"registered device {device.id} at site {device.site}")
    return DeviceOut.of(device)


@router.get("/v1/devices", response_model=list[DeviceOut], summary="List devices", description=roles_doc(FLEET_READ),
            responses=errors(*AUTH_ERRORS, 422))
def list_devices(services: ServicesDep, _: FleetReadRole,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 500,
                 offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> list[DeviceOut]:
    return [DeviceOut.of(d) for d in services.store.devices(limit=limit, offset=offset)]


@router.get("/v1/devices/{device_id}", response_model=DeviceOut, summary="Show a device",
            description=roles_doc(FLEET_READ), responses=errors(*AUTH_ERRORS, 404, 422))
def show_device(device_id: Annotated[str, DEVICE_ID], services: ServicesDep,
                _: FleetReadRole) -> DeviceOut:
    return DeviceOut.of(services.store.device(device_id))


@router.delete("/v1/devices/{device_id}", response_model=DeviceOut, summary="Retire a device",
               description="A lost or replaced device: its tokens stop working, its enrollments are void. "
                           + roles_doc(FLEET_WRITE), responses=errors(*AUTH_ERRORS, 404, 422))
def retire(request: Request, device_id: Annotated[str, DEVICE_ID], services: ServicesDep,
           _: FleetWriteRole) -> DeviceOut:
    now = services.now()
    device = services.store.retire_device(device_id, now)
    revoked = services.store.revoke_device_tokens(device_id, now)
    certs = 0
    authority = device_authority(request)
    if authority is not None:
        try:  # revokes in the CA, rewrites the CRL and the ACL, and reloads a running broker
            certs = authority.revoke(device_id)
        except AuthorityError:
            certs = 0  # never given a certificate, or revoked already
    note(request, f"retired device {device_id}, {revoked} token(s) and {certs} certificate(s) revoked")
    return DeviceOut.of(device)


class HealthIn(Strict):
    """What a gate reports, with every tap batch or on its own."""

    ledger_seq: int | None = Field(None, ge=0, le=MAX_INT, description="Its ledger's sequence number.")
    outbox_backlog: int | None = Field(None, ge=0, le=MAX_INT, description="Events not yet acknowledged.")
    clock: float | None = Field(None, ge=0, le=MAX_TIME, description="Its clock when sending (Unix s).")
    details: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=50, description="Anything else worth showing (software version, …).")


class HealthOut(BaseModel):
    device_id: str
    status: Literal["ok", "stale", "never_seen", "retired"]
    last_seen: int | None = Field(description="When the issuer last heard from it.")
    ledger_seq: int | None
    ledger_behind: int | None = Field(description="How many ledger changes it has not applied yet.")
    outbox_backlog: int | None
    clock_offset_s: float | None = Field(description="Its clock minus the issuer's, at its last report.")
    reported_at: int | None
    details: dict[str, Any]


def record_health(services: ServicesDep, device_id: str, body: HealthIn | None) -> None:
    now = services.now()
    offset = None if body is None or body.clock is None else round(body.clock - now, 3)
    services.store.record_health(DeviceHealth(
        device_id, last_seen=now, ledger_seq=body.ledger_seq if body else None,
        outbox_backlog=body.outbox_backlog if body else None, clock_offset_s=offset,
        reported_at=now if body else None, details=dict(body.details) if body else {},
    ))


def own_device(principal: Principal, device_id: str) -> None:
    if principal.role == DEVICE_ROLE and principal.device_id != device_id:
        raise HTTPException(403, f"this device token belongs to {principal.device_id!r}, not {device_id!r}")


@router.post("/v1/devices/{device_id}/health", status_code=204, summary="Report health",
             description="A gate's own report (also accepted with each tap batch). " + roles_doc(UPLOAD),
             responses=errors(*AUTH_ERRORS, 404, 422))
def report_health(request: Request, device_id: Annotated[str, DEVICE_ID], body: HealthIn, services: ServicesDep,
                  principal: UploadRole) -> None:
    own_device(principal, device_id)
    services.store.device(device_id)
    record_health(services, device_id, body)
    note(request, f"health of {device_id}")


@router.get("/v1/devices/{device_id}/health", response_model=HealthOut, summary="Device health",
            description="Last seen, ledger sequence (and how far behind), outbox backlog, clock offset. "
                        + roles_doc(FLEET_READ), responses=errors(*AUTH_ERRORS, 404, 422))
def show_health(device_id: Annotated[str, DEVICE_ID], services: ServicesDep,
                _: FleetReadRole) -> HealthOut:
    device = services.store.device(device_id)
    health = services.store.health(device_id) or DeviceHealth(device_id)
    now, seq = services.now(), services.store.ledger_seq()
    status: Literal["ok", "stale", "never_seen", "retired"]
    if device.status == "retired":
        status = "retired"
    elif health.last_seen is None:
        status = "never_seen"
    else:
        status = "ok" if now - health.last_seen <= STALE_AFTER_S else "stale"
    return HealthOut(device_id=device_id, status=status, last_seen=health.last_seen, ledger_seq=health.ledger_seq,
                     ledger_behind=None if health.ledger_seq is None else max(0, seq - health.ledger_seq),
                     outbox_backlog=health.outbox_backlog, clock_offset_s=health.clock_offset_s,
                     reported_at=health.reported_at, details=health.details)


class EnrollmentIn(Strict):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, max_length=64, examples=["gate-west-lake-01"],
                           description="A registered device (older ids that are no safe certificate name cannot "
                                       "be enrolled: register the device again under a safe id).")
    ttl_s: int = Field(3600, ge=60, le=7 * 86_400, description="How long the token may be redeemed.")


class EnrollmentOut(BaseModel):
    id: str
    device_id: str
    token: str = Field(description="The one-time secret: shown only here, stored hashed.",
                       examples=["cpe_0a1b2c3d4e5f_…"])
    expires_at: int


@router.post("/v1/enrollments", status_code=201, response_model=EnrollmentOut, summary="Create an enrollment",
             description="A one-time, expiring token a technician gives the device being provisioned. "
                         + roles_doc(FLEET_WRITE), responses=errors(*AUTH_ERRORS, 404, 409, 422))
def enroll(request: Request, body: EnrollmentIn, services: ServicesDep,
           _: FleetWriteRole) -> EnrollmentOut:
    device = services.store.device(body.device_id)
    if device.status == "retired":
        raise HTTPException(409, f"device {device.id!r} is retired")
    now = services.now()
    text, ident, digest = new_secret(ENROLLMENT_PREFIX)
    services.store.add_enrollment(Enrollment(ident, device.id, now, now + body.ttl_s), digest)
    note(request, f"enrollment {ident} for {device.id}")
    return EnrollmentOut(id=ident, device_id=device.id, token=text, expires_at=now + body.ttl_s)


def _check_csr(text: str, device_id: str) -> bytes:
    """Refuse a CSR that is bad, or for another device than the enrollment's, *before* the one-time token is
    spent or any certificate touched: a mistyped ``--gate`` must not cut off the gate of that name."""
    pem = text.encode()
    try:
        csr = x509.load_pem_x509_csr(pem)
        valid, key = csr.is_signature_valid, csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise HTTPException(422, "csr: not a PEM certificate signing request this issuer can read") from None
    if not valid:
        raise HTTPException(422, "csr: its signature does not verify")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {"secp256r1", "secp384r1"}:
        raise HTTPException(422, "csr: device keys must be EC P-256 or P-384")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        cn = check_device_id(str(names[0].value) if len(names) == 1 else "", "common name")
    except InvalidInput as exc:
        raise HTTPException(422, f"csr: {exc}") from None
    if cn != device_id:
        raise HTTPException(422, f"csr: its common name {cn!r} is not the device this enrollment is for "
                                 f"({device_id!r}); nothing was changed and the token is still valid")
    return pem


def _pending(services: ServicesDep, token: str) -> tuple[str, Enrollment]:
    """The enrollment ``token`` names, still redeemable (401 unknown, 410 used, expired or retired)."""
    ident = parse_secret(token, ENROLLMENT_PREFIX)
    if ident is None:
        raise HTTPException(401, "not an enrollment token")
    try:
        return ident, services.store.enrollment(ident, hash_secret(token), services.now())
    except NotFound:
        raise HTTPException(401, "unknown enrollment token") from None
    except Conflict as exc:
        raise HTTPException(410, str(exc)) from None


@router.post("/v1/enrollments/check", response_model=EnrollmentPreview, summary="Check an enrollment token",
             description="What redeeming the token would give (device, site, root key id, whether certificates "
                         "are signed), without spending it: a device checks all of it before it redeems. No "
                         "bearer token: the enrollment token is the credential.",
             responses=errors(401, 422) | {410: {"description": "Used already, expired, or the device was retired."}})
def check_enrollment(request: Request, body: EnrollmentCheck, services: ServicesDep) -> EnrollmentPreview:
    ident, pending = _pending(services, body.token)
    request.state.actor = f"enrollment:{ident}"
    device = services.store.device(pending.device_id)
    site = next((s for s in services.store.sites() if s.number == device.site), None)
    authority = device_authority(request)
    return EnrollmentPreview(device_id=device.id, site=device.site, site_name=site.name if site else None,
                             direction=device.direction, expires_at=pending.expires_at,
                             root_kid=services.issuer.root_key().kid.hex(),
                             signs_certificates=authority is not None,
                             broker=authority.broker if authority is not None else None)


@router.post("/v1/enrollments/release", response_model=DeviceOut, summary="Give an enrollment back",
             description="Called by a device that redeemed an enrollment and then found a problem on its side "
                         f"(within {RELEASE_WINDOW_S // 60} minutes): its new API token and certificate are "
                         "revoked, the device is `registered` again, and the same enrollment token may be "
                         "redeemed once more until it expires. " + roles_doc(UPLOAD),
             responses=errors(*AUTH_ERRORS, 404, 409, 422))
def release_enrollment(request: Request, body: EnrollmentCheck, services: ServicesDep,
                       principal: UploadRole) -> DeviceOut:
    ident = parse_secret(body.token, ENROLLMENT_PREFIX)
    if ident is None or principal.device_id is None:
        raise HTTPException(404, "unknown enrollment token")
    now = services.now()
    try:
        services.store.release_enrollment(ident, hash_secret(body.token), principal.device_id, now, RELEASE_WINDOW_S)
    except NotFound:
        raise HTTPException(404, "unknown enrollment token (or another device's)") from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    revoked = services.store.revoke_device_tokens(principal.device_id, now)
    authority = device_authority(request)
    certs = 0
    if authority is not None and authority.has_certificate(principal.device_id):
        try:
            certs = authority.revoke(principal.device_id)
        except AuthorityError:
            certs = 0
    note(request, f"device {principal.device_id} gave enrollment {ident} back: {revoked} token(s) and "
                  f"{certs} certificate(s) revoked")
    return DeviceOut.of(services.store.device(principal.device_id))


@router.post("/v1/enrollments/redeem", status_code=201, response_model=EnrollmentGrant, summary="Redeem an enrollment",
             description="Called by the device being provisioned, with no bearer token: the enrollment token is "
                         "the credential. Works once, before it expires (410 after).",
             responses=errors(401, 422) | {410: {"description": "Used already, expired, or the device was retired."}})
def redeem(request: Request, body: EnrollmentRedeem, services: ServicesDep) -> EnrollmentGrant:
    request.state.actor = f"enrollment:{parse_secret(body.token, ENROLLMENT_PREFIX) or '?'}"
    authority = device_authority(request)
    # who the token is for, checked (secret, expiry, retirement) without spending it
    ident, pending = _pending(services, body.token)
    now = services.now()
    csr_pem = None
    if body.csr is not None:
        if authority is None:
            raise HTTPException(503, "this issuer signs no device certificates: serve it with --broker-home")
        csr_pem = _check_csr(body.csr, pending.device_id)
    try:
        enrollment = services.store.redeem_enrollment(ident, hash_secret(body.token), now)
    except NotFound:
        raise HTTPException(401, "unknown enrollment token") from None
    except Conflict as exc:
        raise HTTPException(410, str(exc)) from None
    device = services.store.device(enrollment.device_id)
    cert_pem = ca_pem = None
    if csr_pem is not None and authority is not None:
        try:
            if authority.has_certificate(device.id):  # re-enrollment: the old key may be lost or copied
                authority.revoke(device.id)
            # Also adds the device to the broker ACL and reloads a running broker.
            cert_pem = authority.certify(device.id, device.site, csr_pem)
        except AuthorityError as exc:
            raise HTTPException(422, f"csr: {exc} (the enrollment token is used up: create a new one)") from None
        ca_pem = authority.ca_certificate()
    # Re-enrollment: the device's earlier API tokens die with its earlier key, in the transaction that
    # makes the new one (a copied or lost device home must not keep uploading).
    issued = create_token(services.store, DEVICE_ROLE, now, label=f"enrollment {ident}", device_id=device.id,
                          replace_device_tokens=True)
    site = next((s for s in services.store.sites() if s.number == device.site), None)
    note(request, f"device {device.id} enrolled with token {issued.record.id}"
                  + (f", {issued.replaced} earlier token(s) revoked" if issued.replaced else "")
                  + (", certificate signed" if cert_pem else ""))
    return EnrollmentGrant(device_id=device.id, site=device.site, direction=device.direction, api_token=issued.text,
                     ledger_seq=services.store.ledger_seq(),
                     root_public_key=services.issuer.root_key().public.pem().decode(),
                     certificate=cert_pem, ca_certificate=ca_pem,
                     broker=authority.broker if authority is not None and cert_pem else None,
                     snapshot=base64.b64encode(services.issuer.export(now)).decode(),
                     site_settings=site.model_dump(mode="json") if site is not None else {})
