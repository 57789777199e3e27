"""Who is using the console: a token given once at the login form, kept in a cookie, checked on every request.

* The cookie (``cp_console``) holds the API token itself, ``HttpOnly`` (no script can read it),
  ``SameSite=Strict`` (no other site's page can make the browser send it), ``Path=/console``, and ``Secure``
  when the console is served over HTTPS. Every request authenticates it like a bearer token
  (:func:`citypass.issuer.tokens.authenticate`), so a revoked token is logged out at once. Only the
  ``operator`` role (and ``admin``) may use the console — the same roles as the API's ``CONTROL`` group.
* Every form carries a CSRF token: an HMAC of the session's token id under a key kept in the store
  (``console_csrf_key`` in meta), checked in constant time on every POST, together with the ``Origin``
  header when the browser sends one. A form posted from another site is refused (403) even if a browser
  sent the cookie along. The login form, before there is a session, uses a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from citypass.errors import CityPassError
from citypass.issuer.api.deps import CONTROL, Principal, Services
from citypass.issuer.tokens import authenticate

COOKIE = "cp_console"
LOGIN_COOKIE = "cp_console_login"
LANG_COOKIE = "cp_console_lang"
ROLES = ("admin", *CONTROL)


class ConsoleDenied(CityPassError):
    """The request may not do what it asks (no session, wrong role, bad CSRF token): answered with a page."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    lang: str


def _csrf_key(services: Services) -> bytes:
    store = services.store
    key = store.get_meta("console_csrf_key")
    if not key:
        store.set_meta("console_csrf_key", os.urandom(32).hex())
        key = store.get_meta("console_csrf_key") or ""
    return bytes.fromhex(key)


def csrf_for(services: Services, token_id: str) -> str:
    return hmac.new(_csrf_key(services), f"console:{token_id}".encode(), hashlib.sha256).hexdigest()[:40]


def lang_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in ("zh", "en"):
        return chosen
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "zh"


def current(request: Request, services: Services) -> Session | None:
    """The session of this request, or None (no cookie, an unknown or revoked token, or a role that may not)."""
    text = request.cookies.get(COOKIE)
    if not text:
        return None
    record = authenticate(services.store, text)
    if record is None:
        return None
    if record.role not in ROLES:
        raise ConsoleDenied(403, "forbidden")
    principal = Principal(record.id, record.role, record.device_id)
    request.state.principal = principal  # the audit log's actor for console POSTs
    return Session(principal, csrf_for(services, record.id), lang_of(request))


def check_origin(request: Request) -> None:
    """A browser names the page a POST came from; it must be this console's own origin."""
    origin = request.headers.get("origin")
    if origin is None or (origin == "null" and request.headers.get("sec-fetch-site") == "same-origin"):
        return
    host = request.headers.get("host", "")
    if origin not in (f"http://{host}", f"https://{host}"):
        raise ConsoleDenied(403, "csrf")


def check_csrf(request: Request, session: Session, given: str | None) -> None:
    check_origin(request)
    if not given or not hmac.compare_digest(given, session.csrf):
        raise ConsoleDenied(403, "csrf")


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/console",
                        secure=request.url.scheme == "https")


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
