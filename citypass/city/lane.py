"""One gate of the city, running for real, and the visitors who come to it.

A :class:`Lane` runs three threads:

* the **gate** thread builds the daemon with the daemon's own wiring point
  (:func:`citypass.wiring.gate.build_daemon`: it opens the SQLite ledger *on that thread*, claims the mock pins,
  opens the camera) and its MQTT sync thread (:func:`citypass.wiring.gate.build_sync`), then runs the decision
  loop until stopped;
* the gate's **sync** thread (its own ledger connection) uploads taps and applies signed deltas;
* the **visitors** thread takes :class:`~citypass.city.script.Visit` s from a queue, renders the phone's
  screen into camera frames (perspective, glare, dark mode, …) through the same memory camera source a
  test rig uses, watches the relay pin and breaks the passage beam once for each person who walks
  through — the others turn back, the barrier times out and the gate gives their entries back.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from citypass.bench.frames import synth_frame
from citypass.city.http import DemoError
from citypass.city.script import Visit
from citypass.gate.barrier.mockpins import resting_mock_pins
from citypass.gate.camera import forget_feed, memory_feed
from citypass.gate.camera.base import Image
from citypass.gate.config import GateConfig
from citypass.gate.daemon import GateDaemon, Outcome
from citypass.gate.logs import EventLog
from citypass.sync.gate_sync import GateSync
from citypass.wiring.gate import build_daemon, build_sync, serving

SIZE = (1280, 720)
FPS = 15
HOLD_S = 2.0  # how long a visitor holds the phone up before giving up


@dataclass(frozen=True)
class VisitResult:
    """What happened to one visit: the daemon's outcome (None: the code was never read) and how many
    people walked through the beam."""

    gate: str
    phase: str
    visit: Visit
    outcome: Outcome | None
    walked: int

    @property
    def matches(self) -> bool:
        if self.outcome is None:
            return False
        d, want = self.outcome.decision, self.visit.expect
        reason = d.reason.value if d.reason is not None else None
        return d.allowed == want.allowed and (d.persons == want.persons if d.allowed else reason == want.reason)

    def describe(self) -> str:
        """``allow ×2`` or ``deny passback: 刚刚已入园… / Entered recently…``."""
        if self.outcome is None:
            return "not read"
        d = self.outcome.decision
        if d.allowed:
            return f"allow ×{d.persons}"
        assert d.reason is not None
        return f"deny {d.reason.value}: {d.reason.zh} / {d.reason.en}"


class Lane:
    def __init__(self, cfg: GateConfig, report: Callable[[VisitResult], None],
                 ready: Callable[[Visit], bool] = lambda visit: True) -> None:
        self.cfg = cfg
        self.report = report
        self.ready = ready  # whether a visitor may come yet (one who waits for a visit at another gate)
        self.pins = resting_mock_pins(cfg.barrier)  # an enrolled gate's wiring: NC fire contact, at rest
        self.feed_name = cfg.camera.source.split(":", 1)[1]
        self.feed = memory_feed(self.feed_name, maxsize=2)
        self.daemon: GateDaemon | None = None
        self.sync: GateSync | None = None
        self.error: BaseException | None = None
        self.health_port: int | None = None  # where /healthz and the lane's screen are served, if they are
        self.taps = 0  # every decision the daemon recorded (a tap id), expected or not
        self.relay_s: list[float] = []  # frame captured → relay energised, for each opening
        self.unexpected: list[Outcome] = []
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._visits: queue.Queue[tuple[Visit, str, float] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._gate = threading.Thread(target=self._run_gate, name=f"gate-{cfg.gate_id}", daemon=True)
        self._visitors = threading.Thread(target=self._run_visitors, name=f"visitors-{cfg.gate_id}", daemon=True)

    @property
    def gate_id(self) -> str:
        return self.cfg.gate_id

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Lane:
        self._gate.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise DemoError(f"gate {self.gate_id} did not start: {self.error or 'timed out'}")
        self._visitors.start()
        return self

    def stop_visitors(self) -> None:
        """Send everyone home: queued visits are dropped, a visit under way ends at its next frame."""
        self._stopping.set()
        while True:
            try:
                self._visits.get_nowait()
                self._visits.task_done()
            except queue.Empty:
                break
        self._visits.put(None)

    def stop(self) -> None:
        """Stop the visitors, the decision loop, then the sync thread; every thread joined. Safe to call
        on a lane that never started."""
        self.stop_visitors()
        if self._visitors.is_alive():
            self._visitors.join(10)
        if self.daemon is not None:
            self.daemon.stop()
        if self._gate.is_alive():
            self._gate.join(15)
        forget_feed(self.feed_name)
        self._set_aside_unexpected()  # decided after the last visit, say

    def _set_aside_unexpected(self) -> None:
        """Whatever the daemon decided that no visit is waiting for goes to ``unexpected``."""
        while True:
            try:
                self.unexpected.append(self._outcomes.get_nowait())
            except queue.Empty:
                break

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:  # the first failure is the one worth reporting
            self.error = exc

    @property
    def connected(self) -> bool:
        return self.sync is not None and self.sync.state.connected

    @property
    def counters(self) -> dict[str, int]:
        """The sync thread's counters (uploads, deltas, sibling lanes' taps applied, races …)."""
        return {} if self.sync is None else dict(self.sync.state.counters)

    @property
    def ledger_seq(self) -> int | None:
        return None if self.sync is None else self.sync.state.ledger_seq

    # -- visits ------------------------------------------------------------------------------------
    def submit(self, visit: Visit, phase: str, phase_start: float) -> None:
        """Queue a visit; it arrives ``visit.at`` seconds after ``phase_start`` (monotonic) or later."""
        self._visits.put((visit, phase, phase_start + visit.at))

    @property
    def busy(self) -> bool:
        return self._visits.unfinished_tasks > 0

    # -- threads -----------------------------------------------------------------------------------
    def _observe(self, outcome: Outcome) -> None:
        with self._lock:
            self.taps += outcome.tap_id is not None
            if outcome.frame_to_relay_s is not None:
                self.relay_s.append(outcome.frame_to_relay_s)
        self._outcomes.put(outcome)

    def _run_gate(self) -> None:
        quiet = EventLog(gate_id=self.gate_id, level="error")
        try:
            self.daemon = build_daemon(self.cfg, log=quiet, pin_factory=self.pins, observer=self._observe)
            self.sync = build_sync(self.cfg, self.daemon)
            if self.sync is not None:
                self.sync.start()
        except BaseException as exc:  # reported by start(); the thread ends
            self._fail(exc)
            if self.daemon is not None:
                self.daemon.shutdown()  # on this thread: the ledger connection is this thread's
            self._ready.set()
            return
        try:
            with serving(self.daemon, signals=False) as server:  # /healthz and /screen, when the config has them
                self.health_port = server.port if server is not None else None
                self._ready.set()
                self.daemon.run()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._ready.set()
            if self.sync is not None:
                self.sync.stop()

    def _run_visitors(self) -> None:
        blank = synth_frame(None, "no_code", SIZE, 0)
        while (item := self._next_visit(blank)) is not None:
            visit, phase, arrive = item
            try:
                self._show(blank, until=_arrived(arrive, visit, self.ready))  # the visitor is on the way
                result = self._visit(visit, phase, blank)
                if not self._stopping.is_set():
                    self.report(result)
            except _Stopped:
                pass
            except BaseException as exc:
                self._fail(exc)
            finally:
                self._visits.task_done()
        self._visits.task_done()

    def _next_visit(self, blank: Image) -> tuple[Visit, str, float] | None:
        """The next visitor; while nobody is at the gate the camera keeps seeing the empty lane."""
        while True:
            try:
                return self._visits.get(timeout=1 / FPS)
            except queue.Empty:
                self.feed.push(blank)

    def _show(self, image: Image, until: Callable[[], bool], frames: int = 10_000) -> bool:
        """Push ``image`` at the camera's rate until ``until()`` holds (True) or ``frames`` went by
        (False). A camera that stops taking frames, or a stop request, ends the visit."""
        for _ in range(frames):
            if until():
                return True
            if self._stopping.is_set():
                raise _Stopped
            if not self.feed.push(image, block=True, timeout=2.0):
                raise DemoError(f"gate {self.gate_id} stopped taking camera frames")
            time.sleep(1 / FPS)
        return until()

    def _visit(self, visit: Visit, phase: str, blank: Image) -> VisitResult:
        self._set_aside_unexpected()
        if visit.card.picture is not None:  # a phone whose screen a real browser draws: its picture, as it is now
            image = visit.card.picture()
        else:
            image = synth_frame(visit.text(int(time.time())), visit.condition, SIZE, 11)
        got: list[Outcome] = []

        def decided() -> bool:
            try:
                got.append(self._outcomes.get_nowait())
            except queue.Empty:
                pass
            return bool(got)

        self._show(image, decided, frames=int(HOLD_S * FPS))  # hold the phone up, at most HOLD_S
        outcome = got[0] if got else None
        walked = 0
        if outcome is not None and outcome.decision.allowed:
            relay, beam = self.pins.pin(self.cfg.barrier.relay_pin), self.pins.pin(self.cfg.barrier.sensor_pin)
            active_high = self.cfg.barrier.relay_active_high  # enrolled boards are mostly active-low

            def energised() -> bool:
                return bool(relay.state) == active_high

            for _ in range(visit.walkers):  # the camera keeps running while people walk through
                if not energised():
                    break
                beam.drive_low()
                self._show(blank, lambda: False, frames=1)
                beam.drive_high()
                walked += 1
                self._show(blank, lambda: False, frames=1)
            closes = self.cfg.barrier.passage_timeout_s + 2  # the rest turn back; the barrier times out
            if not self._show(blank, lambda: not energised(), frames=int(closes * FPS)):
                raise DemoError(f"gate {self.gate_id}: the barrier did not close within {closes:.1f} s")
        self._show(blank, lambda: False, frames=int(self.cfg.decision.leave_after_s * FPS) + 3)  # the phone leaves
        return VisitResult(self.gate_id, phase, visit, outcome, walked)


class _Stopped(Exception):
    """The lane was told to stop in the middle of a visit."""


def _arrived(moment: float, visit: Visit, ready: Callable[[Visit], bool]) -> Callable[[], bool]:
    """The visitor is here: from ``moment`` on, and once whoever they follow has been decided."""
    due = _after(moment)
    return lambda: due() and ready(visit)


def _after(moment: float) -> Callable[[], bool]:
    """A condition that holds from ``moment`` (monotonic seconds) on."""
    return lambda: time.monotonic() >= moment
