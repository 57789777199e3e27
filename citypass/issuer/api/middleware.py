"""Three pure ASGI middlewares: a request-body size cap, the audit log of every mutating call, and the last
line of defence against a bug.

The cap reads the body before the app does (at most ``limit`` bytes, ``Content-Length`` or chunked)
and answers **413** past it, so a hostile client cannot make the service buffer gigabytes. The audit
middleware writes one row per POST/PUT/PATCH/DELETE after the response status is known — who (token
id and role, set by :func:`citypass.issuer.api.deps.require`), what (method, path, status and the route's own
note), when — including calls that were refused, which are the ones an auditor most wants to see.

:class:`InternalErrors` answers an exception that no handler knew (a bug, not the caller's mistake) with a
JSON 500 and logs its traceback once, on the ``citypass.issuer.api`` logger.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypass.issuer.repository import AccessRepository

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
log = logging.getLogger("citypass.issuer.api")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _too_large(send, self.limit)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(send, self.limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    await json_response(send, 413, {"detail": f"request body larger than {limit} bytes"})


async def json_response(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Answer with a JSON body from a middleware, before the app has seen the request."""
    payload = json.dumps(body).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": payload})


class InternalErrors:
    """A 500 with a JSON body for an exception no handler mapped, and its traceback in the log (once: it is
    not re-raised, so the server does not log it again). An exception after the response started cannot be
    answered any more; it is re-raised for the server to close the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method", "?"), str(scope.get("path", ""))[:200])
            if started:
                raise
            await json_response(send, 500, {"detail": "internal error: the issuer logged it; please report it"})


class AuditLog:
    def __init__(self, app: ASGIApp, repository: AccessRepository, clock: Callable[[], int]) -> None:
        self.app = app
        self.repository = repository
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            principal = state.get("principal")
            with anyio.CancelScope(shield=True):  # a client that hung up is still audited
                try:
                    await anyio.to_thread.run_sync(lambda: self.repository.write_audit(
                        at=int(self.clock()), actor=getattr(principal, "token_id", None) or state.get("actor", "-"),
                        role=getattr(principal, "role", "-"), method=scope["method"], path=scope.get("path", ""),
                        status=status, detail=str(state.get("audit", "")),
                    ))
                except Exception as exc:  # a full disk: the answer has gone out already and must not be reset
                    log.error("audit row not written for %s %s (%d): %s", scope["method"],
                              str(scope.get("path", ""))[:200], status, str(exc)[:300])
