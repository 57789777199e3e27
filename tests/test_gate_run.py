"""``citypass gate run`` end to end, as a technician starts it: the real command in a subprocess, a real
issuer snapshot and ledger file, real phone-screen frames decoded by the real decoder, mock GPIO pins,
and /healthz and /metrics fetched over real HTTP.

The museum scenario (one daemon run, shared by the tests that inspect it): a reservation for a party of
two is shown, then shown again while its grant is still open, then a forged code and an annual pass for
another site. Nobody walks through (the pins are mocked), so the grant expires and the reservation is
given back; the ledger file must say all of that after SIGTERM.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citypass.credential.codes import parse
from citypass.credential.reasons import Reason
from citypass.gate.ledger import GateLedger
from citypass.sync.broker import Broker
from citypass.sync.home import BrokerHome
from tests.helpers.gate_run import (
    CODE_FRAMES,
    PARTY,
    Event,
    Gate,
    Scene,
    as_event,
    write_config,
)
from tests.helpers.gate_run import gates as gates
from tests.helpers.gate_run import scene as scene


def http_get(url: str) -> tuple[int, str, str]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=3)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode("utf-8")
    finally:
        conn.close()


def poll_healthz(url: str, want: Callable[[int, dict[str, Any]], bool], timeout: float = 10.0) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    seen: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        status, ctype, body = http_get(url)
        assert ctype == "application/json"
        seen = (status, json.loads(body))
        if want(*seen):
            return seen
        time.sleep(0.05)
    pytest.fail(f"/healthz never reached the wanted state; last answer: {seen}")


def samples(metrics_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- the museum scenario --------------------------------------------------------------------------------
@dataclass
class MuseumRun:
    events: list[Event]
    lines: list[str]
    health_url: str
    healthz_status: int
    healthz: dict[str, Any]
    metrics_type: str
    metrics: str
    exit_code: int
    stop_s: float
    ledger: Path


@pytest.fixture(scope="module")
def museum(scene: Scene, gates: Callable[..., Gate], tmp_path_factory: pytest.TempPathFactory) -> MuseumRun:
    config = write_config(tmp_path_factory.mktemp("museum"), scene)
    gate = gates(config)
    url = gate.event("health")["url"]
    gate.event("started")
    gate.wait_until("four decisions", lambda evs: sum(e["event"] == "decision" for e in evs) >= 4, timeout=20)
    gate.event("grant_ended", timeout=10)
    status, healthz = poll_healthz(url, lambda code, body: body.get("state") == "deciding")
    metrics_status, metrics_type, metrics = http_get(url.replace("/healthz", "/metrics"))
    assert metrics_status == 200
    code, stop_s = gate.stop()
    return MuseumRun(
        gate.events,
        list(gate.lines),
        url,
        status,
        healthz,
        metrics_type,
        metrics,
        code,
        stop_s,
        config.parent / "ledger.sqlite3",
    )


def test_sigterm_stops_the_gate_cleanly(museum: MuseumRun) -> None:
    assert museum.exit_code == 0, "\n".join(museum.lines)
    assert museum.stop_s < 5
    assert museum.events[-1]["event"] == "stopped"


def test_log_is_one_json_event_per_line(museum: MuseumRun) -> None:
    not_json = [line for line in museum.lines if as_event(line) is None]
    assert not not_json, f"stderr lines that are not JSON events: {not_json}"
    assert all(e["gate"] == "cm-e1" and isinstance(e["ts"], float) for e in museum.events)
    names = [e["event"] for e in museum.events]
    assert names[:3] == ["snapshot_loaded", "health", "started"]
    assert names.count("decision") == 4 and names.count("grant_ended") == 1 and names.count("stopped") == 1


def test_started_event_names_the_gate(museum: MuseumRun, scene: Scene) -> None:
    started = next(e for e in museum.events if e["event"] == "started")
    assert (started["site"], started["direction"], started["decoder"]) == ("city-museum", "entry", "retry")
    assert started["ledger_seq"] == scene.seq


def test_decisions_are_logged_in_order(museum: MuseumRun, scene: Scene) -> None:
    decisions = [e for e in museum.events if e["event"] == "decision"]
    reservation = parse(scene.reservation).credential.id.hex()
    got = [(e["decision"], e["reason"], e["credential"], e["persons"], e["relay"]) for e in decisions]
    assert got[0] == ("allow", None, reservation, PARTY, True)
    assert got[1] == ("deny", "already_used", reservation, 0, False)
    assert got[2][:2] in {("deny", "unknown_key"), ("deny", "bad_signature")}  # a 2-byte kid may collide
    assert got[2][2] == parse(scene.forged).credential.id.hex()
    assert got[3][:2] == ("deny", "wrong_site")
    first = decisions[0]
    assert first["product"] == "reservation" and first["kind"] == "entry" and first["fallback"] is False
    assert set(first["ms"]) == {"decoded", "decided", "committed", "relay"}
    assert 0 <= first["ms"]["relay"] < 250  # frame captured -> relay energised, inside the decision deadline
    ended = next(e for e in museum.events if e["event"] == "grant_ended")
    assert (ended["tap"], ended["unused"]) == (first["tap"], PARTY)  # nobody walked through


def test_healthz_reports_a_deciding_gate(museum: MuseumRun, scene: Scene) -> None:
    assert museum.health_url.startswith("http://127.0.0.1:") and museum.health_url.endswith("/healthz")
    assert museum.healthz_status == 200
    body = museum.healthz
    assert body["healthy"] is True and body["state"] == "deciding"
    assert (body["gate"], body["site"], body["direction"]) == ("cm-e1", "city-museum", "entry")
    assert body["ledger"]["seq"] == scene.seq and body["ledger"]["age_s"] >= 0
    assert body["camera"]["state"] == "ok" and body["camera"]["fps"] > 0
    assert body["barrier"] in {"idle", "open"}


def test_metrics_count_decisions_and_time_the_relay(museum: MuseumRun) -> None:
    assert museum.metrics_type.startswith("text/plain")
    values = samples(museum.metrics)
    decisions = {
        (dict(labels)["decision"], dict(labels)["reason"]): value
        for (name, labels), value in values.items()
        if name == "citypass_decisions_total"
    }
    forged = "unknown_key" if ("deny", "unknown_key") in decisions else "bad_signature"
    assert decisions == {
        ("allow", ""): 1.0,
        ("deny", "already_used"): 1.0,
        ("deny", forged): 1.0,
        ("deny", "wrong_site"): 1.0,
    }
    assert values[("citypass_frame_to_relay_seconds_count", ())] == 1.0
    assert 0 < values[("citypass_frame_to_relay_seconds_sum", ())] < 0.25
    assert values[("citypass_frames_total", ())] >= 4 * CODE_FRAMES
    assert values[("citypass_camera_ok", ())] == 1.0
    assert values[("citypass_barrier_events_total", (("event", "GrantExpired"),))] == 1.0


def test_ledger_file_holds_the_taps(museum: MuseumRun, scene: Scene) -> None:
    assert museum.exit_code == 0  # the ledger was closed by the daemon, not by a kill
    reservation = parse(scene.reservation).credential.id
    with GateLedger.open(museum.ledger) as ledger:
        ids = [row[0] for row in ledger.db.conn.execute("SELECT tap_id FROM taps ORDER BY seq")]
        taps = [ledger.tap(tap_id) for tap_id in ids]
        assert len(taps) == 4 and all(t is not None for t in taps)
        allowed, again, forged, wrong_site = (t for t in taps if t is not None)
        assert allowed.allowed and allowed.credential_id == reservation and allowed.persons == PARTY
        assert (allowed.gate_id, allowed.site) == ("cm-e1", scene.museum)
        assert "relay" in allowed.stages
        # The barrier opened but nobody passed (mock pins): the grant expired and the ticket is not burned.
        assert allowed.annulled == PARTY and not allowed.passages
        assert ledger.usage(reservation, scene.museum).persons_used == 0
        assert not again.allowed and again.reason is Reason.ALREADY_USED and again.credential_id == reservation
        assert not forged.allowed and forged.reason in {Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE}
        assert forged.credential_id == parse(scene.forged).credential.id
        assert not wrong_site.allowed and wrong_site.reason is Reason.WRONG_SITE
        kinds = [row.kind for row in ledger.pending()]
        assert kinds.count("tap") == 4 and kinds.count("annul") == 1
        assert ledger.integrity_check().ok


# -- other ways to run ----------------------------------------------------------------------------------
def test_max_frames_stops_by_itself(scene: Scene, gates: Callable[..., Gate], tmp_path: Path) -> None:
    config = write_config(tmp_path, scene, loop=True, fps=30)
    gate = gates(config, "--max-frames", "12")
    assert gate.wait_exit(timeout=20) == 0, gate.stderr
    names = [e["event"] for e in gate.events]
    assert "started" in names and names[-1] == "stopped"


def test_site_not_in_the_snapshot_exits_1(scene: Scene, gates: Callable[..., Gate], tmp_path: Path) -> None:
    config = write_config(tmp_path, scene, site="no-such-museum")
    gate = gates(config)
    assert gate.wait_exit(timeout=20) == 1
    assert "Error: site_not_configured: site 'no-such-museum' is not in the ledger" in gate.stderr
    assert "known: west-lake, city-museum" in gate.stderr
    assert "started" not in [e["event"] for e in gate.events]


@pytest.mark.parametrize(
    ("line", "bad_line", "named"),
    [
        ("stale_after_s = 5.0\n", "stale_afer_s = 5.0\n", "camera.stale_afer_s: Extra inputs are not permitted"),
        ("port = 0\n", 'port = "ninety"\n', "health.port: Input should be a valid integer"),
    ],
)
def test_corrupt_config_exits_1_naming_the_key(
    scene: Scene, gates: Callable[..., Gate], tmp_path: Path, line: str, bad_line: str, named: str
) -> None:
    config = write_config(tmp_path, scene)
    config.write_text(config.read_text(encoding="utf-8").replace(line, bad_line), encoding="utf-8")
    gate = gates(config)
    assert gate.wait_exit(timeout=20) == 1
    assert f"Error: {config}: {named}" in gate.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()  # nothing was opened


@dataclass
class OutOfOrderRun:
    lines: list[str]
    events: list[Event]
    healthz_status: int
    healthz: dict[str, Any]
    metrics: str
    exit_code: int


@pytest.fixture(scope="module")
def out_of_order(scene: Scene, gates: Callable[..., Gate], tmp_path_factory: pytest.TempPathFactory) -> OutOfOrderRun:
    folder = tmp_path_factory.mktemp("no-camera")
    config = write_config(folder, scene, camera=f"dir:{folder / 'no-such-dir'}")
    gate = gates(config)
    url = gate.event("health")["url"]
    gate.event("started")
    status, body = poll_healthz(url, lambda code, body: body.get("state") == "out_of_order")
    _, _, metrics = http_get(url.replace("/healthz", "/metrics"))
    gate.event("camera")
    code, _ = gate.stop()
    return OutOfOrderRun(list(gate.lines), gate.events, status, body, metrics, code)


def test_missing_camera_folder_puts_the_lane_out_of_order(out_of_order: OutOfOrderRun) -> None:
    assert out_of_order.healthz_status == 503
    body = out_of_order.healthz
    assert body["healthy"] is False and body["state"] == "out_of_order"
    assert body["camera"]["state"] == "out_of_order" and "no such directory" in body["camera"]["last_error"]
    assert body["barrier"] == "out_of_order"
    assert samples(out_of_order.metrics)[("citypass_camera_ok", ())] == 0.0
    camera = next(e for e in out_of_order.events if e["event"] == "camera")
    assert camera["level"] == "warning" and camera["state"] == "out_of_order"
    assert out_of_order.exit_code == 0 and out_of_order.events[-1]["event"] == "stopped"


def test_camera_warnings_are_json_events_too(out_of_order: OutOfOrderRun) -> None:
    not_json = [line for line in out_of_order.lines if as_event(line) is None]
    assert not not_json, f"stderr lines that are not JSON events: {not_json}"


# -- one log stream ------------------------------------------------------------------------------------------
def test_sync_warnings_are_json_lines_of_the_one_event_log(scene: Scene, gates: Callable[..., Gate],
                                                            tmp_path: Path) -> None:
    """The sync thread logs through the standard ``logging`` module; in the daemon every project logger goes
    through the same JSON event log, once: a broker that dies is one JSON warning line, not plain text too."""
    home = BrokerHome(tmp_path / "broker").init()
    files = home.add_device_with_key("cm-e1", scene.museum, tmp_path / "keys")
    with Broker(home) as broker:
        config = write_config(tmp_path / "gate", scene, loop=True)
        with config.open("a", encoding="utf-8") as fh:
            fh.write(f'\n[sync]\nbroker_host = "{broker.host}"\nbroker_port = {broker.port}\nca = "{files.ca}"\n'
                     f'cert = "{files.cert}"\nkey = "{files.key}"\nreconnect_max_s = 1\n')
        gate = gates(config)
        gate.event("sync_connected", timeout=20)
        broker.kill()
        warning = gate.event("sync_disconnected", timeout=20)
    assert warning["level"] == "warning" and warning["gate"] == "cm-e1" and "reason" in warning
    assert gate.stop(timeout=10)[0] == 0
    not_json = [line for line in gate.lines if as_event(line) is None]
    assert not not_json, f"stderr lines that are not JSON events: {not_json}"
    mentions = [line for line in gate.lines if "disconnected" in line]
    assert len(mentions) == len([e for e in gate.events if e["event"] == "sync_disconnected"]) >= 1
