"""``/healthz`` (JSON status) and ``/metrics`` (Prometheus text) on a local port, and the lane's screen.

Served by the standard library's threading HTTP server in a daemon thread: it only reads a status
snapshot that the daemon refreshes, so it can never slow down or block a decision. With a screen endpoint
(:mod:`citypass.gate.screen.http`), ``/screen`` and its event stream are served on the same address and port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citypass.gate.metrics import GateMetrics


class PathEndpoint(Protocol):
    """More pages on the health server (the lane's screen)."""

    def handles(self, path: str) -> bool: ...
    def serve(self, handler: BaseHTTPRequestHandler, path: str) -> None: ...


class HealthServer:
    """Serve ``status()`` at /healthz (200 when healthy, 503 otherwise), metrics at /metrics, and whatever
    ``screen`` handles."""

    def __init__(self, host: str, port: int, status: Callable[[], dict[str, Any]], metrics: GateMetrics,
                 screen: PathEndpoint | None = None) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if outer.screen is not None and outer.screen.handles(path):
                    outer.screen.serve(self, path)
                elif path == "/healthz":
                    body = outer.status()
                    code = 200 if body.get("healthy") else 503
                    self._send(code, "application/json", json.dumps(body, ensure_ascii=False).encode())
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(outer.metrics.registry))
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # request logs would drown the structured event log

        self.status = status
        self.metrics = metrics
        self.screen = screen
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)
