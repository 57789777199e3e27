"""The operators' console, served by the issuer at ``/console/`` (docs/console.md).

Server-rendered pages (:mod:`.pages`) over the same repository and service as the API, a session kept in an
HttpOnly, SameSite=Strict cookie with CSRF tokens on every form (:mod:`.session`), and the built script and
style from ``web/console`` at ``/console/static/`` (:data:`STATIC_DIR`; no CDN).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Add the console's pages, its static files and its refusal pages to ``app``."""
    from citypass.issuer.console.pages import denied_page, router
    from citypass.issuer.console.session import ConsoleDenied

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")

    def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleDenied)
        request.state.audit = f"console refused: {exc.key}"
        return denied_page(request, exc)

    app.add_exception_handler(ConsoleDenied, denied)
