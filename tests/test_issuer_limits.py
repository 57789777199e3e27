"""Bounded work for anyone who can reach the issuer: rate limits per token and address (reports stricter, a few
computed at once), /healthz never limited, long request lines refused and never logged whole, a full store
answered with 507 and Retry-After (the gate keeps its outbox and sends it again), and a device sending garbage
on MQTT logged once per interval rather than with a traceback per message."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from citypass.bench.syncworld import SyncWorld, backlog, fill_outbox, wait_for
from citypass.cli import cli
from citypass.issuer.api.limits import RateLimits
from citypass.issuer.testing import ServedIssuer, served_issuer
from citypass.sync import topics
from citypass.sync.broker import free_port
from tests.helpers.sync import gate_sync, issuer_sync
from tests.helpers.sync import world as world

NOW = 1_800_000_000


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW) as s:
        yield s


def test_report_requests_are_rate_limited_per_token_and_admitted_a_few_at_a_time(served: ServedIssuer) -> None:
    def incidents(_: int) -> httpx.Response:
        with served.client("auditor") as auditor:
            return auditor.get("/v1/incidents")

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(incidents, range(40)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) >= 2 and set(statuses) <= {200, 429, 503}, statuses
    refused = [r for r in answers if r.status_code in (429, 503)]
    assert len(refused) >= 10, statuses  # a burst of 30 per token, 2 computing and 8 waiting at most
    assert all(int(r.headers["Retry-After"]) >= 1 and r.json()["detail"] for r in refused)
    with served.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 200  # never limited
    with served.client("operator") as operator:  # another token has its own bucket
        assert operator.get("/v1/incidents").status_code == 200


def test_requests_are_rate_limited_per_client_address_but_healthz_is_not(tmp_path: Path) -> None:
    limits = RateLimits(per_address=0.1, per_address_burst=5)
    with served_issuer(tmp_path / "issuer", now=NOW, limits=limits) as served, served.client() as anonymous:
        statuses = [anonymous.get("/v1/sites").status_code for _ in range(8)]
        assert statuses == [401] * 5 + [429] * 3  # anonymous: no token, the address bucket is all there is
        assert all(anonymous.get("/healthz").status_code == 200 for _ in range(20))


def test_a_full_store_answers_507_with_retry_after_and_stores_nothing(served: ServedIssuer) -> None:
    with served.client("technician") as tech:
        assert tech.post("/v1/devices", json={"id": "gate-a", "site": 1}).status_code == 201
    events = [{"event_id": f"e-{i}", "tap_id": f"t-{i}", "kind": "tap",
               "body": {"gate_id": "gate-a", "site": 1, "direction": "entry", "decision": "deny",
                        "reason": "unknown_key", "persons": 0, "at": NOW, "pad": "x" * 4000}} for i in range(200)]
    store = served.issuer.store
    store.max_bytes = served.issuer.home.db_path.stat().st_size + 64 * 1024  # ~the disk filling up
    try:
        with served.client("admin") as admin:
            full = admin.post("/v1/taps", json={"device_id": "gate-a", "events": events})
            assert full.status_code == 507, full.text  # an answer, not a reset connection
            assert "storage is full" in full.json()["detail"] and int(full.headers["Retry-After"]) > 0
            assert store.tap_count() == 0
            store.max_bytes = None  # space again: the same batch, sent again, is stored once
            stored = admin.post("/v1/taps", json={"device_id": "gate-a", "events": events})
            assert stored.status_code == 200 and stored.json()["new_taps"] == 200
    finally:
        store.max_bytes = None


def test_a_gate_keeps_its_outbox_while_the_issuers_store_is_full(world: SyncWorld) -> None:
    world.issuer.store.max_bytes = 1  # SQLite keeps the file's current size: no room to grow
    with issuer_sync(world) as sync:
        gate = gate_sync(world, "gate-a")
        try:
            path = world.gate_ledger("gate-a")
            fill_outbox(path, "gate-a", 1500)
            assert wait_for(lambda: sync.workers[0].stats["refused"] >= 2, timeout=20), (  # refused, then resent
                sync.workers[0].stats, backlog(path), world.issuer.store.tap_count())
            assert backlog(path) > 0 and world.issuer.store.tap_count() < 1500
            world.issuer.store.max_bytes = None
            assert wait_for(lambda: backlog(path) == 0, timeout=60)
            assert world.issuer.store.tap_count() == 1500
        finally:
            gate.stop()


def test_garbage_on_a_devices_own_topics_is_logged_once_per_interval(world: SyncWorld,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    files = world.files["gate-b"]
    with issuer_sync(world) as sync, caplog.at_level(logging.WARNING, logger="citypass.sync.issuer_sync"):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gate-b", protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key))
        client.connect(world.broker.host, world.broker.port)
        client.loop_start()
        try:
            for i in range(40):
                topic = topics.gate_requests("gate-b") if i % 2 else topics.gate_taps("gate-b")
                client.publish(topic, b"\xff not cbor " + bytes([i]), qos=1).wait_for_publish(5)
            assert wait_for(lambda: sync.workers[0].complaints.total >= 40, timeout=20)
        finally:
            client.loop_stop()
            client.disconnect()
    mine = [r for r in caplog.records if r.name == "citypass.sync.issuer_sync"]
    assert len(mine) == 1 and "gate-b" in mine[0].getMessage(), [r.getMessage() for r in mine]
    assert all(r.exc_info is None for r in mine) and not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_long_request_lines_are_refused_and_never_logged_whole(tmp_path: Path) -> None:
    home = tmp_path / "issuer"
    assert CliRunner().invoke(cli, ["issuer", "init", "--home", str(home), "--site", "west-lake"]).exit_code == 0
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "citypass"), "issuer", "serve", "--home", str(home),
                                "--port", str(port), "--log-level", "info"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _up(url), timeout=40)
        with httpx.Client(base_url=url, timeout=10) as client:
            answers = [client.get("/v1/" + "a" * 60_000) for _ in range(30)]
        assert {r.status_code for r in answers} == {414}
    finally:
        process.send_signal(signal.SIGTERM)
        err, _ = process.communicate(timeout=30)  # uvicorn's access lines and its other lines
    assert len(err) < 30 * 1500, f"{len(err)} bytes of log for 30 requests"
    assert b"a" * 301 not in err and err.count(b" 414") == 30, err[-2000:]


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        time.sleep(0.1)
        return False
