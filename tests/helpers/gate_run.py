"""``citypass gate run`` in a subprocess (:class:`Gate`, its stderr read as JSON events as it comes), and a scene
to run it on (:class:`Scene`): an issuer's snapshot with a scenic and a museum site, codes, and rendered frames
of phones showing them, played as the camera.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from citypass.bench.frames import write_frames
from citypass.credential.snapshot import read_snapshot
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

CITYPASS = Path(sys.executable).parent / "citypass"
SIZE = (640, 480)
FPS = 10
PARTY = 2
LEAD_FRAMES = 10  # blank frames while the daemon finishes starting (the grabber keeps only the newest frame)
CODE_FRAMES = 4  # frames a phone is held up
GAP_FRAMES = 5  # blank frames between phones: 0.5 s, longer than leave_after_s
TAIL_FRAMES = 30
Event = dict[str, Any]


@dataclass(frozen=True)
class Scene:
    """An issuer's snapshot with a scenic and a museum site, codes, and frames of phones showing them."""

    root_pub: Path
    snapshot: Path
    seq: int
    museum: int
    reservation: str
    forged: str
    annual: str
    frames: Path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    base = tmp_path_factory.mktemp("gate-run")
    now = int(time.time())
    sites = [("west-lake", "scenic"), ("city-museum", "museum")]
    issuer = Issuer.init(IssuerHome(base / "issuer"), sites, now=now)
    reservation = issuer.mint_reservation("city-museum", now - 600, now + 3600, PARTY, now)
    annual = issuer.mint_annual(["west-lake"], now)
    # A forger with keys of its own: same format, same sites, but not in the gate's trust list.
    forger = Issuer.init(IssuerHome(base / "forger"), sites, now=now)
    forged = forger.mint_reservation("city-museum", now - 600, now + 3600, PARTY, now)
    snapshot = base / "snapshot.cpls"
    snapshot.write_bytes(issuer.export(now))
    blank: list[tuple[str | None, str]] = [(None, "no_code")]
    plan = blank * LEAD_FRAMES
    for code in (reservation, reservation, forged, annual):
        plan += [(code, "clean")] * CODE_FRAMES + blank * GAP_FRAMES
    plan += blank * TAIL_FRAMES
    write_frames(base / "frames", plan, SIZE, seed=3)
    seq = read_snapshot(snapshot, None).seq
    return Scene(
        base / "issuer" / "root.pub",
        snapshot,
        seq,
        issuer.site_number("city-museum"),
        reservation,
        forged,
        annual,
        base / "frames",
    )


def write_config(
    folder: Path,
    scene: Scene,
    *,
    site: str = "city-museum",
    camera: str | None = None,
    loop: bool = False,
    fps: float = FPS,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gate.toml"
    path.write_text(
        f"""\
gate_id = "cm-e1"
site = "{site}"
root_key = "{scene.root_pub}"
snapshot = "{scene.snapshot}"
pins = "mock"

[ledger]
path = "ledger.sqlite3"

[camera]
source = "{camera or "dir:" + str(scene.frames)}"
width = {SIZE[0]}
height = {SIZE[1]}
fps = {fps}
loop = {"true" if loop else "false"}
stale_after_s = 5.0
reopen_backoff_min_s = 0.2
reopen_backoff_max_s = 1.0

[barrier]
passage_timeout_s = 2.5

[decision]
leave_after_s = 0.3

[health]
port = 0
""",
        encoding="utf-8",
    )
    return path


# -- driving the daemon ---------------------------------------------------------------------------------
class Gate:
    """``citypass gate run`` in a subprocess, its stderr read line by line as it comes."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.proc = subprocess.Popen(
            [str(CITYPASS), "gate", "run", "--config", str(config), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=config.parent,
        )
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="gate-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return [e for e in map(as_event, self.lines) if e is not None]

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_until(self, what: str, check: Callable[[list[Event]], Any], timeout: float = 10.0) -> Any:
        """Wait until ``check(events)`` is truthy; fail with the log so far when it is not in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = check([e for e in map(as_event, self.lines) if e is not None])
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    why = "exited" if self._eof else f"not within {timeout} s"
                    pytest.fail(f"waiting for {what}: daemon {why}; stderr so far:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def event(self, name: str, timeout: float = 10.0) -> Event:
        found: Event = self.wait_until(
            f"event {name!r}", lambda evs: next((e for e in evs if e["event"] == name), None), timeout
        )
        return found

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the daemon did not exit within {timeout} s; stderr:\n{self.stderr}")
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; the exit status and how long the daemon took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def gates() -> Iterator[Callable[..., Gate]]:
    started: list[Gate] = []

    def start(config: Path, *args: str) -> Gate:
        gate = Gate(config, *args)
        started.append(gate)
        return gate

    yield start
    for gate in started:
        gate.close()


def as_event(line: str) -> Event | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "event" in value else None
