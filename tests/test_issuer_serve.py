"""``citypass issuer serve`` as a service: it comes back after a stop, a crash or a reboot with the same MQTT
identities (a real Mosquitto, a real gate's outbox drained through it each time), its ingest group is a random
secret of the home, and it will not serve plain HTTP beyond loopback unless told to."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from citypass.bench.syncworld import backlog, fill_outbox, wait_for
from citypass.cli import cli
from citypass.gate.ledger import GateLedger
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Device
from citypass.issuer.service import Issuer
from citypass.sync.broker import Broker
from citypass.sync.endpoint import Endpoint
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.home import BrokerHome
from tests.helpers.served import Served


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    home = BrokerHome(tmp_path / "broker").init()
    with Broker(home) as running:
        yield running


def test_a_stopped_or_killed_issuer_comes_back_with_the_same_mqtt_identity(tmp_path: Path, broker: Broker) -> None:
    home = tmp_path / "issuer"
    issuer = Issuer.init(IssuerHome(home), [("west-lake", "scenic")], now=int(time.time()) - 60)
    issuer.store.add_device(Device("gate-a", 1, "entry", "test gate", "enrolled", int(time.time()) - 60))
    snapshot, root = issuer.export(int(time.time())), issuer.root_key().public
    group = issuer.ingest_group()
    issuer.close()
    ledger_path = tmp_path / "gate-a.sqlite3"
    with GateLedger.open(ledger_path, root=root) as ledger:
        ledger.load_snapshot(snapshot)
        ledger.set_identity("gate-a", 1, Direction.ENTRY)
    files = broker.home.add_device_with_key("gate-a", 1, tmp_path / "gate-keys")
    config = GateSyncConfig(device_id="gate-a", ledger_path=ledger_path, root=root, site=1, ack_timeout_s=2.0,
                            status_interval_s=0.5, catch_up_interval_s=0.5)
    gate = GateSync(Endpoint(broker.host, broker.port, tls=files, min_backoff_s=0.2, max_backoff_s=1),
                    config).start()
    served = Served(["--home", str(home), "--broker-home", str(broker.home.path),
                     "--broker", f"{broker.host}:{broker.port}", "--mqtt-workers", "1"])
    key = home / "mqtt" / "issuer-ingest-1" / "issuer-ingest-1.key"
    cert = key.with_suffix(".pem")
    identity: tuple[bytes, bytes] | None = None
    sent = 0
    try:
        for round_, stop in enumerate((signal.SIGKILL, signal.SIGTERM, signal.SIGKILL)):
            served.start()  # before the fix: "…issuer-ingest-1.key exists: refusing to replace a device key"
            fill_outbox(ledger_path, "gate-a", 20, start=sent)
            sent += 20
            if not wait_for(lambda: backlog(ledger_path) == 0, timeout=60):
                raise AssertionError(f"round {round_}: {backlog(ledger_path)} taps not acked; gate "
                                     f"{gate.counters}; issuer stderr: {served.stop(signal.SIGTERM)[-3000:]}")
            now = (key.read_bytes(), cert.read_bytes())
            assert identity is None or now == identity, "the identity changed across a restart"
            identity = now
            served.stop(stop)
    finally:
        gate.stop()
        if served.process is not None and served.process.poll() is None:
            served.stop(signal.SIGKILL)
    reopened = Issuer.open(IssuerHome(home))
    try:
        assert reopened.store.tap_count() == sent
        assert reopened.ingest_group() == group and group.startswith("ingest-") and len(group) == 23
    finally:
        reopened.close()


def test_a_revoked_service_certificate_is_renewed_over_the_same_key(tmp_path: Path) -> None:
    home = BrokerHome(tmp_path / "broker").init()
    first = home.service_files("issuer", tmp_path / "mqtt")
    key, cert = first.key.read_bytes(), first.cert.read_bytes()
    assert home.service_files("issuer", tmp_path / "mqtt").cert.read_bytes() == cert
    home.revoke("issuer")
    renewed = home.service_files("issuer", tmp_path / "mqtt")
    assert renewed.key.read_bytes() == key and renewed.cert.read_bytes() != cert
    assert [i.kind for i in home.identities() if i.cn == "issuer"] == ["service"]


def test_every_issuer_home_gets_its_own_random_ingest_group(tmp_path: Path) -> None:
    groups = set()
    for name in ("a", "b"):
        issuer = Issuer.init(IssuerHome(tmp_path / name), [("west-lake", "scenic")], now=1_800_000_000)
        groups.add(issuer.ingest_group())
        assert issuer.ingest_group() == issuer.ingest_group()
        issuer.close()
    assert len(groups) == 2 and "ingest" not in groups


def test_plain_http_beyond_loopback_is_refused_unless_asked_for(tmp_path: Path) -> None:
    home = tmp_path / "issuer"
    runner = CliRunner()
    assert runner.invoke(cli, ["issuer", "init", "--home", str(home), "--site", "west-lake"]).exit_code == 0
    refused = runner.invoke(cli, ["issuer", "serve", "--home", str(home), "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "not a loopback address" in refused.output
    half = runner.invoke(cli, ["issuer", "serve", "--home", str(home), "--tls-cert", str(home / "root.pub")])
    assert half.exit_code == 2 and "both --tls-cert and --tls-key" in half.output
    unit = (Path(__file__).parent.parent / "systemd" / "citypass-issuer.service").read_text()
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert "--host 127.0.0.1" in exec_start and "0.0.0.0" not in exec_start
