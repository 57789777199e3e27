"""Real gates among ``citypass bench broker``'s simulated ones: the fan-out timed to an *applied* delta.

The light sessions of :mod:`citypass.bench.fleet` time a delta's **arrival**. A gate is done only when its ledger
has **applied** it: verified against the ledger's trust list, checked to follow the ledger's sequence, committed
to SQLite — what :class:`~citypass.sync.gate_sync.GateSync` does on its sync thread
(:meth:`~citypass.sync.gate_updates.LedgerFollower.delta`). :class:`RealGates` runs a few of those, whole:

    gates = RealGates(host, port, specs, root_pem)   # one process, a GateSync + its own ledger per gate
    gates.wait_connected(since, timeout)             # every gate subscribed (SUBACK) at or after ``since``
    gates.wait_applied(since, seq, timeout)          # every ledger at ``seq`` or later
    gates.applied(since, seq, credential)            # per gate: revoke → applied, and a lookup in its ledger
    gates.close()

Each gate is the production client with its production defaults — its own device identity enrolled in the
broker home, paho-mqtt with TLS, ``clean_start=false`` and a week's session, the gates' reconnect backoff, the
sibling-lane exchange — and its own :class:`~citypass.gate.ledger.GateLedger` file, seeded with the issuer's
snapshot (:func:`citypass.bench.syncworld.seeded_gate_ledger`, as the sync tests and ``citypass bench sync``
seed theirs). The only addition is :class:`TimedGateSync`, which notes ``time.monotonic()`` when the ledger has
committed a delta and when a connection was usable — one clock for every process of the machine, so the
benchmark's own revoke instant is comparable.

A real gate costs two threads (paho's network loop and the sync thread) and a SQLite connection; all of them
run in **one** worker process (``spawn``: the benchmark's threads are not forked), so with one GIL and two
cores the gates verify and commit a delta one after another — an upper bound for gates that are devices of
their own. Keep them few (the bench's default is 10).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from citypass.credential.keys import VerifyKey
from citypass.gate.ledger import GateLedger
from citypass.sync.endpoint import ClientFiles, Endpoint, HttpLedgerSource
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.gate_updates import LedgerFollower


@dataclass(frozen=True)
class RealGateSpec:
    """One real gate: its device id, its site, its TLS files (enrolled in the broker home), its ledger file."""

    device_id: str
    site: int
    files: ClientFiles
    ledger: Path


@dataclass(frozen=True)
class Applied:
    """What one real gate did with one revocation."""

    device_id: str
    latency: float | None  # seconds from the revoke call to the delta committed in its ledger (None: not yet)
    receipt: float | None  # seconds from the revoke call to paho handing the gate the delta that did it
    revoked: bool          # its ledger, asked afterwards (GateLedger.is_revoked), says the credential is revoked
    ledger_seq: int | None


class TimedFollower(LedgerFollower):
    """The gate's :class:`LedgerFollower`, noting ``(time.monotonic(), new seq)`` each time a delta it received
    moved its ledger forward (after :meth:`GateLedger.apply_delta` has committed)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.applied: list[tuple[float, int]] = []

    def delta(self, client: mqtt.Client, ledger: GateLedger, payload: bytes) -> None:
        before = ledger.seq
        super().delta(client, ledger, payload)
        after = ledger.seq
        if after is not None and after != before:
            self.applied.append((time.monotonic(), after))


class TimedGateSync(GateSync):
    """:class:`GateSync` unchanged, with a :class:`TimedFollower`, the instant of each usable connection, and
    of each ledger message paho's network thread hands it (the sync thread applies it after that)."""

    def __init__(self, endpoint: Endpoint, config: GateSyncConfig, *, fetcher: HttpLedgerSource | None = None,
                 ) -> None:
        super().__init__(endpoint, config, fetcher=fetcher)
        self.timed = TimedFollower(config, fetcher, self.counters, self._event, self.estimator)
        self.follower = self.timed
        self.connects: list[float] = []
        self.received: list[float] = []

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        if m.topic.endswith("/ledger"):
            self.received.append(time.monotonic())
        super()._on_message(client, userdata, m)

    def _handle(self, client: mqtt.Client, ledger: GateLedger, item: tuple[Any, ...]) -> None:
        super()._handle(client, ledger, item)
        if item[0] == "connected":  # the SUBACK: the gate hears deltas again
            self.connects.append(time.monotonic())


def first_applied(applied: Sequence[tuple[float, int]], since: float, seq: int) -> float | None:
    """The first instant at or after ``since`` at which the ledger reached ``seq`` or later."""
    return next((t for t, s in applied if t >= since and s >= seq), None)


class _Worker:
    def __init__(self, host: str, port: int, specs: Sequence[RealGateSpec], root_pem: bytes) -> None:
        self.specs, self.root = specs, VerifyKey.from_pem(root_pem)
        self.gates = [TimedGateSync(Endpoint(host, port, tls=s.files),
                                    GateSyncConfig(device_id=s.device_id, ledger_path=s.ledger, root=self.root,
                                                   site=s.site))
                      for s in specs]

    def cmd_start(self) -> None:
        for gate in self.gates:
            gate.start()

    def cmd_connected(self, since: float) -> int:
        return sum(1 for g in self.gates if any(t >= since for t in list(g.connects)))

    def cmd_reached(self, since: float, seq: int) -> int:
        return sum(1 for g in self.gates if first_applied(list(g.timed.applied), since, seq) is not None)

    def cmd_applied(self, since: float, seq: int, credential: bytes) -> list[Applied]:
        out = []
        for spec, gate in zip(self.specs, self.gates, strict=True):
            at = first_applied(list(gate.timed.applied), since, seq)
            # the last ledger message received before it was applied: the one that did it
            got = max((t for t in list(gate.received) if since <= t <= at), default=None) if at is not None else None
            # A lookup through the gate's ledger API, on a connection of its own (the sync thread keeps its).
            with GateLedger.open(spec.ledger, root=self.root) as ledger:
                out.append(Applied(spec.device_id, None if at is None else at - since,
                                   None if got is None else got - since, ledger.is_revoked(credential), ledger.seq))
        return out

    def stop(self) -> None:
        with ThreadPoolExecutor(max(1, len(self.gates))) as pool:  # each publishes "offline": together
            list(pool.map(lambda g: g.stop(), self.gates))


def _worker_main(conn: Connection, host: str, port: int, specs: Sequence[RealGateSpec], root_pem: bytes) -> None:
    # Sync's warnings (a gate disconnected: the bench restarts the broker) would reach stderr through logging's
    # last-resort handler, once per gate; errors (a delta rejected) still do.
    logging.getLogger("citypass").setLevel(logging.ERROR)
    worker = _Worker(host, port, specs, root_pem)
    try:
        while True:
            try:
                name, args = conn.recv()
            except EOFError:
                return
            if name == "stop":
                return
            try:
                result: Any = getattr(worker, f"cmd_{name}")(*args)
            except Exception as exc:  # the benchmark reports it, with the process's own message
                result = RuntimeError(f"{type(exc).__name__}: {exc}")
            conn.send(result)
    finally:
        worker.stop()
        try:
            conn.send(None)
        except OSError:
            pass


class RealGates:
    """The real gates' worker process (see the module); every method asks it and returns its answer."""

    def __init__(self, host: str, port: int, specs: Sequence[RealGateSpec], root_pem: bytes) -> None:
        self.count = len(specs)
        ctx = multiprocessing.get_context("spawn")
        self._pipe, theirs = ctx.Pipe()
        self._process = ctx.Process(target=_worker_main, args=(theirs, host, port, tuple(specs), root_pem),
                                    name="real-gates", daemon=True)
        self._process.start()
        theirs.close()
        self._call("start")

    def _call(self, name: str, *args: Any, timeout: float = 120.0) -> Any:
        self._pipe.send((name, args))
        if not self._pipe.poll(timeout):
            raise TimeoutError(f"the real gates did not answer {name!r} within {timeout:g} s")
        answer = self._pipe.recv()
        if isinstance(answer, Exception):
            raise RuntimeError(f"real gates: {name}: {answer}")
        return answer

    def _wait(self, count: Callable[[], int], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            got = count()
            if got >= self.count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def connected(self, since: float) -> int:
        """Gates whose connection became usable (SUBACK) at or after ``since``."""
        return int(self._call("connected", since))

    def wait_connected(self, since: float, timeout: float) -> int:
        return self._wait(lambda: self.connected(since), timeout)

    def wait_applied(self, since: float, seq: int, timeout: float) -> int:
        """Wait until every gate's ledger reached ``seq`` after ``since`` (or ``timeout``); how many did."""
        return self._wait(lambda: int(self._call("reached", since, seq)), timeout)

    def applied(self, since: float, seq: int, credential: bytes) -> list[Applied]:
        """Per gate: ``since`` → its ledger committed ``seq``, and whether its ledger now revokes ``credential``."""
        return list(self._call("applied", since, seq, credential))

    def close(self) -> None:
        try:
            self._pipe.send(("stop", ()))
            self._pipe.poll(30)
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._pipe.close()
