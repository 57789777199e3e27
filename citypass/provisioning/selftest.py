"""``citypass selftest``: prove that an enrolled gate's parts work, one row per check.

=========  ===========================================================================================
camera     frames arrive from ``camera.source``; the measured frame rate
decoder    the configured decoder reads a QR code rendered on the spot
gpio       the relay clicks (energised for a grant, back to the safe state) and the passage sensor reads
broker     TLS with the device certificate; publishing to its own topic is acknowledged (PUBACK < 0x80)
           and publishing to another gate's topic is refused (0x87): the ACL is in force
clock      the local clock against the issuer's (fails beyond 5 minutes)
disk       free space where the ledger lives
ledger     the ledger opens and ``PRAGMA integrity_check`` says ok; its snapshot sequence
=========  ===========================================================================================

A check is ``ok``, ``warn`` (e.g. no broker configured: the gate still works offline) or ``fail``; the
command exits 1 when any check fails. Stop the gate service first: the self-test claims the GPIO pins.

    >>> results = run_selftest(Path("/var/lib/citypass/gate.toml"))          # doctest: +SKIP
    >>> [(r.name, r.status) for r in results]                                # doctest: +SKIP
    [('camera', 'ok'), ('decoder', 'ok'), ('gpio', 'ok'), ('broker', 'ok'), ...]
"""

from __future__ import annotations

import importlib.util
import os
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import paho.mqtt.client as mqtt
import segno
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from citypass.gate.barrier.gpio import Barrier
from citypass.gate.camera import open_camera
from citypass.gate.config import GateConfig
from citypass.gate.decoders import make_decoder
from citypass.gate.ledger import GateLedger
from citypass.provisioning import device as layout
from citypass.provisioning.enroll import MIN_FREE_BYTES, free_bytes
from citypass.provisioning.issuerclient import MAX_CLOCK_OFFSET_S, IssuerClient, ProvisionError, describe_offset
from citypass.sync.endpoint import ClientFiles, use_tls
from citypass.sync.topics import OFFLINE, gate_status

Status = Literal["ok", "warn", "fail"]
NOT_AUTHORIZED = 0x87


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str


def check_camera(cfg: GateConfig, seconds: float = 1.0) -> CheckResult:
    first_timeout = cfg.camera.open_timeout_s + cfg.camera.stale_after_s
    times: list[float] = []
    with open_camera(cfg.camera, name="selftest-camera") as camera:
        seq, deadline = 0, time.monotonic() + first_timeout
        while time.monotonic() < deadline:
            frame = camera.wait_for_frame(after_seq=seq, timeout=0.25)
            if frame is None:
                continue
            if not times:  # measure the rate for `seconds` after the first frame
                deadline = time.monotonic() + seconds
            seq = frame.seq
            times.append(time.monotonic())
        status = camera.status()
    if not times:
        return CheckResult("camera", "fail", f"no frames from {cfg.camera.source!r}: "
                                             f"{status.last_error or status.state}")
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    low = cfg.camera.fps > 0 and fps < cfg.camera.fps / 2
    return CheckResult("camera", "warn" if low else "ok",
                       f"{len(times)} frames, {fps:.1f} fps (configured {cfg.camera.fps:g})"
                       + (": less than half the configured rate" if low else ""))


def check_decoder(cfg: GateConfig) -> CheckResult:
    text = f"CPSELFTEST{os.getpid()}"
    matrix = np.asarray(segno.make(text, error="m", micro=False).matrix, dtype=np.uint8)
    image = np.pad(np.kron(1 - matrix, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    decoder = make_decoder(cfg.decoder)
    started = time.perf_counter()
    texts = [d.text for d in decoder.decode(image)]
    ms = (time.perf_counter() - started) * 1000
    if text not in texts:
        return CheckResult("decoder", "fail", f"{cfg.decoder} did not read the test code (read {texts})")
    return CheckResult("decoder", "ok", f"{cfg.decoder} read the test code in {ms:.1f} ms")


def _pin_problem(exc: Exception, pins: str) -> str:
    """What a technician should read when the pins cannot be claimed: BadPinFactory (gpiozero found no library
    that drives this board's pins) names the package to install, not gpiozero's fallback chain."""
    name = type(exc).__name__
    if name == "BadPinFactory" or "pin factory" in str(exc).lower():
        if importlib.util.find_spec("lgpio") is None:
            return (f"{pins} pins: no GPIO library could drive this board's pins ({name}): install lgpio "
                    "(pip install 'citypass[gate]' in the venv, or apt install python3-lgpio)")
        return (f"{pins} pins: lgpio is installed but could not drive the pins ({name}): no /dev/gpiochip0 here, "
                "or this user is not in the gpio group (the udev rule 60-citypass-gpio.rules)")
    return f"{pins} pins: {name}: {exc}"


def check_gpio(cfg: GateConfig, pin_factory: Any = None) -> CheckResult:
    if pin_factory is None and cfg.pins == "mock":
        from citypass.gate.barrier.mockpins import resting_mock_pins

        pin_factory = resting_mock_pins(cfg.barrier)
    try:
        with warnings.catch_warnings():  # gpiozero's PinFactoryFallback warnings: the detail below says it
            warnings.simplefilter("ignore")
            with Barrier(cfg.barrier, pin_factory=pin_factory) as barrier:
                barrier.start()
                barrier.grant(1, "selftest")
                deadline = time.monotonic() + 1.0
                while barrier.relay_energised_at("selftest") is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                clicked = barrier.relay_energised_at("selftest") is not None
                beam = barrier.state.beam_broken
                fire = barrier.state.mode.value == "fire_alarm"
                barrier.safe_state()
    except Exception as exc:  # gpiozero raises many kinds (no pin factory, pin in use, permission)
        return CheckResult("gpio", "fail", _pin_problem(exc, cfg.pins))
    where = f"{cfg.pins} pins, relay {cfg.barrier.relay_pin}, sensor {cfg.barrier.sensor_pin}"
    if fire:
        return CheckResult("gpio", "warn", f"{where}: the fire-alarm input reads ALARM (pin "
                                           f"{cfg.barrier.fire_alarm_pin}): check the panel contact and "
                                           "barrier.fire_alarm_active_low (--fire-alarm-contact)")
    if not clicked:
        return CheckResult("gpio", "fail", f"{where}: the relay was not energised for a test grant")
    if beam:
        return CheckResult("gpio", "warn", f"{where}: relay clicked; the passage sensor reads BROKEN "
                                           "(something in the lane, or the beam is misaligned)")
    if cfg.pins == "mock":
        return CheckResult("gpio", "warn", f"{where}: MOCK pins: nothing physical was switched or read; on a "
                                           "gate set pins = \"native\" (enroll --pins native)")
    return CheckResult("gpio", "ok", f"{where}: relay clicked and returned to safe; sensor reads clear")


class _Probe:
    """A blocking paho client (VERSION2 callbacks, MQTT 5) for one connect and two publishes."""

    def __init__(self, home: Path, device_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-selftest",
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        use_tls(self.client, ClientFiles(home / layout.CA, home / layout.CERT, home / layout.KEY))
        self.done = threading.Event()
        self.connack: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.done.set()
        self.client.on_publish = self._on_publish

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connack = rc
        self.done.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def connect(self, host: str, port: int, timeout: float) -> str | None:
        """None when connected, else why not."""
        try:
            self.client.connect(host, port, keepalive=30)
        except (ssl.SSLError, OSError) as exc:
            return f"TLS/TCP refused: {exc}"
        self.client.loop_start()
        if not self.done.wait(timeout):
            return f"no CONNACK in {timeout:g} s"
        if self.connack is None:
            return "the broker closed the connection (certificate revoked or not trusted?)"
        if self.connack.is_failure:
            return f"CONNACK {self.connack}"
        return None

    def publish(self, topic: str, payload: bytes, timeout: float) -> int | None:
        info = self.client.publish(topic, payload, qos=1)
        with self.cond:
            if not self.cond.wait_for(lambda: info.mid in self.acks, timeout=timeout):
                return None
            return int(self.acks.pop(info.mid).value)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def check_broker(home: Path, record: layout.DeviceRecord | None, timeout: float = 5.0) -> CheckResult:
    if record is None or not record.broker:
        return CheckResult("broker", "warn", "not configured (no broker in device.json): the gate runs offline")
    host, _, port_text = record.broker.rpartition(":")
    if not host or not port_text.isdigit():
        return CheckResult("broker", "fail", f"broker address {record.broker!r} is not host:port")
    probe = _Probe(home, record.device_id)
    try:
        problem = probe.connect(host, int(port_text), timeout)
        if problem is not None:
            return CheckResult("broker", "fail", f"{record.broker}: {problem}")
        # The gate service is stopped while the self-test holds the pins, so "offline" is the truth.
        own = probe.publish(gate_status(record.device_id), OFFLINE, timeout)
        if own is None or own >= 0x80:
            return CheckResult("broker", "fail", f"{record.broker}: publish to own topic refused "
                                                 f"(PUBACK {own if own is not None else 'missing'})")
        other = probe.publish(gate_status("selftest-acl-probe"), OFFLINE, timeout)
        if other != NOT_AUTHORIZED:
            return CheckResult("broker", "fail", f"{record.broker}: publish to another gate's topic was not "
                                                 f"refused (PUBACK {other}): the ACL is not in force")
    finally:
        probe.close()
    return CheckResult("broker", "ok", f"{record.broker}: TLS as {record.device_id}; own topic PUBACK 0x{own:02x}, "
                                       f"other gate's topic 0x{NOT_AUTHORIZED:02x} (ACL enforced)")


def check_clock(record: layout.DeviceRecord | None, max_offset_s: float = MAX_CLOCK_OFFSET_S,
                clock: Callable[[], float] = time.time) -> CheckResult:
    if record is None:
        return CheckResult("clock", "warn", "no issuer configured (no device.json): clock not compared")
    try:
        with IssuerClient(record.issuer, timeout=5.0, clock=clock) as client:
            reading = client.clock_reading()
    except ProvisionError as exc:
        return CheckResult("clock", "fail", str(exc))
    status: Status = "fail" if abs(reading.offset_s) > max_offset_s else "ok"
    return CheckResult("clock", status, describe_offset(reading.offset_s)
                       + (f" (limit {max_offset_s:.0f} s): set the time" if status == "fail" else ""))


def check_disk(cfg: GateConfig, minimum: int = MIN_FREE_BYTES,
               free: Callable[[Path], int] = free_bytes) -> CheckResult:
    available = free(cfg.ledger.path.parent)
    status: Status = "ok" if available >= minimum else "fail"
    return CheckResult("disk", status, f"{available // 2**20} MB free at {cfg.ledger.path.parent} "
                                       f"(need {minimum // 2**20} MB)")


def check_ledger(cfg: GateConfig) -> CheckResult:
    path = cfg.ledger.path
    if not path.is_file():
        return CheckResult("ledger", "fail", f"{path} does not exist: enroll first (citypass provision enroll)")
    try:
        with GateLedger.open(path, config=cfg.ledger) as ledger:
            integrity = ledger.integrity_check()
            seq = ledger.seq
    except Exception as exc:  # a corrupt file fails anywhere: opening, migrating or checking
        return CheckResult("ledger", "fail", f"{path}: {type(exc).__name__}: {exc}")
    if not integrity.ok:
        return CheckResult("ledger", "fail", f"{path}: integrity_check: {'; '.join(integrity.problems[:3])}")
    return CheckResult("ledger", "ok", f"{path.name}: integrity ok, snapshot seq {seq}")


def run_selftest(cfg: GateConfig, config_path: Path, *, pin_factory: Any = None,
                 on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run every check in order (each one isolated: one failing never stops the others)."""
    home = config_path.parent
    record = layout.read_record(home) if (home / layout.DEVICE).is_file() else None
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("camera", lambda: check_camera(cfg)),
        ("decoder", lambda: check_decoder(cfg)),
        ("gpio", lambda: check_gpio(cfg, pin_factory)),
        ("broker", lambda: check_broker(home, record)),
        ("clock", lambda: check_clock(record)),
        ("disk", lambda: check_disk(cfg)),
        ("ledger", lambda: check_ledger(cfg)),
    ]
    results = []
    for name, check in checks:
        try:
            result = check()
        except Exception as exc:  # a self-test reports, it does not crash
            result = CheckResult(name, "fail", f"{type(exc).__name__}: {exc}")
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
