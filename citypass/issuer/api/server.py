"""Serving the app from a background thread on a free port: for tests and benchmarks.

``citypass issuer serve`` runs uvicorn in the foreground; tests and ``citypass bench ingest`` need the
same server, for real (HTTP over a socket), but started and stopped from Python::

    with BackgroundServer(create_app(issuer)) as server:
        httpx.get(server.url + "/healthz")

The socket is bound before the thread starts (port 0: the OS picks a free one), so there is no race
between choosing a port and another process taking it.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI


class BackgroundServer:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                 tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate, key) PEM files to serve HTTPS with."""
        self.config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                                     access_log=False, timeout_graceful_shutdown=5,
                                     ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None)
        self.scheme = "https" if tls else "http"
        self.server = uvicorn.Server(self.config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="issuer-api", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the issuer API did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
