"""``/metrics``: the issuer's Prometheus text, in a registry of its own (one per app).

``citypass_issuer_requests_total{method,status}`` and ``citypass_issuer_request_seconds`` count every HTTP
answer (status as its class, ``2xx`` … ``5xx``, so a scanner's 404s cannot grow the label set);
``citypass_issuer_ledger_seq`` is read when scraped; ``citypass_build_info`` says which software runs. No token:
like ``/healthz`` it is meant for the monitoring on the issuer's own network (the unit listens on loopback).
"""

from __future__ import annotations

import platform
import time

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citypass.issuer.service import Issuer


class IssuerMetrics:
    def __init__(self, issuer: Issuer) -> None:
        from importlib.metadata import PackageNotFoundError, version

        self.registry = r = CollectorRegistry()
        self.requests = Counter("citypass_issuer_requests_total", "HTTP answers by method and status class",
                                ["method", "status"], registry=r)
        self.seconds = Histogram("citypass_issuer_request_seconds", "Time to answer a request", registry=r)
        ledger = Gauge("citypass_issuer_ledger_seq", "The ledger's sequence number", registry=r)
        ledger.set_function(lambda: float(issuer.store.ledger_seq()))
        try:
            software = version("citypass")
        except PackageNotFoundError:
            software = "unknown"
        info = Gauge("citypass_build_info", "Always 1; the labels say which software runs", ["version", "python"],
                     registry=r)
        info.labels(software, platform.python_version()).set(1)


class CountRequests:
    """ASGI middleware: one count and one duration per HTTP answer."""

    def __init__(self, app: ASGIApp, metrics: IssuerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(scope["method"], f"{message['status'] // 100}xx").inc()
                self.metrics.seconds.observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, counted)


def mount_metrics(app: FastAPI, issuer: Issuer) -> None:
    metrics = IssuerMetrics(issuer)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(CountRequests, metrics=metrics)
