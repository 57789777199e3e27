"""A NATS cluster serving a broker home: N nats-server processes on free ports, for tests and benchmarks.

The configs come from :mod:`citypass.sync.natsconf` (the same CA, registry and permissions as the Mosquitto
broker); each node keeps its JetStream store in its own directory under ``directory``. A node can be
SIGKILLed and started again with its store, as a machine that crashed and came back::

    cluster = NatsCluster(BrokerHome(path / "broker"), path / "nats", nodes=3).start()
    endpoint = Endpoint(*cluster.addresses[0], tls=files, fallbacks=cluster.addresses[1:], mqtt_version="3.1.1")
    cluster.kill(0)       # SIGKILL: no goodbye to anyone
    cluster.start_node(0) # back, with its store
    cluster.stop()

Ready means every running node answers ``/healthz`` on its monitoring port (the cluster has a JetStream
meta leader). The MQTT streams are made by the engine at the first MQTT connection, which therefore takes
a few seconds on a new cluster; clients retry, as they always do.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType

from citypass.sync.broker import find_program, free_port
from citypass.sync.home import BrokerError, BrokerHome
from citypass.sync.natsconf import ClusterSettings, NatsNode, render_node, render_users

log = logging.getLogger(__name__)


def find_nats_server(explicit: str | None = None) -> str:
    """The nats-server executable, or :class:`BrokerError` saying how to install it."""
    return find_program("nats-server", explicit, ("/usr/sbin/nats-server", "/usr/bin/nats-server"),
                        "`apt-get install nats-server`")


def _terminate(procs: dict[int, subprocess.Popen[bytes]]) -> None:
    # A cluster garbage-collected or left at exit must not leave servers behind.
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class NatsCluster:
    """``nodes`` nats-server processes forming one JetStream cluster over ``home``'s CA and registry."""

    def __init__(self, home: BrokerHome, directory: Path, *, nodes: int = 3, bind: str = "127.0.0.1",
                 startup_timeout: float = 20.0, nats_server: str | None = None) -> None:
        self.home = home
        self.directory = directory.resolve()
        self.startup_timeout = startup_timeout
        self.executable = find_nats_server(nats_server)
        self.settings = ClusterSettings(tuple(
            NatsNode(f"n{i}", free_port(bind), free_port(bind), free_port(bind), free_port(bind))
            for i in range(nodes)), bind=bind)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._finalizer = weakref.finalize(self, _terminate, self._procs)

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Each node's MQTT (host, port), in node order."""
        return tuple((self.settings.bind, n.mqtt_port) for n in self.settings.nodes)

    @property
    def client_urls(self) -> tuple[str, ...]:
        """Each node's NATS protocol port as a URL (the issuer's work queue, :mod:`citypass.sync.workqueue`)."""
        return tuple(f"nats://{self.settings.bind}:{n.client_port}" for n in self.settings.nodes)

    def node_dir(self, index: int) -> Path:
        return self.directory / self.settings.nodes[index].name

    def pid(self, index: int) -> int | None:
        proc = self._procs.get(index)
        return proc.pid if proc is not None and proc.poll() is None else None

    def write_config(self) -> None:
        """Every node's config and users file, from the home's registry as it is now."""
        users = render_users(self.home.identities())
        for index, node in enumerate(self.settings.nodes):
            path = self.node_dir(index)
            (path / "store").mkdir(parents=True, exist_ok=True)
            (path / "users.conf").write_text(users)
            (path / "nats.conf").write_text(render_node(self.settings, node, self.home.path, path / "store"))

    def start(self) -> NatsCluster:
        """Write the configs, start every node and return once each answers its health check."""
        self.write_config()
        for index in range(len(self.settings.nodes)):
            self._spawn(index)
        self.wait_ready()
        return self

    def start_node(self, index: int) -> None:
        """Start one node (again), with the store it had."""
        self._spawn(index)
        self.wait_ready([index])

    def _spawn(self, index: int) -> None:
        if self.pid(index) is not None:
            raise BrokerError(f"node {index} is already running")
        path = self.node_dir(index)
        with open(path / "nats.log", "ab") as log:
            self._procs[index] = subprocess.Popen([self.executable, "-c", str(path / "nats.conf")],
                                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                  start_new_session=True)

    def healthy(self, index: int) -> bool:
        url = f"http://{self.settings.bind}:{self.settings.nodes[index].monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, indexes: list[int] | None = None) -> None:
        wanted = list(self._procs) if indexes is None else indexes
        deadline = time.monotonic() + self.startup_timeout
        while True:
            for index in wanted:
                proc = self._procs[index]
                if proc.poll() is not None:
                    raise BrokerError(f"nats-server node {index} exited with status {proc.returncode}: "
                                      f"{self.tail(index)}")
            if all(self.healthy(i) for i in wanted):
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"the NATS cluster was not healthy within {self.startup_timeout:g} s: "
                                  + " | ".join(self.tail(i) for i in wanted))
            time.sleep(0.1)

    def _wait_listening(self, index: int) -> None:
        """Until the node accepts MQTT connections (not yet current in JetStream: that needs the others)."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            proc = self._procs[index]
            if proc.poll() is not None:
                raise BrokerError(f"nats-server node {index} exited with status {proc.returncode}: {self.tail(index)}")
            try:
                socket.create_connection((self.settings.bind, self.settings.nodes[index].mqtt_port), 1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"nats-server node {index} did not listen within {self.startup_timeout:g} s: "
                                      f"{self.tail(index)}") from None
                time.sleep(0.1)

    def tail(self, index: int, lines: int = 6) -> str:
        try:
            return " / ".join((self.node_dir(index) / "nats.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def reload(self, settle_s: float = 3.0) -> list[int]:
        """Rewrite the configs (e.g. after a device was enrolled or revoked) and have every node reload them:
        a revoked identity's open connections are closed. The indexes of the nodes started again.

        nats-server 2.9.10 (Debian 12's) sometimes panics on such a reload when it holds retained MQTT messages
        (``mqttCheckPubRetainedPerms``): 5 of 8 reloads in a loop lost a node. A node that exits within
        ``settle_s`` of the reload is started again from its own store, as its service manager's
        ``Restart=on-failure`` does in production (docs/broker.md, "A clustered engine"); its JetStream state
        catches up from the others."""
        self.write_config()
        running = [index for index in self._procs if self.pid(index) is not None]
        for index in running:
            if (pid := self.pid(index)) is not None:
                os.kill(pid, signal.SIGHUP)
        restarted: list[int] = []
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            for index in running:
                proc = self._procs.get(index)
                if index not in restarted and proc is not None and proc.poll() is not None:
                    log.warning("nats-server node %d exited at a reload (status %s): started again; %s", index,
                                proc.returncode, self.tail(index, 3))
                    del self._procs[index]
                    self._spawn(index)  # listening again at once; its JetStream catches up on its own time
                    self._wait_listening(index)
                    restarted.append(index)
            time.sleep(0.1)
        return restarted

    def kill(self, index: int) -> None:
        """SIGKILL one node, as a crash would."""
        proc = self._procs.pop(index)
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 5 s)."""
        for index in list(self._procs):
            proc = self._procs.pop(index)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
