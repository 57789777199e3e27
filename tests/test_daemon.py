"""The gate daemon's pipeline, in process: real decoder, real SQLite ledger, gpiozero MockFactory pins,
rendered phone-screen frames handed over by a small injected camera."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from citypass.bench.frames import synth_frame
from citypass.credential import SigningKey, present
from citypass.credential.keys import read_public_key
from citypass.credential.reasons import Reason
from citypass.gate.barrier.gpio import Barrier
from citypass.gate.camera.base import Frame
from citypass.gate.camera.watchdog import CameraStatus
from citypass.gate.config import GateConfig
from citypass.gate.daemon import GateDaemon, Outcome
from citypass.gate.decision import GateContext
from citypass.gate.decoders import make_decoder
from citypass.gate.ledger import GateLedger
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

SIZE = (640, 480)


@dataclass
class ScriptedCamera:
    """A camera that hands over the frames a test gives it (the Camera interface the daemon expects)."""

    state: str = "ok"
    seq: int = 0
    closed: bool = False
    frames: list[Frame] = field(default_factory=list)

    def show(self, image: np.ndarray) -> Frame:
        self.seq += 1
        frame = Frame(image, self.seq, time.monotonic(), "scripted")
        self.frames.append(frame)
        return frame

    def wait_for_frame(self, after_seq: int = 0, timeout: float | None = None) -> Frame | None:
        newer = [f for f in self.frames if f.seq > after_seq]
        return newer[-1] if newer else None

    def status(self) -> CameraStatus:
        return CameraStatus(self.state, 30.0, 0.01, 0, 0, None if self.state == "ok" else "camera unplugged")  # type: ignore[arg-type]

    def close(self, timeout: float = 2.0) -> None:
        self.closed = True


@dataclass
class Rig:
    daemon: GateDaemon
    camera: ScriptedCamera
    pins: MockFactory
    ledger: GateLedger
    issuer: Issuer
    config: GateConfig
    now: int

    def show(self, text: str | None, condition: str = "clean", times: int = 1) -> list[Outcome]:
        image = synth_frame(text, condition if text else "no_code", SIZE, 7)
        outcomes: list[Outcome] = []
        for _ in range(times):
            outcomes += self.daemon.process_frame(self.camera.show(image))
        return outcomes

    def blank(self, seconds: float) -> None:
        """Nothing in view for a while (the debounce needs the code to leave the view)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.show(None)
            time.sleep(0.05)

    def pin(self, name: str) -> object:
        return self.pins.pin(getattr(self.config.barrier, name))

    def walk_through(self) -> None:
        beam = self.pins.pin(self.config.barrier.sensor_pin)
        beam.drive_low()
        time.sleep(0.02)
        beam.drive_high()
        time.sleep(0.05)
        self.daemon.drain_barrier_events()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    now = int(time.time())
    issuer = Issuer.init(IssuerHome(tmp_path / "issuer"), [("west-lake", "scenic"), ("museum", "museum")], now - 86400)
    snapshot = tmp_path / "snapshot.cbor"
    snapshot.write_bytes(issuer.export(now))
    config = GateConfig.model_validate({
        "gate_id": "museum-e1", "site": "museum", "root_key": str(tmp_path / "issuer" / "root.pub"),
        "snapshot": str(snapshot), "ledger": {"path": str(tmp_path / "ledger.db")}, "pins": "mock",
        "barrier": {"passage_timeout_s": 0.6, "open_per_person_s": 0.6, "sensor_bounce_s": None},
        "decision": {"leave_after_s": 0.3}, "health": {"enabled": False},
    })
    root = read_public_key(config.root_key)
    ledger = GateLedger.from_config(config.ledger, root=root)
    ledger.load_snapshot(snapshot.read_bytes(), root)
    site = ledger.site("museum")
    assert site is not None
    pins = MockFactory()
    camera = ScriptedCamera()
    daemon = GateDaemon(config, GateContext("museum-e1", site), camera=camera, decoder=make_decoder(),
                        barrier=Barrier(config.barrier, pin_factory=pins), ledger=ledger)
    daemon.start()
    yield Rig(daemon, camera, pins, ledger, issuer, config, now)
    daemon.shutdown()
    pins.reset()


def relay_open(rig: Rig) -> bool:
    return bool(rig.pins.pin(rig.config.barrier.relay_pin).state)


def test_a_code_held_for_many_frames_is_decided_once_and_committed_before_the_relay(rig: Rig) -> None:
    code = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now)
    outcomes = rig.show(code, "perspective", times=12)
    assert len(outcomes) == 1
    out = outcomes[0]
    assert out.decision.allowed and out.tap_id is not None
    assert out.stages["captured"] <= out.stages["decoded"] <= out.stages["decided"] <= out.stages["committed"]
    assert out.stages["committed"] <= out.stages["relay"]  # durable before the barrier moves
    assert relay_open(rig)
    tap = rig.ledger.tap(out.tap_id)
    assert tap is not None and tap.allowed and tap.persons == 1


def test_party_of_three_opens_for_three_passages_then_closes(rig: Rig) -> None:
    code = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 3, rig.now)
    (out,) = rig.show(code, times=3)
    assert out.decision.persons == 3
    for _ in range(3):
        assert relay_open(rig)
        rig.walk_through()
    assert not relay_open(rig)
    cred = out.decision.credential
    assert cred is not None and rig.ledger.usage(cred.id, rig.daemon.ctx.site.number).persons_used == 3
    kinds = [row.kind for row in rig.ledger.pending(100)]
    assert kinds.count("passage") == 3


def test_nobody_passes_so_the_ticket_is_not_burned(rig: Rig) -> None:
    code = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 2, rig.now)
    (first,) = rig.show(code)
    assert first.decision.allowed and relay_open(rig)
    rig.walk_through()  # one of the two passes, the other turns back
    time.sleep(0.8)  # open_per_person_s elapses
    rig.daemon.drain_barrier_events()
    assert not relay_open(rig)
    cred = first.decision.credential
    assert cred is not None
    assert rig.ledger.usage(cred.id, rig.daemon.ctx.site.number).persons_used == 1  # one annulled
    rig.blank(0.4)
    (again,) = rig.show(code)
    assert again.decision.allowed and again.decision.persons == 1  # the unused person can still enter


def test_denials_show_red_keep_the_barrier_closed_and_are_recorded(rig: Rig) -> None:
    forged = rig.issuer.mint_annual(["west-lake"], rig.now)  # wrong site for a museum gate
    (out,) = rig.show(forged)
    assert not out.decision.allowed and out.decision.reason is Reason.WRONG_SITE
    assert not relay_open(rig)
    assert rig.pins.pin(rig.config.barrier.red_led_pin).state
    tap = rig.ledger.tap(out.tap_id or "")
    assert tap is not None and tap.reason is Reason.WRONG_SITE


def test_dynamic_code_refreshing_while_held_is_one_presentation(rig: Rig, tmp_path: Path) -> None:
    phone = SigningKey.generate()
    cred = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now, holder=phone.public)
    outcomes = rig.show(present(cred, phone, rig.now - 2), times=3) + rig.show(present(cred, phone, rig.now), times=3)
    assert len(outcomes) == 1 and outcomes[0].decision.allowed


def test_single_use_ticket_waved_twice_is_consumed_once(rig: Rig) -> None:
    code = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now)
    (first,) = rig.show(code, times=4)
    rig.walk_through()
    rig.blank(0.4)
    (second,) = rig.show(code, times=4)
    assert first.decision.allowed and second.decision.reason is Reason.ALREADY_USED


def test_camera_out_of_order_closes_the_lane_and_frames_are_not_decided(rig: Rig) -> None:
    code = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now)
    rig.camera.state = "out_of_order"
    rig.daemon.check_camera()
    assert rig.daemon.status()["state"] == "out_of_order" and not rig.daemon.status()["healthy"]
    assert rig.show(code) == []
    rig.camera.state = "ok"
    rig.daemon.check_camera()
    assert rig.daemon.status()["state"] == "deciding"
    assert rig.show(code)[0].decision.allowed


def test_fire_alarm_frees_the_barrier(rig: Rig) -> None:
    fire = rig.pins.pin(rig.config.barrier.fire_alarm_pin)
    fire.drive_low()  # default wiring: active low
    time.sleep(0.15)
    assert relay_open(rig)
    fire.drive_high()
    time.sleep(0.15)
    assert not relay_open(rig)


def test_locked_ledger_applies_the_fallback_and_journals_it(rig: Rig) -> None:
    code = rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now)
    blocker = sqlite3.connect(rig.config.ledger.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        (out,) = rig.show(code)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert out.fallback and not out.decision.allowed and out.decision.reason is Reason.DECISION_TIMEOUT
    assert not relay_open(rig)
    journal = Path(str(rig.config.ledger.path) + ".fallback.jsonl").read_text()
    assert '"allowed": false' in journal and code in journal


def test_metrics_count_decisions_and_stage_latencies(rig: Rig) -> None:
    from prometheus_client import generate_latest

    rig.show(rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now))
    rig.show("not a city pass")
    text = generate_latest(rig.daemon.metrics.registry).decode()
    assert 'citypass_decisions_total{decision="allow",reason=""} 1.0' in text
    assert 'citypass_decisions_total{decision="deny",reason="not_citypass"} 1.0' in text
    assert "citypass_frame_to_relay_seconds_count 1.0" in text


def test_status_reports_the_outbox_backlog(rig: Rig) -> None:
    rig.show(rig.issuer.mint_reservation("museum", rig.now - 600, rig.now + 3600, 1, rig.now))
    rig.daemon.check_camera()
    backlog = rig.daemon.status()["ledger"]["outbox_backlog"]
    assert backlog == rig.ledger.backlog() and backlog >= 1
