"""The gate daemon: camera → decode → decide → record → barrier, in one loop that never waits on a network.

:class:`GateDaemon` holds already-built adapters (camera, decoder, barrier, ledger) and runs the
per-frame pipeline; :func:`citypass.wiring.gate.build_daemon` is the one place that builds those adapters from a
:class:`~citypass.gate.config.GateConfig`. Tests and benchmarks inject their own adapters (a memory camera feed,
gpiozero's ``MockFactory`` pins, a ledger in a temporary file).

One frame, in order:

1. **decode** every QR code in the newest frame (stale frames are never queued: latest frame wins);
2. **debounce**: a code held in view for many frames is one presentation (keyed by credential id);
3. **decide** with the pure core against the SQLite ledger, inside the decision deadline;
4. **record** the tap and its usage in one committed transaction — *before* the relay moves;
5. **actuate**: grant the barrier for ``persons`` passages, or show deny.

Barrier events come back through a queue drained by the same loop, so the ledger is only ever touched
from one thread: a confirmed passage is noted on its tap; a grant that expired with persons unused is
annulled (the ticket is not burned); rejected grants are annulled whole.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from citypass.credential.codes import CodeError, parse
from citypass.credential.reasons import Reason
from citypass.credential.verifier import Verdict
from citypass.gate.barrier.events import (
    BarrierEvent,
    FireAlarmCleared,
    FireAlarmStarted,
    ForcedEntry,
    GrantExpired,
    GrantRejected,
    HeldOpen,
    PassageConfirmed,
)
from citypass.gate.barrier.logic import BarrierStatus
from citypass.gate.camera.base import Frame
from citypass.gate.camera.watchdog import CameraStatus
from citypass.gate.config import GateConfig
from citypass.gate.debounce import PresentationTracker
from citypass.gate.decision import Decision, GateContext, decide
from citypass.gate.decoders.base import Decoder
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.connection import LedgerError
from citypass.gate.logs import EventLog
from citypass.gate.metrics import GateMetrics
from citypass.gate.policy import TapKind

HOUSEKEEPING_S = 5.0


class Camera(Protocol):
    def wait_for_frame(self, after_seq: int = 0, timeout: float | None = None) -> Frame | None: ...
    def status(self) -> CameraStatus: ...
    def close(self, timeout: float = 2.0) -> None: ...


class BarrierDevice(Protocol):
    events: queue.SimpleQueue[BarrierEvent]

    def start(self) -> None: ...
    def grant(self, n_persons: int, grant_id: str) -> bool: ...
    def deny(self) -> None: ...
    def set_out_of_order(self, active: bool) -> None: ...
    def close(self) -> None: ...
    def relay_energised_at(self, grant_id: str) -> float | None: ...
    @property
    def state(self) -> BarrierStatus: ...


@dataclass(frozen=True)
class Outcome:
    """What the daemon did with one presentation (returned for tests, benchmarks and the demo)."""

    text: str
    decision: Decision
    tap_id: str | None
    frame_seq: int
    stages: dict[str, float] = field(default_factory=dict)  # monotonic seconds
    fallback: bool = False

    @property
    def frame_to_relay_s(self) -> float | None:
        relay = self.stages.get("relay")
        return None if relay is None else relay - self.stages["captured"]


class LaneDisplay(Protocol):
    """What shows the lane's state to visitors: the result screen (:class:`citypass.gate.screen.display.LaneScreen`).

    Called on the decision loop's thread — right after the relay moved, and on every status refresh — so both
    methods must return at once and never raise."""

    def show_outcome(self, outcome: Outcome) -> None: ...
    def show_status(self, status: dict[str, Any]) -> None: ...


def presentation_key(text: str) -> str:
    """Debounce key: the credential id when the code parses, else the text itself. A holder-bound phone
    that refreshes its dynamic code while still held up is therefore still one presentation."""
    try:
        return "cred:" + parse(text).credential.id.hex()
    except CodeError:
        return "text:" + text


class GateDaemon:
    def __init__(
        self,
        config: GateConfig,
        ctx: GateContext,
        *,
        camera: Camera,
        decoder: Decoder,
        barrier: BarrierDevice,
        ledger: GateLedger,
        log: EventLog | None = None,
        metrics: GateMetrics | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        notify: Callable[[str], None] | None = None,
        observer: Callable[[Outcome], None] | None = None,
        display: LaneDisplay | None = None,
    ) -> None:
        self.config, self.ctx = config, ctx
        self.camera, self.decoder, self.barrier, self.ledger = camera, decoder, barrier, ledger
        self.log = log or EventLog(gate_id=config.gate_id, level=config.log_level)
        self.metrics = metrics or GateMetrics()
        self.wall, self.mono = wall, mono
        self.notify = notify or (lambda _msg: None)
        self.observer = observer  # sees every outcome (the demo's live view); must be quick and not raise
        self.display = display  # the lane's screen: told first, right after the relay
        self.policy = config.policy.to_policy()
        self.tracker = PresentationTracker(config.decision.leave_after_s)
        self._stop = threading.Event()
        self._last_seq = 0
        self._camera_ok = True
        self._grants: dict[str, tuple[float, int]] = {}  # tap id -> (presented at, persons) for the budget
        self._status: dict[str, Any] = {"healthy": False, "state": "starting"}
        self._fallback_journal = Path(str(config.ledger.path) + ".fallback.jsonl")
        self._backlog: int | None = None
        #: set by the wiring point when MQTT sync runs beside the loop: its state for /healthz
        self.sync_state: Callable[[], dict[str, Any]] | None = None
        #: set by the wiring point: called after each tap or annulment is committed (sync shares it with the
        #: site's other lanes at once); must be quick and not raise
        self.on_recorded: Callable[[], None] | None = None
        self._housekeeping_at = float("-inf")

    # -- the loop ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.barrier.start()
        self.log.event(
            "started",
            site=self.ctx.site.name,
            direction=self.ctx.direction.value,
            decoder=self.decoder.name,
            ledger_seq=self.ledger.seq,
        )
        self.notify("READY=1\nSTATUS=deciding")

    def stop(self) -> None:
        self._stop.set()

    def run(self, max_frames: int | None = None) -> None:
        """Run until :meth:`stop` (or ``max_frames`` frames); always leaves the barrier in its safe state."""
        self.start()
        frames = 0
        try:
            while not self._stop.is_set() and (max_frames is None or frames < max_frames):
                frame = self.camera.wait_for_frame(self._last_seq, timeout=0.2)
                self.check_camera()
                self.drain_barrier_events()
                self.notify("WATCHDOG=1")  # fed from the loop itself: a hung loop trips systemd's watchdog
                if frame is None:
                    continue
                self._last_seq = frame.seq
                frames += 1
                self.process_frame(frame)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.notify("STOPPING=1")
        self.barrier.close()
        self.drain_barrier_events()
        self.camera.close()
        self.ledger.close()
        self.log.event("stopped")

    # -- one frame -----------------------------------------------------------------------------------
    def process_frame(self, frame: Frame) -> list[Outcome]:
        if not self._camera_ok:
            return []  # frames from a camera the watchdog distrusts are not decided on
        self.metrics.frames.inc()
        decoded = self.decoder.decode(frame.image)
        t_decoded = self.mono()
        self.metrics.stage_seconds.labels("decode").observe(t_decoded - frame.captured_at)
        texts = {presentation_key(d.text): d.text for d in decoded}
        outcomes = []
        for key in self.tracker.update(texts, t_decoded):
            outcomes.append(self.present(texts[key], frame, t_decoded))
        return outcomes

    def present(self, text: str, frame: Frame, t_decoded: float) -> Outcome:
        stages = {"captured": frame.captured_at, "decoded": t_decoded}
        started = self.mono()
        fallback = False
        try:
            decision = decide(text, self.ledger, self.ctx, int(self.wall()), self.policy)
            stages["decided"] = self.mono()
            tap = self.ledger.record(decision, self.ctx, self._wall_stages(stages))
            stages["committed"] = self.mono()
            tap_id: str | None = tap.tap_id
            if self.on_recorded is not None:
                self.on_recorded()
        except LedgerError as exc:
            decision, tap_id, fallback = self._fallback(text, str(exc)), None, True
            stages["decided"] = stages["committed"] = self.mono()
        if stages["committed"] - started > self.config.decision.deadline_ms / 1000:
            self.log.event("decision_slow", level="warning", ms=round((stages["committed"] - started) * 1000, 2))
        self._actuate(decision, tap_id, stages)
        outcome = Outcome(text, decision, tap_id, frame.seq, stages, fallback)
        if self.display is not None:  # the visitor sees it before the logs and metrics are written
            self.display.show_outcome(outcome)
        self._account(text, decision, tap_id, stages, fallback)
        if self.observer is not None:
            self.observer(outcome)
        return outcome

    def _actuate(self, decision: Decision, tap_id: str | None, stages: dict[str, float]) -> None:
        if decision.allowed and decision.persons > 0:
            grant_id = tap_id or f"fallback-{stages['captured']:.6f}"
            if self.barrier.grant(decision.persons, grant_id):
                relay = self.barrier.relay_energised_at(grant_id)
                stages["relay"] = relay if relay is not None else self.mono()
                self._grants[grant_id] = (stages["captured"], decision.persons)
        else:
            self.barrier.deny()

    def _account(
        self, text: str, decision: Decision, tap_id: str | None, stages: dict[str, float], fallback: bool
    ) -> None:
        reason = decision.reason.value if decision.reason else None
        self.metrics.decisions.labels("allow" if decision.allowed else "deny", reason or "").inc()
        for a, b in (("decoded", "decided"), ("decided", "committed")):
            self.metrics.stage_seconds.labels(b).observe(stages[b] - stages[a])
        if "relay" in stages:
            self.metrics.frame_to_relay.observe(stages["relay"] - stages["captured"])
            if tap_id is not None:
                try:
                    self.ledger.set_stage(tap_id, "relay", self._to_wall(stages["relay"]))
                except LedgerError:
                    pass  # the relay time is diagnostic; the tap itself is already committed
        cred = decision.credential
        self.log.event(
            "decision",
            tap=tap_id,
            decision="allow" if decision.allowed else "deny",
            reason=reason,
            flags=[f.value for f in decision.flags],
            persons=decision.persons,
            kind=decision.kind.value if decision.kind else None,
            product=cred.product_name if cred else None,
            credential=cred.id.hex() if cred else None,
            fallback=fallback,
            relay=("relay" in stages),
            ms={k: round((v - stages["captured"]) * 1000, 3) for k, v in stages.items() if k != "captured"},
        )

    def _fallback(self, text: str, why: str) -> Decision:
        """The ledger could not answer in time: apply the configured fallback and journal it durably."""
        self.metrics.fallbacks.inc()
        allow = self.config.decision.fallback == "allow"
        verdict = Verdict(False, Reason.DECISION_TIMEOUT, why)
        decision = Decision(
            allow,
            None if allow else Reason.DECISION_TIMEOUT,
            verdict,
            int(self.wall()),
            (Reason.DECISION_TIMEOUT,),
            1 if allow else 0,
            TapKind.ENTRY if allow else None,
        )
        entry = {"at": self.wall(), "gate": self.config.gate_id, "allowed": allow, "why": why, "text": text}
        try:
            with open(self._fallback_journal, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self.log.event("fallback_journal_failed", level="error", error=str(exc))
        self.log.event("decision_fallback", level="warning", allowed=allow, why=why)
        return decision

    # -- barrier and camera --------------------------------------------------------------------------
    def drain_barrier_events(self) -> None:
        while True:
            try:
                event = self.barrier.events.get_nowait()
            except queue.Empty:
                return
            self._on_barrier_event(event)

    def _on_barrier_event(self, event: BarrierEvent) -> None:
        name = type(event).__name__
        self.metrics.barrier_events.labels(name).inc()
        try:
            if isinstance(event, PassageConfirmed):
                if not event.grant_id.startswith("fallback-"):
                    self.ledger.confirm_passage(event.grant_id, event.person_index, self._to_wall(event.at))
                self.log.event("passage", tap=event.grant_id, person=event.person_index)
            elif isinstance(event, GrantExpired | GrantRejected):
                unused = event.persons_unused if isinstance(event, GrantExpired) else event.n_persons
                if unused > 0 and not event.grant_id.startswith("fallback-"):
                    self.ledger.annul(event.grant_id, unused, int(self._to_wall(event.at)))
                    if self.on_recorded is not None:
                        self.on_recorded()
                self._close_grant(event.grant_id, event.at)
                self.log.event("grant_ended", tap=event.grant_id, unused=unused, why=str(getattr(event, "reason", "")))
            elif isinstance(event, ForcedEntry | HeldOpen):
                self.log.event("alarm", level="warning", kind=name)
            elif isinstance(event, FireAlarmStarted | FireAlarmCleared):
                self.log.event("fire_alarm", level="warning", active=isinstance(event, FireAlarmStarted))
        except LedgerError as exc:
            self.log.event("barrier_event_not_recorded", level="error", kind=name, error=str(exc))

    def _close_grant(self, grant_id: str, at: float) -> None:
        started = self._grants.pop(grant_id, None)
        if started is not None and at - started[0] > self.config.decision.entry_budget_s:
            self.metrics.budget_overruns.inc()
            self.log.event("entry_budget_overrun", level="warning", tap=grant_id, s=round(at - started[0], 2))

    def check_camera(self) -> None:
        status = self.camera.status()
        ok = status.state == "ok"
        self.metrics.fps.set(status.fps)
        self.metrics.camera_restarted(status.restarts)
        self.metrics.camera_ok.set(1 if ok else 0)
        if ok != self._camera_ok and status.state != "starting":
            self._camera_ok = ok
            self.barrier.set_out_of_order(not ok)
            self.log.event("camera", level="info" if ok else "warning", state=status.state, error=status.last_error)
            self.notify(f"STATUS={'deciding' if ok else 'out of order: ' + (status.last_error or 'camera')}")
        self._refresh_status(status)

    def _housekeeping(self) -> None:
        """Every few seconds: outbox backlog for status and metrics; acknowledged rows past retention pruned."""
        now = self.mono()
        if now - self._housekeeping_at < HOUSEKEEPING_S:
            return
        self._housekeeping_at = now
        try:
            self._backlog = self.ledger.backlog()
            self.metrics.outbox_backlog.set(self._backlog)
            self.ledger.prune(int(self.wall()))
        except LedgerError as exc:
            self.log.event("housekeeping_failed", level="warning", error=str(exc))

    def _refresh_status(self, camera: CameraStatus) -> None:
        self._housekeeping()
        synced = self.ledger.synced_at
        age = None if synced is None else max(0.0, self.wall() - synced)
        if age is not None:
            self.metrics.ledger_age.set(age)
        self._status = {
            "healthy": self._camera_ok and not self._stop.is_set(),
            "state": "deciding" if self._camera_ok else "out_of_order",
            "gate": self.config.gate_id,
            "site": self.ctx.site.name,
            "direction": self.ctx.direction.value,
            "camera": {
                "state": camera.state,
                "fps": round(camera.fps, 1),
                "restarts": camera.restarts,
                "last_error": camera.last_error,
            },
            "ledger": {"seq": self.ledger.seq, "age_s": age, "outbox_backlog": self._backlog},
            "barrier": self.barrier.state.mode,
        }
        self.metrics.fire_alarm.set(1 if self.barrier.state.mode == "fire_alarm" else 0)
        if self.sync_state is not None:
            state = self.sync_state()
            self._status["sync"] = state | {"state": "connected" if state.get("connected") else "buffering"}
            self.metrics.observe_sync(state, self.wall())
        if self.display is not None:
            self.display.show_status(self._status)

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    # -- time ----------------------------------------------------------------------------------------
    def _to_wall(self, mono_at: float) -> float:
        return self.wall() - (self.mono() - mono_at)

    def _wall_stages(self, stages: dict[str, float]) -> dict[str, float]:
        return {k: self._to_wall(v) for k, v in stages.items()}
