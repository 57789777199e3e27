"""``/screen`` on the health server: the page, its assets, and the ``/screen/events`` stream.

The health server (:class:`citypass.gate.health.HealthServer`) gives every request its own thread, so an event
stream held open by a kiosk browser costs one sleeping thread and never touches the decision loop. Only GET is
served, only files of the built page, and nothing a browser sends is read beyond the path.

Small events are written the moment they exist: the socket has Nagle's algorithm off (``TCP_NODELAY``), which
would otherwise hold a second small write back until the browser acknowledged the first — tens of
milliseconds, a large part of the screen's 100 ms budget.
"""

from __future__ import annotations

import mimetypes
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from citypass.gate.screen import STATIC_DIR
from citypass.gate.screen.hub import ScreenHub

PREFIX = "/screen"
#: The page loads only what it carries (nothing from a CDN: a gate is often offline).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'")


class ScreenEndpoint:
    """Answers the ``/screen`` paths of the health server from ``hub`` and the built page in ``static``."""

    def __init__(self, hub: ScreenHub, static: Path = STATIC_DIR) -> None:
        self.hub = hub
        self.static = static.resolve()

    def handles(self, path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def serve(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if path == PREFIX + "/events":
            self._events(handler)
        elif path in (PREFIX, PREFIX + "/"):
            self._file(handler, self.static / "index.html")
        else:
            target = (self.static / path[len(PREFIX) + 1 :]).resolve()
            if self.static not in target.parents or not target.is_file():
                _send(handler, 404, "text/plain", b"not found\n")
                return
            self._file(handler, target)

    def _file(self, handler: BaseHTTPRequestHandler, path: Path) -> None:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        _send(handler, 200, ctype, path.read_bytes(), cache="no-cache")

    def _events(self, handler: BaseHTTPRequestHandler) -> None:
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("X-Accel-Buffering", "no")  # a reverse proxy must pass events through at once
        handler.end_headers()
        handler.close_connection = True
        stream = self.hub.stream()
        try:
            for chunk in stream:
                handler.wfile.write(chunk)
        except OSError:
            pass  # the screen went away (closed, reloaded, unplugged): its thread ends here
        finally:
            stream.close()


def _send(handler: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes, cache: str = "no-store") -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", cache)
    handler.send_header("Content-Security-Policy", CSP)
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.end_headers()
    handler.wfile.write(body)
