"""What every route depends on: the service, the clock, and the caller's token and role.

``Authorization: Bearer cpt_…`` is checked on every ``/v1`` call: no token or an unknown, malformed or
revoked one is **401**; a valid token whose role may not call the endpoint is **403**. ``admin`` may
call everything. The caller is kept on the request for the audit log.

Role groups (``admin`` is implied in each):

=====================  ===========================================================
``ISSUING``            issuer — passes, sites, venues, slots, reservations
``CATALOG``            issuer, operator, technician, auditor — read sites, venues, slots
``REVOKING``           issuer, operator — revoke credentials and holders
``READ_REVOCATIONS``   issuer, operator, auditor
``LEDGER``             issuer, operator, technician, auditor, device — snapshot, deltas
``FLEET_WRITE``        technician — register/retire devices, create enrollments
``FLEET_READ``         operator, technician, auditor — devices and their health
``UPLOAD``             device — taps and health of its own device
``REPORTS``            operator, auditor — incidents, occupancy, journeys, fares
``HOLDS``              issuer, operator, auditor — held and expired reservations
``FARES_WRITE``        operator
``AUDIT``              auditor — the audit log, key list
``ADMIN``              admin only — key rotation, lifting revocations
``SITES_WRITE``        issuer, operator — edit sites (hours, capacity, titles, anti-passback)
``GROUPS_WRITE``       issuer, operator — register tour groups, set the group thresholds
``GROUPS_READ``        issuer, operator, auditor — tour groups, where they are
``CONTROL``            operator — the console, acknowledging incidents
=====================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from citypass.issuer.records import DEVICE_ROLE
from citypass.issuer.repository import IssuerRepository
from citypass.issuer.service import Issuer
from citypass.issuer.tokens import authenticate

Clock = Callable[[], int]

ISSUING = ("issuer",)
CATALOG = ("issuer", "operator", "technician", "auditor")
REVOKING = ("issuer", "operator")
READ_REVOCATIONS = ("issuer", "operator", "auditor")
LEDGER = ("issuer", "operator", "technician", "auditor", DEVICE_ROLE)
FLEET_WRITE = ("technician",)
FLEET_READ = ("operator", "technician", "auditor")
UPLOAD = (DEVICE_ROLE,)
REPORTS = ("operator", "auditor")
HOLDS = ("issuer", "operator", "auditor")
FARES_WRITE = ("operator",)
AUDIT = ("auditor",)
ADMIN: tuple[str, ...] = ()
SITES_WRITE = ("issuer", "operator")
GROUPS_WRITE = ("issuer", "operator")
GROUPS_READ = ("issuer", "operator", "auditor")
CONTROL = ("operator",)

bearer = HTTPBearer(auto_error=False, scheme_name="ApiToken", bearerFormat="cpt_<id>_<secret>",
                    description="An API token from `citypass issuer token create` (or, for a device, from "
                                "redeeming an enrollment).")


@dataclass
class Services:
    """What the app was built with (kept on ``app.state.services``)."""

    issuer: Issuer
    clock: Clock

    @property
    def store(self) -> IssuerRepository:
        return self.issuer.store

    def now(self) -> int:
        return int(self.clock())


@dataclass(frozen=True)
class Principal:
    """The caller: a token id, its role, and the device it is bound to (device tokens only)."""

    token_id: str
    role: str
    device_id: str | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def roles_doc(roles: tuple[str, ...]) -> str:
    return "Roles: " + ", ".join(("admin", *roles)) + "."


def require(roles: tuple[str, ...]) -> Any:
    """A dependency that authenticates the caller and checks that its role is ``admin`` or in ``roles``."""

    def check(request: Request, services: ServicesDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        if credentials is None:
            raise HTTPException(401, "missing bearer token (Authorization: Bearer cpt_…)",
                                headers={"WWW-Authenticate": "Bearer"})
        record = authenticate(services.store, credentials.credentials)
        if record is None:
            raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
        principal = Principal(record.id, record.role, record.device_id)
        request.state.principal = principal
        if record.role != "admin" and record.role not in roles:
            allowed = ", ".join(("admin", *roles))
            raise HTTPException(403, f"role {record.role!r} may not call this endpoint (allowed: {allowed})")
        return principal

    return Depends(check)


IssuingRole = Annotated[Principal, require(ISSUING)]
CatalogRole = Annotated[Principal, require(CATALOG)]
RevokingRole = Annotated[Principal, require(REVOKING)]
ReadRevocationsRole = Annotated[Principal, require(READ_REVOCATIONS)]
LedgerRole = Annotated[Principal, require(LEDGER)]
FleetWriteRole = Annotated[Principal, require(FLEET_WRITE)]
FleetReadRole = Annotated[Principal, require(FLEET_READ)]
UploadRole = Annotated[Principal, require(UPLOAD)]
ReportsRole = Annotated[Principal, require(REPORTS)]
HoldsRole = Annotated[Principal, require(HOLDS)]
FaresWriteRole = Annotated[Principal, require(FARES_WRITE)]
AuditRole = Annotated[Principal, require(AUDIT)]
KeysRole = Annotated[Principal, require(("issuer", *AUDIT))]
AdminRole = Annotated[Principal, require(ADMIN)]
SitesWriteRole = Annotated[Principal, require(SITES_WRITE)]
GroupsWriteRole = Annotated[Principal, require(GROUPS_WRITE)]
GroupsReadRole = Annotated[Principal, require(GROUPS_READ)]
ControlRole = Annotated[Principal, require(CONTROL)]


def note(request: Request, detail: str) -> None:
    """Say what a mutating call did, for its audit log row."""
    request.state.audit = detail
