"""Crash-safety harness for the whole gate daemon: SIGKILL it at random moments, hundreds of times.

The ledger alone has its own harness (:mod:`tests.ledger_crash_worker`), which starts a fresh Python for
every run. The daemon imports OpenCV, zxing-cpp, gpiozero and the whole gate; a fresh interpreter per
run would cost about a second, 200 runs several minutes. So the runs are *forked*, from a
``multiprocessing`` fork server that has already imported this module (and with it everything the
daemon needs): a run is on its feet in tens of milliseconds. The fork server is a clean, single-threaded
process of its own, so forking never copies the test process's threads or OpenCV's thread pool.

Three parts:

:func:`prepare`
    The parent's set-up, done once: a real issuer mints single-use reservations (party 1) and annual
    passes without anti-passback, signs a snapshot, and a ledger file is created from it. One phone-
    screen frame per code (checked to decode) and a few frames without a code are rendered into an
    ``.npy`` file that the worker memory-maps, so no run renders anything.
:func:`run_worker`
    One run, in the forked child: a real :class:`citypass.gate.daemon.GateDaemon` (that ledger file, the zxing
    decoder, the real barrier on gpiozero ``MockFactory`` pins) whose camera plays a seeded stream of
    presentations. Its stdout is the parent's pipe. The protocol, one flushed line each:

    ``ready``                       the daemon is built and about to enter its loop;
    ``code SEQ``                    a frame with a new code is about to be handed to the daemon
                                    (the parent aims its "mid-decision" kills at this);
    ``relay TAP_ID CREDENTIAL_HEX`` the barrier accepted a grant. Printed from inside the barrier
                                    adapter right after ``Barrier.grant`` returned True, which the
                                    daemon calls only after the tap was committed; the tap is read
                                    back from the ledger to name its credential.

    A simulated visitor breaks and clears the passage beam after some grants; the others expire, so
    their taps are annulled (the ticket is not burned) and a reservation may be admitted again.
:func:`kill_daemon_repeatedly`
    The parent's loop: start a run, kill it with SIGKILL at a moment drawn from a seeded
    ``random.Random`` — during start-up, a few milliseconds after a ``code`` line (deciding,
    committing or granting), or at an arbitrary later instant (mostly waiting for or decoding
    frames) — collect the complete lines it printed, and start the next run on the same ledger file.

Example (what ``tests/test_daemon_crash.py`` does)::

    setup = prepare(tmp_path, seed=7)
    run = kill_daemon_repeatedly(setup, kills=200, rng=random.Random(7))
    # open setup.ledger_path and check every printed relay against the taps
"""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from gpiozero.pins.mock import MockFactory

from citypass.bench.frames import synth_frame
from citypass.credential.codes import parse
from citypass.credential.keys import read_public_key
from citypass.gate.barrier.gpio import Barrier
from citypass.gate.barrier.logic import BarrierStatus
from citypass.gate.camera.base import Frame, Image
from citypass.gate.camera.watchdog import CameraStatus
from citypass.gate.config import GateConfig
from citypass.gate.daemon import GateDaemon
from citypass.gate.decoders import make_decoder
from citypass.gate.ledger import GateLedger
from citypass.gate.logs import EventLog
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

SITE = "city-museum"
SIZE = (640, 480)
FRAME_INTERVAL_S = 0.006  # the fake camera's pace: fast, so that 200 short runs see many presentations
READABLE = ("clean", "perspective", "glare", "dark_mode")  # conditions zxing reads reliably
Phase = Literal["startup", "decision", "idle"]


class Beam(Protocol):
    """The passage sensor's mock pin, as the simulated visitor drives it."""

    def drive_low(self) -> None: ...
    def drive_high(self) -> None: ...


# -- set-up, in the parent ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """Everything a run needs, as plain paths and numbers (it is pickled to the fork server)."""

    config: dict[str, object]  # GateConfig as JSON-ready data
    frames_path: str  # .npy: one frame per code, then the frames without a code
    n_codes: int
    log_path: str  # the runs' stderr and JSON logs, appended
    walk_probability: float = 0.7  # share of grants a visitor walks through; the rest expire


@dataclass(frozen=True)
class CrashSetup:
    spec: Spec
    ledger_path: Path
    root_pub: Path
    site_number: int
    codes: list[str]
    kinds: dict[str, str]  # credential id (hex) -> "reservation" | "annual"


def prepare(directory: Path, *, seed: int, reservations: int = 24, annual: int = 12,
            empty_frames: int = 6) -> CrashSetup:
    """Issuer, snapshot, ledger file and rendered frames for :func:`run_worker`; see the module doc."""
    now = int(time.time())
    issuer = Issuer.init(IssuerHome(directory / "issuer"), [(SITE, "museum")], now - 86_400)
    codes = [issuer.mint_reservation(SITE, now - 600, now + 6 * 3600, 1, now) for _ in range(reservations)]
    codes += [issuer.mint_annual([SITE], now, passback_minutes=0) for _ in range(annual)]
    kinds = {parse(c).credential.id.hex(): ("reservation" if i < reservations else "annual")
             for i, c in enumerate(codes)}
    ledger_path = directory / "ledger.sqlite3"
    root = issuer.root_key().public
    with GateLedger.open(ledger_path, root=root) as ledger:
        ledger.load_snapshot(issuer.export(now))
        site = ledger.site(SITE)
        assert site is not None
        ledger.set_identity("crash-gate", site.number)
    rng = np.random.default_rng(seed)
    decoder = make_decoder("zxing")
    frames: list[Image] = []
    for i, code in enumerate(codes):
        for attempt in range(20):  # every code frame must read, or the stream would silently thin out
            image = synth_frame(code, READABLE[(i + attempt) % len(READABLE)], SIZE, rng)
            if any(d.text == code for d in decoder.decode(image)):
                break
        else:
            raise RuntimeError(f"could not render a readable frame for code {i}")
        frames.append(image)
    frames += [synth_frame(None, "no_code", SIZE, rng) for _ in range(empty_frames)]
    frames_path = directory / "frames.npy"
    np.save(frames_path, np.stack(frames))
    config: dict[str, object] = {
        "gate_id": "crash-gate", "site": SITE, "root_key": str(issuer.home.root_pub_path),
        "ledger": {"path": str(ledger_path)}, "pins": "mock", "health": {"enabled": False},
        "decision": {"leave_after_s": 0.02},
        "barrier": {"sensor_bounce_s": None, "passage_timeout_s": 0.1, "open_per_person_s": 0.1,
                    "deny_display_s": 0.05, "max_queued_grants": 1},
    }
    GateConfig.model_validate(config)  # fail here, in the parent, not 200 times in children
    spec = Spec(config, str(frames_path), len(codes), str(directory / "worker.log"))
    return CrashSetup(spec, ledger_path, issuer.home.root_pub_path, site.number, codes, kinds)


# -- one run, in the forked child --------------------------------------------------------------------
class StreamCamera:
    """A :class:`citypass.gate.daemon.Camera` playing a seeded, endless stream of presentations at a fixed pace.

    Each presentation shows one code for 2-3 frames, then 4-8 frames without a code. Before the first
    frame of each presentation it prints ``code SEQ``. Between frames it also plays the visitor: it
    breaks and clears the passage beam when a walk that :class:`ReportingBarrier` scheduled is due.
    """

    def __init__(self, frames: np.ndarray, n_codes: int, rng: random.Random, beam: Beam,
                 walks: list[float]) -> None:
        self._frames, self._n_codes, self._rng = frames, n_codes, rng
        self._beam = beam
        self._walks = walks  # monotonic due times, appended by the barrier adapter
        self._script: list[tuple[int, bool]] = []  # (frame index, first frame of a presentation)
        self._seq = 0
        self._due = time.monotonic()

    def _refill(self) -> None:
        code = self._rng.randrange(self._n_codes)
        empties = len(self._frames) - self._n_codes
        self._script += [(code, n == 0) for n in range(self._rng.randint(2, 3))]
        self._script += [(self._n_codes + self._rng.randrange(empties), False) for _ in range(self._rng.randint(4, 8))]

    def wait_for_frame(self, after_seq: int = 0, timeout: float | None = None) -> Frame | None:
        self._due += FRAME_INTERVAL_S
        pause = self._due - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # idle: the daemon waits for the camera, as it mostly does at a gate
        else:
            self._due = time.monotonic()
        now = time.monotonic()
        while self._walks and self._walks[0] <= now:
            self._walks.pop(0)
            self._beam.drive_low()  # the beam breaks...
            self._beam.drive_high()  # ...and clears: one person through
        if not self._script:
            self._refill()
        index, first = self._script.pop(0)
        self._seq += 1
        if first:
            print(f"code {self._seq}", flush=True)
        return Frame(image=self._frames[index], seq=self._seq, captured_at=time.monotonic(), source="crash-stream")

    def status(self) -> CameraStatus:
        return CameraStatus("ok", 1 / FRAME_INTERVAL_S, 0.0, 0, 0, None)

    def close(self, timeout: float = 2.0) -> None:
        pass


class ReportingBarrier:
    """The real :class:`Barrier`, plus the ``relay`` line once a grant is accepted (a BarrierDevice)."""

    def __init__(self, barrier: Barrier, ledger: GateLedger, rng: random.Random, walk_probability: float,
                 walks: list[float]) -> None:
        self._barrier, self._ledger, self._rng = barrier, ledger, rng
        self._walk_probability, self._walks = walk_probability, walks
        self.events = barrier.events

    def grant(self, n_persons: int, grant_id: str) -> bool:
        accepted = self._barrier.grant(n_persons, grant_id)
        if accepted:
            tap = self._ledger.tap(grant_id)  # committed before grant() was called; read it back
            cred = tap.credential_id.hex() if tap is not None and tap.credential_id is not None else "-"
            print(f"relay {grant_id} {cred}", flush=True)
            if self._rng.random() < self._walk_probability:
                self._walks.append(time.monotonic() + self._rng.uniform(0.01, 0.05))
        return accepted

    def start(self) -> None:
        self._barrier.start()

    def deny(self) -> None:
        self._barrier.deny()

    def set_out_of_order(self, active: bool) -> None:
        self._barrier.set_out_of_order(active)

    def close(self) -> None:
        self._barrier.close()

    def relay_energised_at(self, grant_id: str) -> float | None:
        return self._barrier.relay_energised_at(grant_id)

    @property
    def state(self) -> BarrierStatus:
        return self._barrier.state


def run_worker(out: Connection, spec: Spec, seed: int) -> None:
    """One run: build the daemon on the shared ledger and run it until killed (never returns normally)."""
    os.dup2(out.fileno(), 1)  # stdout is the parent's pipe
    out.close()
    err = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(err, 2)  # tracebacks and the daemon's JSON log, for diagnosis
    os.close(err)
    cfg = GateConfig.model_validate(spec.config)
    root = read_public_key(cfg.root_key)
    ledger = GateLedger.from_config(cfg.ledger, root=root)
    ctx = ledger.context()
    rng = random.Random(seed)
    walks: list[float] = []
    factory = MockFactory()
    barrier = ReportingBarrier(Barrier(cfg.barrier, pin_factory=factory), ledger, rng,
                               spec.walk_probability, walks)
    frames = np.load(spec.frames_path, mmap_mode="r")
    camera = StreamCamera(frames, spec.n_codes, rng, factory.pin(cfg.barrier.sensor_pin), walks)
    daemon = GateDaemon(cfg, ctx, camera=camera, decoder=make_decoder(cfg.decoder), barrier=barrier,
                        ledger=ledger, log=EventLog(gate_id=cfg.gate_id))
    print("ready", flush=True)
    daemon.run()
    print("exited", flush=True)  # the parent treats this as a failure: a run must only end by the kill


# -- the kill loop, in the parent --------------------------------------------------------------------
@dataclass
class DaemonKillRun:
    relays: list[tuple[str, str, int]] = field(default_factory=list)  # (tap id, credential hex, run)
    run_started_at: list[float] = field(default_factory=list)  # wall clock, before each start
    phases: dict[str, int] = field(default_factory=lambda: {"startup": 0, "decision": 0, "idle": 0})
    kills: int = 0
    exits: list[int | None] = field(default_factory=list)  # runs that ended without our kill (bugs)
    ready_after_s: list[float] = field(default_factory=list)  # start() to 'ready', runs that got there
    seconds: float = 0.0

    def summary(self) -> str:
        ready = sorted(self.ready_after_s)
        median = f"{1000 * ready[len(ready) // 2]:.0f} ms" if ready else "-"
        return (f"{self.kills} SIGKILLs ({self.phases['startup']} in start-up, {self.phases['decision']} "
                f"mid-decision, {self.phases['idle']} idle), {len(self.relays)} relays reported, "
                f"start to ready {median} (median), {self.seconds:.1f} s in all")


class _Lines:
    """Complete lines from a pipe; a line cut by the kill (no newline) never counts."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.lines: list[str] = []
        self.eof = False

    def pump(self, timeout: float) -> None:
        if self.eof:
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        self.lines += [line.decode() for line in complete if line]

    def wait_for(self, predicate: Callable[[str], bool], start: int, deadline: float) -> int | None:
        """Pump until a line from ``start`` on matches; its index, or None at the deadline or EOF."""
        checked = start
        while True:
            for i in range(checked, len(self.lines)):
                if predicate(self.lines[i]):
                    return i
            checked = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self.pump(left)


def _sleep_reading(lines: _Lines, seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if lines.eof:
            time.sleep(left)
            return
        lines.pump(left)


def kill_daemon_repeatedly(setup: CrashSetup, *, kills: int, rng: random.Random,
                           weights: tuple[float, float, float] = (0.2, 0.4, 0.4),
                           ready_timeout_s: float = 20.0) -> DaemonKillRun:
    """Fork ``kills`` runs of :func:`run_worker` on ``setup``'s ledger; SIGKILL each at a seeded moment."""
    ctx = multiprocessing.get_context("forkserver")
    # The server imports the daemon's world once; "__main__" too, or every child would re-run the main script.
    ctx.set_forkserver_preload(["__main__", __name__])
    result = DaemonKillRun()
    began = time.monotonic()
    for n in range(kills):
        phase: Phase = rng.choices(("startup", "decision", "idle"), weights)[0]
        # Start-up kills land within the time a run has been taking to get ready (the median of the last
        # runs), so they hit start-up on a fast machine and on a loaded one alike.
        typical_ready = statistics.median(result.ready_after_s[-21:]) if result.ready_after_s else 0.06
        startup_delay, idle_delay = rng.uniform(0, 0.9 * typical_ready), rng.uniform(0, 0.4)
        nth_code, after_code = rng.randint(1, 3), rng.uniform(0, 0.008)
        reader, writer = ctx.Pipe(duplex=False)
        result.run_started_at.append(time.time())
        process = ctx.Process(target=run_worker, args=(writer, setup.spec, rng.getrandbits(32)), daemon=True)
        started = time.monotonic()
        process.start()
        writer.close()
        lines = _Lines(reader.fileno())
        try:
            if phase == "startup":
                _sleep_reading(lines, startup_delay)
            else:
                ready = lines.wait_for(lambda s: s == "ready", 0, time.monotonic() + ready_timeout_s)
                if ready is None:
                    raise RuntimeError(f"run {n} did not print 'ready' within {ready_timeout_s} s "
                                       f"(see {setup.spec.log_path})")
                result.ready_after_s.append(time.monotonic() - started)
                if phase == "decision":  # a few ms after the nth new code came into view
                    seen: int | None = ready
                    for _ in range(nth_code):
                        if seen is not None:
                            seen = lines.wait_for(lambda s: s.startswith("code "), seen + 1, time.monotonic() + 2)
                    _sleep_reading(lines, after_code)
                else:
                    _sleep_reading(lines, idle_delay)
            # What the run was really doing: a start-up kill may land after 'ready' (then it is an idle
            # one), a mid-decision one may find no code within 2 s.
            actual: Phase = "startup" if "ready" not in lines.lines else "idle" if phase == "startup" else phase
            if actual == "decision" and not any(s.startswith("code ") for s in lines.lines):
                actual = "idle"
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
            process.join(10)
            if process.exitcode == -signal.SIGKILL:
                result.kills += 1
                result.phases[actual] += 1
            else:
                result.exits.append(process.exitcode)
            drained_by = time.monotonic() + 5
            while not lines.eof and time.monotonic() < drained_by:  # what it wrote before dying is in the pipe
                lines.pump(0.5)
        finally:
            if process.is_alive():
                process.kill()
                process.join(5)
            process.close()
            reader.close()
        for line in lines.lines:
            if line.startswith("relay "):
                _, tap_id, cred = line.split(" ")
                result.relays.append((tap_id, cred, n))
            elif line == "exited":
                result.exits.append(None)
    result.seconds = time.monotonic() - began
    return result

