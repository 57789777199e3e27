"""The issuer's HTTP API: :func:`create_app` builds the FastAPI app from an issuer and a clock.

    >>> from citypass.issuer.api import create_app                               # doctest: +SKIP
    >>> app = create_app(Issuer.open(IssuerHome(Path("/srv/issuer"))))  # doctest: +SKIP
    >>> uvicorn.run(app, port=8443)                                     # doctest: +SKIP

``citypass issuer serve`` does exactly that. Everything the app needs comes in as arguments — the
:class:`~citypass.issuer.service.Issuer` (whose repository may be any
:class:`~citypass.issuer.repository.IssuerRepository`) and a clock — so tests serve it for real with a fake
clock, and nothing reads the environment. Errors map to statuses in one place (:func:`_handlers`):
the project's input errors 422, unknown 404, conflicts 409, unavailable 503, auth 401/403; a request body over
``max_body`` is 413; any other exception — a bug — is a 500 with a JSON body, and its traceback is logged
(:class:`~citypass.issuer.api.middleware.InternalErrors`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from citypass.credential.timefmt import utc_now
from citypass.errors import Conflict, InvalidInput, NotFound, Unavailable
from citypass.issuer import console
from citypass.issuer.api import fleet, groups, ledger, passes, reports, taps, venues, wallet
from citypass.issuer.api.common import ErrorOut, FieldError
from citypass.issuer.api.deps import (
    Clock,
    Services,
)
from citypass.issuer.api.docs import mount_docs
from citypass.issuer.api.limits import Limits, RateLimits
from citypass.issuer.api.metrics import mount_metrics
from citypass.issuer.api.middleware import AuditLog, BodyLimit, InternalErrors
from citypass.issuer.authority import DeviceAuthority
from citypass.issuer.records import StorageFull
from citypass.issuer.service import Issuer

DESCRIPTION = """\
The City Pass issuer: signs entitlements, hands out museum reservations without overbooking, revokes
lost passes, registers and enrolls devices, publishes the signed ledger (snapshot and deltas) that gates
sync, takes in every tap exactly once, and reports incidents, occupancy and journeys.

Authenticate with `Authorization: Bearer <token>` (`citypass issuer token create`). Every endpoint says
which roles may call it; `admin` may call all. Every mutating call is written to the audit log.
Times are Unix seconds; credential ids are hex. See docs/issuer.md for curl examples.
"""

#: Largest request body accepted (a batch of 1000 tap events is about 0.5 MB).
MAX_BODY = 2 * 1024 * 1024
#: What a 503 or 507 tells the caller to wait before trying again (seconds).
RETRY_AFTER_S = 30


class HealthzOut(BaseModel):
    status: str = Field(examples=["ok"])
    ledger_seq: int
    time: int = Field(description="The issuer's clock (Unix s): gates compare theirs with it.")


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare is a 422, like an unknown body field: ``?limt=5``
    silently ignored would return 100 rows to someone who asked for 5. So is one given twice."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError([{"loc": ("query", name), "msg": "unknown query parameter",
                                       "type": "extra_forbidden"} for name in unknown[:10]])
    # No parameter takes a list: ?limit=5&limit=500 would otherwise silently mean whichever came last.
    repeated = sorted(name for name in set(request.query_params) if len(request.query_params.getlist(name)) > 1)
    if repeated:
        raise RequestValidationError([{"loc": ("query", name), "msg": "given more than once",
                                       "type": "value_error"} for name in repeated[:10]])


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def create_app(issuer: Issuer, *, clock: Clock = utc_now, max_body: int = MAX_BODY,
               authority: DeviceAuthority | None = None, limits: RateLimits | None = RateLimits(),
               wallet_url: str | None = None) -> FastAPI:
    """The API app over ``issuer`` (its home's keys, its repository), with ``clock`` giving Unix seconds.

    ``authority`` (:mod:`citypass.issuer.authority`) makes the issuer hand out device identity: an enrollment
    redeemed with a CSR gets a certificate signed by it (and the device joins the broker's ACL); a retired
    device's certificate is revoked. Without one, a redeem with a CSR is a 503. ``limits``
    (:mod:`citypass.issuer.api.limits`): request rates per token and address, reports admitted a few at a
    time; None turns them off (a benchmark measuring the service itself). ``wallet_url`` is the wallet
    page's public address for claim links (default: the request's own origin + ``/wallet/``)."""
    app = FastAPI(title="City Pass issuer", version="1", description=DESCRIPTION,
                  dependencies=[Depends(refuse_unknown_query)], docs_url=None, redoc_url=None,
                  openapi_tags=[{"name": t} for t in (
                      "service", "passes and revocations", "sites, venues and reservations", "ledger and keys",
                      "devices and enrollments", "taps", "reports", "tour groups")])
    services = Services(issuer, clock)
    app.state.services = services
    app.state.device_authority = authority
    app.state.wallet_url = wallet_url
    for module in (passes, venues, ledger, fleet, taps, reports, groups):
        app.include_router(module.router)
    wallet.mount(app)  # /v1/wallet/claims and the wallet page at /wallet/
    mount_docs(app)  # /docs with Swagger UI served from the package, no CDN
    mount_metrics(app, issuer)  # /metrics for Prometheus
    console.mount(app)  # the operators' pages at /console/

    @app.get("/healthz", response_model=HealthzOut, tags=["service"], summary="Liveness",
             description="No token needed. Answers when the store is readable; never rate-limited.")
    async def healthz() -> HealthzOut:
        # On the event loop, not a worker thread: it must answer while every worker computes reports. One
        # indexed read of a WAL database, which never waits for a writer.
        return HealthzOut(status="ok", ledger_seq=issuer.store.ledger_seq(), time=int(clock()))

    _handlers(app)
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(InternalErrors)  # inside the audit log, so that a 500 is audited too
    app.add_middleware(AuditLog, repository=issuer.store, clock=clock)  # sees 413s too
    if limits is not None:
        app.add_middleware(Limits, limits=limits)  # outermost: a refused flood costs no audit row
    return app


def _handlers(app: FastAPI) -> None:
    def handler(status: int) -> Callable[[Request, Exception], JSONResponse]:
        def respond(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc) or type(exc).__name__}, status_code=status)
        return respond

    # Only the project's own errors become 4xx/503 answers: a ValueError or KeyError from a bug must not look
    # like the caller's mistake. Anything else is a 500 whose traceback is logged (InternalErrors).
    for exc_type, status in ((InvalidInput, 422), (NotFound, 404), (Conflict, 409)):
        app.add_exception_handler(exc_type, handler(status))

    def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A full disk is 507 Insufficient Storage; anything else unavailable 503. Both say when to try again,
        # and nothing was stored: a gate keeps its outbox and sends it again.
        status = 507 if isinstance(exc, StorageFull) else 503
        return JSONResponse({"detail": str(exc) or type(exc).__name__}, status_code=status,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    app.add_exception_handler(Unavailable, unavailable)

    def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [FieldError(loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                               msg=str(e.get("msg", "invalid")), type=str(e.get("type", "value_error")))
                    for e in exc.errors()[:50]]
        detail = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems[:5]) or "invalid request"
        body = ErrorOut(detail=detail, errors=problems)
        return JSONResponse(body.model_dump(mode="json"), status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)

    def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status, detail = exc.status_code, str(exc.detail)
        if status == 400:  # FastAPI's "There was an error parsing the body": bad input is 422 here
            status, detail = 422, "the request body is not valid JSON (UTF-8)"
        return JSONResponse({"detail": detail}, status_code=status, headers=exc.headers)

    app.add_exception_handler(StarletteHTTPException, http_error)

    def unicode(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "text must be valid Unicode (no lone surrogates)"}, status_code=422)

    app.add_exception_handler(UnicodeError, unicode)
