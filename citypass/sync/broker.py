"""Run Mosquitto from a broker home: start it on a chosen or free port, wait until TLS answers, stop it.

The config is regenerated from the home on every start, so it always matches the enrolled devices::

    from citypass.sync.broker import Broker
    from citypass.sync.home import BrokerHome

    home = BrokerHome(Path("broker")).init()
    files = home.add_device_with_key("gate-wl-e1", site=7, out_dir=Path("gate"))
    with Broker(home) as broker:           # a free port on 127.0.0.1
        client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key))
        client.connect(broker.host, broker.port)
        ...
        home.revoke("gate-wl-e1")          # rewrites CRL and ACL and SIGHUPs the broker ...
        broker.reload()                    # ... or do it yourself and wait until it has reloaded

``stop()`` asks Mosquitto to exit (SIGTERM: it saves its persistence file first), ``kill()`` does not
(SIGKILL, for crash tests), ``restart()`` stops and starts on the same port. Mosquitto is found at
/usr/sbin/mosquitto or on PATH; ``scripts/bootstrap.sh`` installs it on Debian.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType

from citypass.sync.home import BrokerError, BrokerHome

log = logging.getLogger(__name__)
RELOADED = "Reloading config."  # what mosquitto 2.0 logs when it handles SIGHUP


def find_program(name: str, explicit: str | None, places: tuple[str, ...], install: str) -> str:
    """A broker engine's executable: ``explicit`` if given, else ``name`` on PATH or in one of ``places``; or
    :class:`BrokerError` saying how to ``install`` it."""
    candidates = [explicit] if explicit else [shutil.which(name), *places]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(f"{name} not found{f' at {explicit}' if explicit else ''}: install it ({install})")


def find_mosquitto(explicit: str | None = None) -> str:
    """The mosquitto executable (``explicit`` if given), or :class:`BrokerError` saying how to install it."""
    return find_program("mosquitto", explicit, ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"),
                        "`apt-get install mosquitto`, or scripts/bootstrap.sh")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out, so it is free now (another process could still take it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    # Runs if a Broker is garbage-collected or the interpreter exits while mosquitto still runs:
    # tests must never leave a broker behind.
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class Broker:
    """One mosquitto process serving ``home``. Use it as a context manager, or call start/stop."""

    def __init__(self, home: BrokerHome | Path, *, port: int | None = None, bind: str = "127.0.0.1",
                 dev_insecure: bool = False, startup_timeout: float = 10.0, mosquitto: str | None = None) -> None:
        self.home = home if isinstance(home, BrokerHome) else BrokerHome(home)
        self.bind = bind
        self.port = port or 0
        self.dev_insecure = dev_insecure
        self.startup_timeout = startup_timeout
        self.mosquitto = mosquitto
        self._auto_port = port is None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]

    @property
    def host(self) -> str:
        """The address clients connect to (loopback when bound to every interface)."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.bind, self.bind)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Broker:
        """Write the config, start mosquitto and return once it accepts TLS connections."""
        if self.running:
            raise BrokerError("the broker is already running")
        if self.dev_insecure:
            log.warning("INSECURE development broker: no TLS, no certificates, no ACL (127.0.0.1 only)")
        for attempt in range(3):
            if self._auto_port and (attempt or not self.port):
                self.port = free_port(self.host)
            self.home.write_config(self.home.settings(self.port, self.bind, dev_insecure=self.dev_insecure))
            try:
                self._spawn()
                return self
            except BrokerError as exc:
                # Another process can grab a "free" port between our probe and mosquitto's bind: retry.
                if not (self._auto_port and "Address already in use" in str(exc)):
                    raise
        raise BrokerError("could not find a free port for the broker")

    def _spawn(self) -> None:
        stderr_path = self.home.path / "log" / "mosquitto.stderr"
        with open(stderr_path, "ab") as stderr:
            # A new session: Ctrl-C in a terminal reaches `citypass broker run`, which stops mosquitto in
            # order, rather than both at once.
            self._proc = subprocess.Popen([find_mosquitto(self.mosquitto), "-c", str(self.home.config_path)],
                                          stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                          start_new_session=True)
        self._finalizer = weakref.finalize(self, _terminate, self._proc)
        self.home.pid_path.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(stderr_path)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, stderr_path: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with status {self._proc.returncode}: {self._tail(stderr_path)}")
            try:
                if self._probe():
                    return
            except BrokerError:
                # Someone else holds the port: our mosquitto is about to exit with the reason.
                try:
                    self._proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    raise
                continue
            time.sleep(0.02)
        raise BrokerError(f"mosquitto did not accept connections within {self.startup_timeout:g} s: "
                          f"{self._tail(stderr_path)}")

    def _probe(self) -> bool:
        """True once the listener answers: a TLS handshake proving the server holds our CA's certificate."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError:
            return False
        with sock:
            if self.dev_insecure:
                return True
            context = ssl.create_default_context(cafile=str(self.home.ca_cert))
            try:
                with context.wrap_socket(sock, server_hostname="localhost"):
                    return True  # TLS 1.3: the server's certificate verified; it will then ask for ours
            except ssl.SSLCertVerificationError as exc:
                raise BrokerError(f"port {self.port} answers with a certificate not from this home's CA: "
                                  f"{exc.verify_message}") from None
            except (ssl.SSLError, ConnectionError):
                return True  # TLS 1.2: the server refused us for having no client certificate: it is up

    def _tail(self, stderr_path: Path, lines: int = 8) -> str:
        text = ""
        for path in (stderr_path, self.home.log_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: mosquitto re-reads the ACL, the CRL and its certificates; return when it has.

        Connections already open are not re-checked against the CRL: a revoked device's open session
        is muted by the ``deny`` lines in the regenerated ACL instead (or dropped by a restart).
        """
        if not self.running or self._proc is None:
            raise BrokerError("the broker is not running")
        before = self._reload_count()
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._reload_count() <= before:
            if time.monotonic() > deadline:
                raise BrokerError("mosquitto did not log a reload after SIGHUP")
            time.sleep(0.02)

    def _reload_count(self) -> int:
        try:
            return self.home.log_path.read_text(errors="replace").count(RELOADED)
        except FileNotFoundError:
            return 0

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (mosquitto writes its persistence file on the way out); SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._forget()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: no goodbye, no persistence write since the last autosave (for crash tests)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc)
        self._forget()

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self.home.pid_path.unlink(missing_ok=True)

    def restart(self) -> Broker:
        """Stop gracefully and start again on the same port (sessions and queues come back from disk)."""
        self.stop()
        self._auto_port = False  # clients were told this port
        return self.start()

    def wait(self) -> int:
        """Block until mosquitto exits on its own; its exit status."""
        if self._proc is None:
            raise BrokerError("the broker is not running")
        return self._proc.wait()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
