"""A fleet of simulated gates in a few worker processes, each one asyncio event loop of
:class:`~citypass.bench.fleet_session.GateSession` — driven from the benchmark's process by commands.

    fleet = Fleet(split(host, port, ca, gates, processes=4))
    fleet.call("prepare")              # each process loads its gates' certificates into TLS contexts
    fleet.call("connect")              # every session starts connecting (and keeps reconnecting)
    fleet.wait(lambda states: ...)     # poll the processes' state until a condition holds
    fleet.close()                      # DISCONNECT everywhere, processes joined

A command is a name and arguments sent over a pipe; the process answers once, at once: commands take
snapshots, they never wait for the network, so the timestamps the sessions record are not disturbed by the
benchmark asking. Times are ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import resource
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from citypass.bench.fleet_session import GateSession
from citypass.credential.delta import DeltaError, load_delta
from citypass.credential.keys import VerifyKey
from citypass.credential.trustlist import TrustList

#: Simultaneous first handshakes per process: gates switched on in waves, not all in one millisecond.
HANDSHAKES = 32


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file soft limit to its hard limit; the ``(soft, hard)`` now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass(frozen=True)
class FleetSpec:
    """One worker process's share of the fleet: ``(device id, site, PEM with certificate and key)`` each."""

    host: str
    port: int
    ca: Path
    gates: tuple[tuple[str, int, Path], ...]
    keepalive: int = 30
    seed: int = 0


def split(host: str, port: int, ca: Path, gates: Sequence[tuple[str, int, Path]], processes: int,
          keepalive: int = 30) -> list[FleetSpec]:
    """Deal ``gates`` round-robin to ``processes`` specs."""
    return [FleetSpec(host, port, ca, tuple(gates[i::processes]), keepalive, seed=i) for i in range(processes)
            if gates[i::processes]]


@dataclass(frozen=True)
class Receipts:
    """One process's answer to ``receipts``: when each session first received a ledger delta since a given
    instant (``None``: not yet), and what verifying them found."""

    times: list[float | None]
    verified: int      # payloads whose signature was checked for real with load_delta
    identical: int     # payloads byte-identical to one that was verified
    bad: int           # payloads that failed verification or did not carry the expected revocation
    verify_s: float    # time spent in load_delta


@dataclass(frozen=True)
class Connected:
    """One usable connection of a session: when each step of it happened (``time.monotonic()``)."""

    subscribed: float           # SUBACK: the gate hears deltas again
    session_present: bool       # the broker still had the session (after a restart: from its persistence)
    began: float                # the attempt started (after the backoff delay)
    tcp: float                  # TCP connected
    tls: float                  # TLS handshake finished
    connack: float
    lost: float | None          # the previous connection was lost (None: the first connection)


class _Worker:
    def __init__(self, conn: Connection, spec: FleetSpec) -> None:
        self.conn, self.spec = conn, spec
        self.sessions: list[GateSession] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.done = asyncio.Event()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._command)
        await self.done.wait()
        loop.remove_reader(self.conn.fileno())

    def _command(self) -> None:
        try:
            name, args = self.conn.recv()
        except EOFError:  # the benchmark went away: stop
            asyncio.get_running_loop().create_task(self._stop(reply=False))
            return
        if name == "stop":
            asyncio.get_running_loop().create_task(self._stop(reply=True))
            return
        try:
            result: Any = getattr(self, f"cmd_{name}")(*args)
        except Exception as exc:  # the benchmark reports it, with the process's own message
            result = RuntimeError(f"{type(exc).__name__}: {exc}")
        self.conn.send(result)

    async def _stop(self, reply: bool) -> None:
        for session in self.sessions:
            await session.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.sleep(0.2)  # let the DISCONNECTs leave
        if reply:
            self.conn.send(None)
        self.done.set()

    def cmd_prepare(self) -> float:
        """One TLS context per gate (its own certificate); returns the seconds it took."""
        started = time.perf_counter()
        rng = random.Random(self.spec.seed)
        for device_id, site, pem in self.spec.gates:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # the broker's certificate and name are checked
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_verify_locations(str(self.spec.ca))
            context.load_cert_chain(str(pem))
            self.sessions.append(GateSession(device_id, site, context, self.spec.host, self.spec.port,
                                             keepalive=self.spec.keepalive, rng=rng))
        return time.perf_counter() - started

    def cmd_connect(self) -> None:
        handshakes = asyncio.Semaphore(HANDSHAKES)
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(s.run(handshakes)) for s in self.sessions]

    def cmd_state(self) -> dict[str, int]:
        records = [s.record for s in self.sessions]
        return {"sessions": len(self.sessions), "connected": sum(s.connected for s in self.sessions),
                "attempts": sum(r.attempts for r in records), "refusals": sum(len(r.refusals) for r in records),
                "ticks": sum(r.ticks for r in records), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}

    def cmd_count(self, since: float) -> tuple[int, int]:
        """Sessions that connected at or after ``since``, and sessions that received a ledger delta since."""
        return (sum(1 for s in self.sessions if s.record.connects and s.record.connects[-1] >= since),
                sum(1 for s in self.sessions if s.record.ledger and s.record.ledger[-1][0] >= since))

    def cmd_connects(self, since: float) -> list[Connected | None]:
        """Per session: its first usable connection (SUBACK) at or after ``since`` (``None``: not yet)."""
        out: list[Connected | None] = []
        for s in self.sessions:
            r = s.record
            i = next((i for i, t in enumerate(r.connects) if t >= since), None)
            losses = [t for t in r.losses if t <= r.phases[i][0]] if i is not None else []
            out.append(None if i is None else Connected(r.connects[i], r.sessions_present[i], *r.phases[i],
                                                           losses[-1] if losses else None))
        return out

    def cmd_receipts(self, since: float, trust_signed: bytes, root_pem: bytes, revoked: bytes, sample: int,
                     ) -> Receipts:
        """Per session, the first ledger delta received at or after ``since``; every ``sample``-th session's
        payload (and every payload unlike those) verified as a gate verifies it — :func:`load_delta` against
        the trust list, itself verified against the pinned root key — and checked to revoke ``revoked``; the
        rest compared byte for byte with the verified ones."""
        trust = TrustList.verify(trust_signed, VerifyKey.from_pem(root_pem))
        times: list[float | None] = []
        good: set[bytes] = set()
        verified = identical = bad = 0
        spent = 0.0
        for i, s in enumerate(self.sessions):
            hit = next(((t, p) for t, p in s.record.ledger if t >= since), None)
            times.append(hit[0] if hit else None)
            if hit is None:
                continue
            payload = hit[1]
            if i % sample and payload in good:
                identical += 1
                continue
            started = time.perf_counter()
            try:
                ok = revoked in load_delta(payload, trust).revoked
            except DeltaError:
                ok = False
            spent += time.perf_counter() - started
            verified += 1
            if ok:
                good.add(payload)
            else:
                bad += 1
        return Receipts(times, verified, identical, bad, spent)


def _worker_main(conn: Connection, spec: FleetSpec) -> None:
    raise_nofile()
    asyncio.run(_Worker(conn, spec).serve())


class Fleet:
    """The worker processes (started at once, with ``spawn``: the benchmark's own threads are not forked)."""

    def __init__(self, specs: Sequence[FleetSpec]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for spec in specs:
            ours, theirs = ctx.Pipe()
            process = ctx.Process(target=_worker_main, args=(theirs, spec), name=f"fleet-{spec.seed}", daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    def call(self, name: str, *args: Any, timeout: float = 600.0) -> list[Any]:
        """Send one command to every process; their answers, in process order."""
        for pipe in self.pipes:
            pipe.send((name, args))
        answers = []
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if not pipe.poll(timeout):
                raise TimeoutError(f"{process.name} did not answer {name!r} within {timeout:g} s")
            answer = pipe.recv()
            if isinstance(answer, Exception):
                raise RuntimeError(f"{process.name}: {name}: {answer}")
            answers.append(answer)
        return answers

    def state(self) -> dict[str, int]:
        """The processes' states, summed (``nofile``: the smallest open-file limit among them)."""
        states = self.call("state")
        total = {key: sum(s[key] for s in states) for key in states[0]}
        total["nofile"] = min(s["nofile"] for s in states)
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the worker processes have used so far, together."""
        total = 0.0
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def wait(self, predicate: Callable[[dict[str, int]], bool], timeout: float, interval: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.state()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)

    def close(self) -> None:
        try:
            self.call("stop", timeout=30)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self.pipes:
            pipe.close()
