"""Three issuer nodes — three ``citypass issuer serve`` processes — on one PostgreSQL database and one broker
home act as one issuer: fifty bookings spread over them for five places give five; an enrollment redeemed at
any node gets a certificate from the one device CA; a revocation sent to every node at once is one ledger
change; taps uploaded to any node (each batch twice, to two nodes) are stored once, also when one node is
SIGKILLed in the middle and its clients go on with another node. With MQTT ingest workers on every node,
gates' taps all arrive once through the shared subscription while a node is killed, and a revocation goes out
as one delta, not one per node."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from citypass.bench.ingest import synthetic_events
from citypass.bench.syncworld import backlog, fill_outbox, wait_for
from citypass.credential.delta import parse_delta
from citypass.gate.ledger import GateLedger
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Device
from citypass.issuer.service import Issuer
from citypass.issuer.testing import SITES
from citypass.issuer.tokens import create_token
from citypass.sync import topics
from citypass.sync.broker import Broker
from citypass.sync.ca import make_csr, new_key
from citypass.sync.endpoint import Endpoint
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.home import BrokerHome
from tests.helpers.databases import Databases
from tests.helpers.served import Served

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    home: Path
    database: str
    broker: Broker
    nodes: list[Served]
    tokens: dict[str, str]
    started: int
    alive: list[bool] = field(default_factory=list)

    def client(self, node: int, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.nodes[node].url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def kill(self, node: int) -> None:
        self.alive[node] = False
        self.nodes[node].stop(signal.SIGKILL)

    def post_anywhere(self, token: str, path: str, body: dict[str, Any], first: int) -> httpx.Response:
        """POST to node ``first``; on a connection failure (a dead node) go on with the next live one."""
        for step in range(len(self.nodes)):
            node = (first + step) % len(self.nodes)
            try:
                with self.client(node, token) as client:
                    return client.post(path, json=body)
            except httpx.TransportError:
                continue
        raise AssertionError("no node answered")

    def open(self) -> Issuer:
        return Issuer.open(IssuerHome(self.home))


@contextmanager
def _cluster(tmp_path: Path, database: str, broker: Broker, extra: list[str]) -> Iterator[Cluster]:
    started = int(time.time()) - 60
    issuer = Issuer.init(IssuerHome(tmp_path / "issuer"), SITES, now=started, database=database)
    tokens = {role: create_token(issuer.store, role, started, label=f"nodes {role}").text
              for role in ("issuer", "technician", "admin", "auditor")}
    issuer.close()
    nodes = [Served(["--home", str(tmp_path / "issuer"), "--database", database, "--broker-home",
                     str(broker.home.path), "--broker", f"{broker.host}:{broker.port}", "--node", f"n{i}", *extra])
             for i in range(3)]
    cluster = Cluster(tmp_path / "issuer", database, broker, nodes, tokens, started, [True] * 3)
    try:
        for node in nodes:  # one after the other: each enrols its MQTT identities in the shared broker home
            node.start()
        yield cluster
    finally:
        for i, node in enumerate(nodes):
            if cluster.alive[i] and node.process is not None and node.process.poll() is None:
                node.stop(signal.SIGTERM)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(BrokerHome(tmp_path / "broker").init()) as running:
        yield running


def test_three_http_nodes_book_enrol_revoke_and_ingest_as_one_through_a_killed_node(
        tmp_path: Path, pg_databases: Databases, broker: Broker) -> None:
    database = pg_databases()
    assert database is not None
    with _cluster(tmp_path, database, broker, []) as cluster:
        tech, issuer_token = cluster.tokens["technician"], cluster.tokens["issuer"]
        # -- enrollment at every node, one device CA -------------------------------------------------------
        device_tokens: dict[str, str] = {}
        cas = set()
        for i in range(3):
            gate_id = f"gate-n{i}"
            with cluster.client(0, tech) as c:
                assert c.post("/v1/devices", json={"id": gate_id, "site": 1, "direction": "entry"}).is_success
                secret = c.post("/v1/enrollments", json={"device_id": gate_id}).json()["token"]
            key = new_key()
            with httpx.Client(base_url=cluster.nodes[i].url, timeout=30) as anonymous:
                grant = anonymous.post("/v1/enrollments/redeem",
                                       json={"token": secret, "csr": make_csr(key, gate_id).decode()})
            assert grant.status_code == 201, grant.text
            cert = x509.load_pem_x509_certificate(grant.json()["certificate"].encode())
            ca = x509.load_pem_x509_certificate(grant.json()["ca_certificate"].encode())
            cert.verify_directly_issued_by(ca)
            cas.add(ca.fingerprint(hashes.SHA256()))
            device_tokens[gate_id] = grant.json()["api_token"]
        assert len(cas) == 1
        # -- fifty bookings over three nodes for five places -------------------------------------------------
        with cluster.client(1, issuer_token) as c:
            slot = c.post("/v1/venues/zhejiang-museum/slots", json={
                "starts_at": cluster.started + 7200, "ends_at": cluster.started + 10_800, "capacity": 5}).json()["id"]
        start = threading.Barrier(50)

        def reserve(n: int) -> int:
            with cluster.client(n % 3, issuer_token) as c:
                start.wait()
                return c.post("/v1/reservations", json={"slot_id": slot, "party": 1}).status_code

        with ThreadPoolExecutor(50) as pool:
            assert Counter(pool.map(reserve, range(50))) == {201: 5, 409: 45}
        # -- one revocation sent to every node at once: one change -----------------------------------------
        with cluster.client(2, issuer_token) as c:
            code = c.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}).json()
        admin = cluster.tokens["admin"]
        issuer = cluster.open()
        try:
            seq = issuer.store.ledger_seq()
            with ThreadPoolExecutor(3) as pool:
                results = list(pool.map(lambda n: cluster.post_anywhere(
                    admin, "/v1/revocations", {"credential_id": code["credential_id"]}, n).status_code, range(3)))
            assert all(s in (200, 201) for s in results), results
            assert issuer.store.ledger_seq() == seq + 1
            assert [c.kind for c in issuer.store.changes_since(seq, 10)] == ["revoke"]
        finally:
            issuer.close()
        # -- taps to any node, every batch twice, one node SIGKILLed midway ----------------------------------
        rng = random.Random(19)
        sent: set[str] = set()
        lock = threading.Lock()

        def upload(gate_index: int) -> None:
            gate_id = f"gate-n{gate_index}"
            rows = synthetic_events(1200, gate_id, seed=100 + gate_index)
            for b in range(0, len(rows), 100):
                events = rows[b:b + 100]
                body = {"events": events}
                for first in (rng.randrange(3), rng.randrange(3)):
                    response = cluster.post_anywhere(device_tokens[gate_id], "/v1/taps", body, first)
                    assert response.status_code == 200, response.text
                    assert set(response.json()["acknowledged"]) == {e["event_id"] for e in events}
                with lock:
                    sent.update(e["tap_id"] for e in events if e["kind"] == "tap")

        uploaded_at_kill: list[int] = []

        def kill() -> None:
            # after real progress, not after a fixed time: on a loaded machine one second may be before any upload
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with lock:
                    if len(sent) >= 600:
                        break
                time.sleep(0.02)
            with lock:
                uploaded_at_kill.append(len(sent))
            cluster.kill(1)

        killer = threading.Thread(target=kill)
        killer.start()
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(upload, range(3)))
        killer.join()
        assert not cluster.alive[1] and 0 < uploaded_at_kill[0] < 3600, uploaded_at_kill  # killed mid-load
        issuer = cluster.open()
        try:
            stored = issuer.store.taps(limit=100_000)
            assert len(stored) == len(sent) == 3600 and {t.tap_id for t in stored} == sent
            assert sum(t.annulled for t in stored) == 360  # every tenth tap annulled, once
        finally:
            issuer.close()


def test_mqtt_ingest_workers_on_three_nodes_take_every_tap_once_and_publish_each_change_once(
        tmp_path: Path, pg_databases: Databases, broker: Broker) -> None:
    database = pg_databases()
    assert database is not None
    gates = ["gate-a", "gate-b", "gate-c", "gate-d"]
    with _cluster(tmp_path, database, broker, ["--mqtt-workers", "2"]) as cluster:
        issuer = cluster.open()
        try:
            for gate in gates:
                issuer.store.add_device(Device(gate, 1, "entry", "test gate", "enrolled", cluster.started))
            snapshot, root = issuer.export(int(time.time())), issuer.root_key().public
        finally:
            issuer.close()
        deltas: list[bytes] = []
        watcher = Endpoint(broker.host, broker.port, tls=broker.home.service_files("watcher", tmp_path / "w"))
        client = watcher.client("watcher")
        subscribed = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.ALL_LEDGER, qos=1)
        client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        client.on_message = lambda c, u, m: deltas.append(bytes(m.payload))
        watcher.start(client, clean_start=True, session_expiry=0)
        syncs = []
        try:
            assert subscribed.wait(20)
            paths = {}
            for gate in gates:
                path = tmp_path / f"{gate}.sqlite3"
                with GateLedger.open(path, root=root) as ledger:
                    ledger.load_snapshot(snapshot)
                    ledger.set_identity(gate, 1, Direction.ENTRY)
                files = broker.home.add_device_with_key(gate, 1, tmp_path / f"{gate}-keys")
                config = GateSyncConfig(device_id=gate, ledger_path=path, root=root, site=1, ack_timeout_s=2.0,
                                        status_interval_s=1.0, catch_up_interval_s=1.0)
                syncs.append(GateSync(Endpoint(broker.host, broker.port, tls=files, min_backoff_s=0.2,
                                               max_backoff_s=1), config).start())
                paths[gate] = path
            for round_ in range(4):
                for gate in gates:
                    fill_outbox(paths[gate], gate, 250, start=round_ * 250)
                if round_ == 1:
                    cluster.kill(0)  # mid-upload: its workers' unacknowledged batches are resent by the gates
            assert wait_for(lambda: all(backlog(p) == 0 for p in paths.values()), timeout=120), \
                {g: backlog(p) for g, p in paths.items()}
            issuer = cluster.open()
            try:
                assert issuer.store.tap_count() == 4 * 1000
                seq = issuer.store.ledger_seq()
                before = len(deltas)
                issuer.revoke("aabbccddeeff0011", int(time.time()), "lost")
                assert wait_for(lambda: len(deltas) > before, timeout=20)
                time.sleep(2.0)  # time for a second node to publish it too, if it would
                news = [parse_delta(d)[0] for d in deltas[before:]]
                revoked = {bytes.fromhex("aabbccddeeff0011")}
                assert [(d.base_seq, d.seq, d.revoked) for d in news] == [(seq, seq + 1, revoked)]
            finally:
                issuer.close()
        finally:
            for s in syncs:
                s.stop()
            client.disconnect()
            client.loop_stop()
