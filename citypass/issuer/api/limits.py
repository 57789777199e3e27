"""Bounded work for anyone who can reach the issuer: request rates per token and per client address, report
computations admitted a few at a time, request lines of a sane length, and log lines of a bounded one.

:class:`TokenBuckets` is the classic token bucket, one per key (a token id, a client address): a key may spend
``burst`` requests at once and ``rate`` per second after that. :class:`Limits` is the ASGI middleware that applies
them before the app sees a request — **429** with ``Retry-After`` past a bucket, **414** for a request line longer
than :data:`MAX_TARGET` — and admits at most ``report_slots`` report requests (``/v1/incidents``, occupancy,
journeys, activity, the audit log: each may read a million taps) at once; the rest wait in line, and past
``report_queue`` waiting get **503** with ``Retry-After``. ``/healthz`` is never limited or queued, and is served
on the event loop itself (no worker thread), so it answers in milliseconds while reports run.

    >>> now = [0.0]
    >>> buckets = TokenBuckets(rate=1.0, burst=2, clock=lambda: now[0])
    >>> [buckets.take("a") for _ in range(3)]    # two at once, then wait a second
    [0.0, 0.0, 1.0]
    >>> now[0] = 1.0; buckets.take("a"), buckets.take("b")
    (0.0, 0.0)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from citypass.issuer.api.middleware import json_response
from citypass.issuer.tokens import TOKEN_PREFIX, parse_secret

#: Longest request target (path and query) accepted; the longest real one is well under 300 bytes.
MAX_TARGET = 2048
#: Longest text argument kept in a log line (a 60 KB path must not become 60 KB of log per request).
MAX_LOGGED = 300
REPORT_PREFIXES = ("/v1/incidents", "/v1/journeys", "/v1/activity", "/v1/audit")


class TokenBuckets:
    """One token bucket per key, at most ``max_keys`` of them (the least recently used are forgotten: a
    forgotten key starts again with a full bucket, which is what an idle one would have anyway)."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 50_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst, self.clock, self.max_keys = rate, burst, clock, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one request for ``key``: 0.0 if allowed, else the seconds until one would be."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 if not wait else tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True)
class RateLimits:
    """The limits :class:`Limits` applies (per second, and the burst allowed at once)."""

    per_address: float = 200.0  # many gates behind one NAT, or a TLS proxy that forwards no client address
    per_address_burst: int = 1000
    per_token: float = 50.0
    per_token_burst: int = 200
    reports_per_token: float = 2.0  # a console refreshing every site's occupancy at once is one burst
    reports_burst: int = 30
    reports_per_address: float = 10.0  # an operations centre's consoles may share one address
    reports_per_address_burst: int = 100
    report_slots: int = 2
    report_queue: int = 8


class Limits:
    """The ASGI middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.limits = app, limits
        self.addresses = TokenBuckets(limits.per_address, limits.per_address_burst, clock=clock)
        self.tokens = TokenBuckets(limits.per_token, limits.per_token_burst, clock=clock)
        self.report_tokens = TokenBuckets(limits.reports_per_token, limits.reports_burst, clock=clock)
        self.report_addresses = TokenBuckets(limits.reports_per_address, limits.reports_per_address_burst, clock=clock)
        self._slots: anyio.Semaphore | None = None
        self._waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path == "/healthz":
            await self.app(scope, receive, send)
            return
        if len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) > MAX_TARGET:
            await json_response(send, 414, {"detail": f"request target longer than {MAX_TARGET} bytes"})
            return
        address = (scope.get("client") or ("-", 0))[0]
        token = _token_id(scope)
        report = path.startswith(REPORT_PREFIXES) or (path.startswith("/v1/sites/") and path.endswith("/occupancy"))
        waits = [self.addresses.take(address)]
        if token is not None:
            waits.append(self.tokens.take(token))
        if report:
            waits += [self.report_addresses.take(address)] + ([self.report_tokens.take(token)] if token else [])
        wait = max(waits)
        if wait > 0:
            await json_response(send, 429, {"detail": "too many requests: slow down"},
                                {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        if not report:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = anyio.Semaphore(self.limits.report_slots)
        if self._waiting >= self.limits.report_queue:
            await json_response(send, 503, {"detail": "too many reports being computed: try again shortly"},
                                {"Retry-After": "2"})
            return
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()


def _token_id(scope: Scope) -> str | None:
    """The token id in an ``Authorization: Bearer cpt_<id>_…`` header (not yet authenticated: for limiting)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            return parse_secret(text[7:].strip(), TOKEN_PREFIX) if text[:7].lower() == "bearer " else None
    return None


class CapLength(logging.Filter):
    """Cut every text argument of a log record (and its message) to :data:`MAX_LOGGED` characters.

    Installed on the server's log handlers: uvicorn's access line carries the request path as the client sent
    it, so without this any anonymous client writes as much log as it likes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and len(record.msg) > MAX_LOGGED * 4:
            record.msg = record.msg[:MAX_LOGGED * 4] + "…"
        if isinstance(record.args, tuple):
            record.args = tuple(_cap(a) for a in record.args)
        return True


def _cap(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_LOGGED:
        return f"{value[:MAX_LOGGED]}…[{len(value)} chars]"
    return value
