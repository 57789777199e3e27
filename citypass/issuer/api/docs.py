"""``/docs`` that works with no internet: Swagger UI served by the issuer itself.

FastAPI's default ``/docs`` page loads Swagger UI's script and style from a CDN (and ``/redoc`` likewise), so
an operator on the control room's closed network saw a blank page. The issuer serves the assets from the
``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads the OpenAPI 3.1 this API publishes) at
``/docs/assets/``, and ``/docs`` names only those; ``/redoc`` is off.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def mount_docs(app: FastAPI) -> None:
    """``/docs`` and its assets (create the app with ``docs_url=None, redoc_url=None``)."""
    from swagger_ui_bundle import swagger_ui_path  # the issuer extra; imported when the app is built

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} — API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")
