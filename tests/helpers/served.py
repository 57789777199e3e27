"""``citypass issuer serve`` as a real process, for tests of the service (restarts, kills, several nodes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from citypass.sync.broker import free_port

EXE = Path(sys.executable).parent / "citypass"


class Served:
    """One ``citypass issuer serve`` process; :meth:`start` waits for /healthz."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 40) -> None:
        self.process = subprocess.Popen([str(EXE), "issuer", "serve", *self.args, "--port", str(self.port),
                                         "--log-level", "warning"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                _, err = self.process.communicate(timeout=10)
                raise AssertionError(f"issuer serve did not come up (exit {self.process.returncode}): "
                                     f"{err.decode(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def stop(self, sig: signal.Signals) -> str:
        """Stop it with ``sig``; what it wrote on stderr."""
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.communicate(timeout=30)[1].decode(errors="replace")
