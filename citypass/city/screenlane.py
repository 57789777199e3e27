"""One lane with its result screen, running for real in this process: for the demo, its screenshots and the tests.

:class:`ScreenLane` runs the gate daemon exactly as ``citypass gate run`` does — built by the daemon's wiring
point (:func:`citypass.wiring.gate.build_daemon`), served by :func:`citypass.wiring.gate.serving` (``/healthz``,
``/metrics`` and ``/screen`` on one port) — but on a thread of its own, with a memory camera this class feeds
(the empty lane at the camera's rate, a phone's screen when :meth:`present` is called) and gpiozero's
``MockFactory`` pins, so a visitor can walk through the beam and a fire panel can raise its alarm.

:func:`lane_scene` makes what such a lane needs: an issuer with a scenic spot (soft anti-passback, so that a
second entry is *allowed and flagged*), the snapshot, and codes of each kind (a benefit card among them, whose
admission the screen shows with the uses left).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpiozero.pins.mock import MockFactory

from citypass.bench.frames import synth_frame
from citypass.city.http import DemoError
from citypass.credential.codes import present
from citypass.credential.keys import SigningKey
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.gate.camera import forget_feed, memory_feed
from citypass.gate.camera.base import Image
from citypass.gate.config import GateConfig
from citypass.gate.daemon import GateDaemon, Outcome
from citypass.gate.health import HealthServer
from citypass.gate.logs import EventLog
from citypass.issuer import benefits
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.wiring.gate import build_daemon, serving

SIZE = (960, 540)
FPS = 15
SITE, SITE_TITLE = "west-lake", {"zh": "西湖", "en": "West Lake"}


@dataclass(frozen=True)
class LaneScene:
    """An issuer (home on disk, its sites and keys), a snapshot for the lane, and codes of each kind."""

    issuer: Issuer
    snapshot: Path
    annual: str          # allowed once, then allowed and flagged (soft passback)
    party: str           # a group ticket for three
    forged: str          # another issuer's code: unknown_key
    benefit: str         # a benefit card (惠民卡) with 4 uses a month, bound to ``holder``: shown as a live code
    holder: SigningKey   # the benefit card holder's phone key

    def benefit_code(self, at: int) -> str:
        """The benefit card as its phone shows it at ``at``: a fresh presentation."""
        return present(self.benefit, self.holder, at)


def lane_scene(home: Path, now: int) -> LaneScene:
    issuer = Issuer.init(IssuerHome(home / "issuer"), [], now - 86_400)
    issuer.add_site(SiteSettings(number=1, name=SITE, kind=SiteKind.SCENIC, title="西湖 West Lake",
                                 passback_hard=False), now - 86_400)
    issuer.add_site(SiteSettings(number=2, name="longxiangqiao", kind=SiteKind.METRO, title="龙翔桥 Longxiangqiao"),
                    now - 86_400)
    forger = Issuer.init(IssuerHome(home / "forger"), [(SITE, "scenic")], now - 86_400)
    holder = SigningKey.generate()
    card = benefits.mint(issuer, [SITE], 4, holder.public, now - 86_400)
    snapshot = home / "snapshot.cpls"
    snapshot.write_bytes(issuer.export(now))
    return LaneScene(issuer, snapshot, issuer.mint_annual([SITE], now), issuer.mint_group(SITE, 3, now),
                     forger.mint_annual([SITE], now), card, holder)


def lane_config(home: Path, scene: LaneScene, *, gate_id: str = "west-lake-east-1", port: int = 0,
                stale_after_s: float = 2.0) -> GateConfig:
    """A gate at the scene's scenic spot with its screen on ``port`` (0: a free one) and quick timings."""
    return GateConfig.model_validate({
        "gate_id": gate_id, "site": SITE, "root_key": str(scene.issuer.home.root_pub_path),
        "snapshot": str(scene.snapshot), "ledger": {"path": str(home / f"{gate_id}.sqlite3")}, "pins": "mock",
        "camera": {"source": f"memory:screen-{gate_id}", "width": SIZE[0], "height": SIZE[1], "fps": FPS,
                   "stale_after_s": stale_after_s, "reopen_backoff_min_s": 0.2, "reopen_backoff_max_s": 0.5},
        "barrier": {"passage_timeout_s": 2.0, "open_per_person_s": 1.0, "sensor_bounce_s": None,
                    "fire_alarm_bounce_s": None},
        "decision": {"leave_after_s": 0.3},
        "health": {"host": "127.0.0.1", "port": port},
        "screen": {"title": SITE_TITLE, "hold_s": 3.0},
        "log_level": "error",
    })


class ScreenLane:
    """A running gate with its screen; see the module doc. ``start()`` … ``stop()``; ``restart()`` stops the
    daemon and starts a new one on the same port and ledger, as ``systemctl restart`` would."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self.pins = MockFactory()
        self.feed_name = cfg.camera.source.split(":", 1)[1]
        self.feed = memory_feed(self.feed_name, maxsize=2)
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.port: int | None = None
        self.daemon: GateDaemon | None = None
        self.error: BaseException | None = None
        self._blank = synth_frame(None, "no_code", SIZE, 0)
        self._image: Image = self._blank
        self._camera_on = threading.Event()
        self._camera_on.set()
        self._stopping = threading.Event()
        self._gate: threading.Thread | None = None
        self._feeder = threading.Thread(target=self._feed, name=f"camera-{cfg.gate_id}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.cfg.health.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ScreenLane:
        if not self._feeder.is_alive():
            self._feeder.start()
        ready = threading.Event()
        self.error = None
        self._gate = threading.Thread(target=self._run, args=(ready,), name=f"gate-{self.cfg.gate_id}", daemon=True)
        self._gate.start()
        if not ready.wait(timeout) or self.error is not None:
            raise DemoError(f"lane {self.cfg.gate_id} did not start: {self.error or 'timed out'}")
        return self

    def _run(self, ready: threading.Event) -> None:
        try:
            self.daemon = build_daemon(self.cfg, log=EventLog(gate_id=self.cfg.gate_id, level="error"),
                                       pin_factory=self.pins, observer=self.outcomes.put)
        except BaseException as exc:
            self.error = exc
            ready.set()
            return
        try:
            with serving(self.daemon, signals=False) as server:
                assert isinstance(server, HealthServer), "the lane's config serves /healthz and /screen"
                self.port = server.port
                ready.set()
                self.daemon.run()
        except BaseException as exc:
            self.error = exc
            ready.set()

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        if self._gate is not None:
            self._gate.join(15)

    def restart(self, pause_s: float = 0.0) -> float:
        """Stop the daemon, wait ``pause_s``, start a new one on the same port; seconds the lane was down."""
        started = time.monotonic()
        self.stop_daemon()
        time.sleep(pause_s)
        self.cfg = self.cfg.model_copy(update={"health": self.cfg.health.model_copy(update={"port": self.port})})
        self.start()
        return time.monotonic() - started

    def stop(self) -> None:
        self._stopping.set()
        self.stop_daemon()
        self._feeder.join(5)
        forget_feed(self.feed_name)

    def __enter__(self) -> ScreenLane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the world in front of the gate ---------------------------------------------------------------
    def _feed(self) -> None:
        while not self._stopping.is_set():
            if self._camera_on.is_set():
                self.feed.push(self._image)
            time.sleep(1 / FPS)

    def present(self, text: str | None = None, *, image: Image | None = None, timeout: float = 5.0) -> Outcome:
        """Hold a phone showing ``text`` (or a picture of a phone, ``image``) to the camera until the gate
        decides; then take it away. Returns the daemon's outcome."""
        self._drain()
        frame = image if image is not None else synth_frame(text, "clean", SIZE, 11)
        self._image = frame
        try:
            outcome = self.outcomes.get(timeout=timeout)
        except queue.Empty:
            raise DemoError(f"lane {self.cfg.gate_id}: no decision within {timeout} s") from None
        finally:
            self._image = self._blank
        time.sleep(self.cfg.decision.leave_after_s + 3 / FPS)  # the phone has left the view
        return outcome

    def walk(self, persons: int = 1) -> None:
        """``persons`` people walk through the beam, one after another."""
        beam = self.pins.pin(self.cfg.barrier.sensor_pin)
        for _ in range(persons):
            beam.drive_low()
            time.sleep(0.05)
            beam.drive_high()
            time.sleep(0.05)

    def fire_alarm(self, active: bool) -> None:
        """The building's fire panel raises (or clears) its alarm on the gate's input."""
        pin = self.pins.pin(self.cfg.barrier.fire_alarm_pin)
        alarm_low = self.cfg.barrier.fire_alarm_active_low
        if active == alarm_low:
            pin.drive_low()
        else:
            pin.drive_high()

    def camera(self, on: bool) -> None:
        """Unplug (or plug back) the camera: no frames reach the gate while it is off."""
        if on:
            self._camera_on.set()
        else:
            self._camera_on.clear()

    def wait_status(self, predicate: Callable[[dict[str, object]], bool], timeout: float = 10.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.daemon.status() if self.daemon is not None else {}
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise DemoError(f"lane {self.cfg.gate_id}: status not reached within {timeout} s: {status}")
            time.sleep(0.05)

    def _drain(self) -> None:
        while True:
            try:
                self.outcomes.get_nowait()
            except queue.Empty:
                return


def picture(png: bytes, size: tuple[int, int] = SIZE) -> Image:
    """A screenshot (PNG bytes) placed in a camera frame the way a phone is held up: centred, on grey."""
    import cv2

    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if shot is None:
        raise DemoError("the screenshot is not a PNG image")
    width, height = size
    scale = min(height * 0.95 / shot.shape[0], width * 0.6 / shot.shape[1])
    shot = cv2.resize(shot, (int(shot.shape[1] * scale), int(shot.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    y, x = (height - shot.shape[0]) // 2, (width - shot.shape[1]) // 2
    frame[y : y + shot.shape[0], x : x + shot.shape[1]] = shot
    return frame
