"""The lane's screen without a browser: its event stream from a running daemon read over HTTP, what the daemon
says for each condition of the lane, and what the endpoint refuses to serve."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from citypass.city.screenlane import ScreenLane, lane_config, lane_scene
from citypass.credential.catalog import SHIPPED
from citypass.credential.sites import SiteSettings
from citypass.gate.config import GateConfig
from citypass.gate.policy import GatePolicy
from citypass.gate.screen.display import LaneScreen
from citypass.gate.screen.hub import ScreenHub
from citypass.gate.screen.texts import ScreenTexts


class EventReader:
    """An event-stream client on its own thread: every (event, data) it has read so far."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=None))
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with self._client.stream("GET", url) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                name = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name is not None:
                        with self._cond:
                            self.events.append((name, json.loads(line[6:])))
                            self._cond.notify_all()
        except httpx.HTTPError:
            pass  # the daemon stopped

    def wait(self, kind: str, after: int = 0, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        with self._cond:
            found = self._cond.wait_for(lambda: next(((i, d) for i, (_, d) in enumerate(self.events)
                                                       if i >= after and d.get("kind") == kind), None), timeout)
        assert found, f"no {kind!r} event; got {self.events}"
        return found

    def close(self) -> None:
        self._client.close()


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScreenLane, Any]]:
    home = tmp_path_factory.mktemp("screen-http")
    scene = lane_scene(home, int(time.time()))
    with ScreenLane(lane_config(home, scene, gate_id="screen-http-1")) as running:
        yield running, scene


def test_the_stream_says_idle_then_each_decision_stamped_with_the_relay_and_nothing_about_the_pass(
        lane: tuple[ScreenLane, Any]) -> None:
    gate, scene = lane
    reader = EventReader(gate.url + "/screen/events")
    try:
        _, idle = reader.wait("idle")
        assert [line["lang"] for line in idle["lines"]] == ["zh", "en"] and idle["site"] == "西湖 · West Lake"
        assert idle["no_connection"]["lines"][1]["title"] == "Screen not connected to the gate"
        outcome = gate.present(scene.annual)
        i, allow = reader.wait("allow")
        relay_wall = time.time() - (time.monotonic() - outcome.stages["relay"])
        assert abs(allow["at"] - relay_wall) < 0.05 and allow["persons"] == 1 and allow["flags"] == []
        assert allow["lines"][0] == {"lang": "zh", "title": "请通行", "details": []}
        gate.walk(1)
        gate.present(scene.forged)
        _, deny = reader.wait("deny", after=i + 1)
        assert deny["reason"] == "unknown_key" and deny["lines"][1]["details"] == ["Please ask a member of staff"]
        credential = outcome.decision.credential
        assert credential is not None
        for _, data in reader.events:  # a screen shows the lane's words, never who came through
            assert credential.id.hex() not in json.dumps(data) and "CP1:" not in json.dumps(data)
    finally:
        reader.close()


def test_only_the_built_page_is_served_and_healthz_shares_the_port(lane: tuple[ScreenLane, Any]) -> None:
    gate, _ = lane
    with httpx.Client(base_url=gate.url) as client:
        page = client.get("/screen")
        assert page.status_code == 200 and "/screen/assets/screen.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/screen/assets/screen.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/screen/nope.js").status_code == 404
        assert client.get("/healthz").json()["state"] == "deciding"
    # a path that climbs out of the page's folder, sent as it is (an HTTP client would tidy it up)
    with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as sock:
        sock.sendall(b"GET /screen/../texts.py HTTP/1.0\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.0 404"), answer[:40]


def test_without_the_screen_only_health_is_served(tmp_path: Path) -> None:
    scene = lane_scene(tmp_path, int(time.time()))
    cfg = lane_config(tmp_path, scene, gate_id="no-screen-1")
    cfg = cfg.model_copy(update={"screen": cfg.screen.model_copy(update={"enabled": False})})
    with ScreenLane(cfg) as gate, httpx.Client(base_url=gate.url) as client:
        assert gate.daemon is not None and gate.daemon.display is None
        assert client.get("/screen").status_code == 404 and client.get("/healthz").status_code == 200


def lane_screen(stale_ledger: str) -> tuple[LaneScreen, ScreenHub]:
    hub = ScreenHub(ping_s=0.05)
    texts = ScreenTexts(SHIPPED, ["zh", "en"], {"en": "West Lake"})
    site = SiteSettings(number=1, name="west-lake", staleness_hours=72)
    return LaneScreen(hub, texts, site, GatePolicy(stale_ledger=stale_ledger)), hub  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "policy", "expected"), [
    ({"state": "deciding", "barrier": "idle", "ledger": {"age_s": 60}}, "deny", ("idle", None)),
    ({"state": "deciding", "barrier": "idle", "ledger": {"age_s": 80 * 3600}}, "allow_flag", ("idle", None)),
    ({"state": "deciding", "barrier": "idle", "ledger": {"age_s": 80 * 3600}}, "deny",
     ("out_of_order", "ledger_stale")),
    ({"state": "out_of_order", "barrier": "out_of_order", "ledger": {"age_s": 60}}, "deny",
     ("out_of_order", "camera")),
    ({"state": "out_of_order", "barrier": "fire_alarm", "ledger": {"age_s": 80 * 3600}}, "deny", ("fire", None)),
])
def test_the_lane_condition_from_the_daemons_status(status: dict[str, Any], policy: str,
                                                    expected: tuple[str, str | None]) -> None:
    screen, hub = lane_screen(policy)
    assert screen.condition(status) == expected
    stream = hub.stream()
    screen.show_status(status)
    screen.show_status(dict(status))  # unchanged: published once
    frames = next(stream) + next(stream)  # the lane state, then a ping: there was no second lane event
    assert frames.count(b"event: lane") == 1 and b"event: ping" in frames
    assert f'"kind":"{expected[0]}"'.encode() in frames
    if expected[1] == "ledger_stale":
        assert "闸机数据过旧".encode() in frames and b"Please use another lane" in frames
    hub.close()


def test_a_language_without_a_catalog_is_refused_when_the_config_loads() -> None:
    base = {"gate_id": "g1", "site": "west-lake", "root_key": "/r.pub", "ledger": {"path": "/l.db"}}
    assert GateConfig.model_validate(base | {"screen": {"languages": ["en", "zh"]}}).screen.languages == ["en", "zh"]
    with pytest.raises(ValidationError, match="no catalog for language"):
        GateConfig.model_validate(base | {"screen": {"languages": ["zh", "fr"]}})


@pytest.mark.slow
def test_bench_gate_with_a_screen_client_delivers_every_decision_to_it() -> None:
    from citypass.bench.gate_screen import run_screen_comparison, screen_verdict

    runs = run_screen_comparison([(640, 480)], frames=60, every=6, hold=2, seed=1)["640x480"]
    assert [r.screen for r in runs] == [False, True, False, True]
    for run in runs:
        assert run.result.relays > 0
        if run.screen:
            assert run.shown == run.received and run.shown is not None and run.shown >= run.result.decided
        else:
            assert run.shown is None and run.received is None
    assert "the screen read every decision" in screen_verdict({"640x480": runs})
