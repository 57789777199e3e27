"""``/healthz`` (JSON status) and ``/metrics`` (Prometheus text) on a local port.

Served by the standard library's threading HTTP server in a daemon thread: it only reads a status
snapshot that the daemon refreshes, so it can never slow down or block a decision.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citypass.gate.metrics import GateMetrics


class HealthServer:
    """Serve ``status()`` at /healthz (200 when healthy, 503 otherwise) and metrics at /metrics."""

    def __init__(self, host: str, port: int, status: Callable[[], dict[str, Any]], metrics: GateMetrics) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    body = outer.status()
                    code = 200 if body.get("healthy") else 503
                    self._send(code, "application/json", json.dumps(body, ensure_ascii=False).encode())
                elif self.path.split("?")[0] == "/metrics":
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
