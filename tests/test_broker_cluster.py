"""The sync protocol on a clustered engine: three nats-server nodes (JetStream, MQTT 3.1.1, TLS client
certificates) started by the test on free loopback ports, configured from the project's broker home.

Gates connect to any node and fail over to the others; the issuer's ingest runs in the degraded mode (plain
subscriptions, every worker gets every batch, the store keeps each tap id once); one node is SIGKILLed while
the gates upload. Every tap is stored exactly once, the signed delta reaches every gate, and the cluster's
permissions are the Mosquitto ACL's (docs/broker.md, "A clustered engine").
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from pathlib import Path

import pytest

from citypass.bench.cluster import ClusterWorld, run
from citypass.bench.syncworld import SyncWorld, backlog, fill_outbox, wait_for
from citypass.gate.config import SyncConfig
from citypass.sync import topics
from citypass.sync.brokerconf import Identity, render_acl
from citypass.sync.cluster import find_nats_server
from citypass.sync.endpoint import Endpoint, stop
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.issuer_sync import IssuerSync
from citypass.sync.natsconf import MQTT_DELIVERY, permissions, render_users, subject
from citypass.wiring.gate import sync_endpoint

IDENTITIES = [Identity("gate-wl-e1", "device", 7), Identity("gate-wl-e2", "device", 7),
              Identity("gate-ly-x1", "device", 2), Identity("site-7-bridge", "bridge", 7),
              Identity("issuer", "service"), Identity("gate-lost", "revoked")]


def _acl_grants(acl: str, user: str) -> tuple[set[str], set[str]]:
    """(write, read) topic filters the Mosquitto ACL gives ``user``: its patterns with %u, then its own lines."""
    write: set[str] = set()
    read: set[str] = set()
    current = None
    for line in acl.splitlines():
        if line.startswith("user "):
            current = line.split(" ", 1)[1]
        elif match := re.fullmatch(r"(pattern|topic) (read|write|readwrite) (\S+)", line):
            kind, access, topic = match.groups()
            if (kind == "pattern" and current is None) or (kind == "topic" and current == user):
                topic = topic.replace("%u", user)
                if access in ("write", "readwrite"):
                    write.add(topic)
                if access in ("read", "readwrite"):
                    read.add(topic)
    return write, read


def test_the_cluster_grants_each_identity_what_the_mosquitto_acl_grants() -> None:
    acl = render_acl(IDENTITIES)
    gates_at = {7: ["gate-wl-e1", "gate-wl-e2"], 2: ["gate-ly-x1"]}
    for ident in IDENTITIES:
        if ident.kind == "revoked":
            continue
        publish, subscribe = permissions(ident, gates_at)
        write, read = _acl_grants(acl, ident.cn)
        if ident.kind != "device":
            # Mosquitto's patterns also give a bridge or a service a gate subtree under its own CN, which no
            # gate uses; the cluster grants them to gates only.
            own = f"{topics.PREFIX}/gate/{ident.cn}/"
            write, read = {t for t in write if not t.startswith(own)}, {t for t in read if not t.startswith(own)}
        assert (set(publish), set(subscribe)) == (write, read), ident
    users = render_users(IDENTITIES)
    assert "gate-lost" not in users  # a revoked certificate maps to no user: its handshake is refused
    device = next(line for line in users.splitlines() if "CN=gate-wl-e1," in line)
    assert '"CN=gate-wl-e1,OU=device,O=City Pass"' in device and '["MQTT"]' in device  # MQTT only
    assert users.count(f'"{MQTT_DELIVERY}"') == 5
    assert subject(topics.gate_taps("gate-wl-e1")) in users.split("CN=gate-wl-e1,")[1].split("} }")[0]
    assert subject(topics.shared("ingest", topics.ALL_TAPS)) == "$share.ingest.citypass.v1.gate.*.taps"


def test_a_gate_configured_for_the_degraded_mode_dials_every_node_with_mqtt_3_1_1(tmp_path: Path) -> None:
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "g.pem", "key": tmp_path / "g.key"}
    sync = SyncConfig(broker_host="n1.city.example", broker_port=8883, mqtt_version="3.1.1", keepalive_s=10,
                      broker_nodes=["n2.city.example:8883", "n3.city.example:18883"], **files)
    endpoint = sync_endpoint(sync)
    assert endpoint.mqtt_version == "3.1.1" and endpoint.keepalive == 10
    assert endpoint.addresses == (("n1.city.example", 8883), ("n2.city.example", 8883), ("n3.city.example", 18883))
    assert sync_endpoint(SyncConfig(broker_host="b", **files)).mqtt_version == "5"
    with pytest.raises(ValueError, match="host:port"):
        SyncConfig(broker_host="b", broker_nodes=["n2"], **files)


def _probe(world: ClusterWorld) -> None:
    """The cluster's permissions at work, with every part still running."""
    assert world.issuer_sync is not None
    # every gate's retained status reached the issuer's publisher through the cluster
    publisher = world.issuer_sync.publisher
    for gate in world.gates:
        assert publisher.wait_status(gate.config.device_id, lambda s: s.online, 10)
    workers = world.issuer_sync.workers
    # Undecodable batches the workers refused (valid batches may still be redelivered after the kill).
    seen = lambda: sum(w.stats["refused"] for w in workers)  # noqa: E731
    suback: list[list[bool]] = []
    done = threading.Event()
    # gate-2's certificate; a client id of its own, so that gate-2's session stays where it is
    client = world.endpoint("gate-2", 2).client("gate-2-probe", clean_start=True)
    client.on_connect = lambda c, u, f, rc, p: done.set()
    client.on_subscribe = lambda c, u, mid, codes, p: suback.append([code.is_failure for code in codes])
    client.connect(*world.cluster.addresses[2])
    client.loop_start()
    try:
        assert done.wait(10)
        before = seen()
        # gate-2 pretends to be gate-1: the engine accepts the PUBLISH and delivers it to nobody
        client.publish(topics.gate_taps("gate-1"), b"forged", qos=1).wait_for_publish(5)
        client.subscribe(topics.gate_acks("gate-1"), 1)
        assert wait_for(lambda: bool(suback), 5)
        assert suback.pop() == [True]  # another gate's acks: refused
        # its own acks: granted (the engine may refuse for a while after the kill, until its leaders are elected)
        for _ in range(10):
            client.subscribe(topics.gate_acks("gate-2"), 1)
            assert wait_for(lambda: bool(suback), 5)
            if suback.pop() == [False]:
                break
            time.sleep(1)
        else:
            pytest.fail("gate-2 could not subscribe to its own acks")
        time.sleep(0.5)
        assert seen() == before
        # the same bytes on its own topic do reach the issuer (and are refused there as undecodable)
        client.publish(topics.gate_taps("gate-2"), b"garbage", qos=1).wait_for_publish(5)
        assert wait_for(lambda: seen() == before + len(workers), 5)
    finally:
        stop(client)
    # Revoking a gate: its user is gone from every node after a reload, and its connection with it. (nats-server
    # 2.9 closes every MQTT connection at a reload that changes users; the others come straight back.)
    lost = world.gates[-1]
    assert lost.state.connected
    world.home.revoke(lost.config.device_id)
    world.cluster.reload()
    assert wait_for(lambda: not lost.state.connected, 10)
    # back within a minute: a node may leave a CONNECT unanswered for a keepalive while the engine settles
    assert wait_for(lambda: all(s.state.connected for s in world.gates[:-1]), 60), \
        [s.config.device_id for s in world.gates[:-1] if not s.state.connected]
    time.sleep(1.5)  # it keeps trying (every 0.5–1.5 s): its certificate maps to no user any more
    assert not lost.state.connected


@pytest.mark.slow
def test_three_nodes_one_sigkilled_mid_upload_lose_nothing_and_store_every_tap_once(tmp_path: Path) -> None:
    print(f"nats-server: {find_nats_server()}")
    result = run(tmp_path, gates=3, taps=2000, workers=2, kill=True, batch=100, ack_timeout_s=5, timeout=25,
                 then=_probe)
    print(result)
    assert result.killed and result.recovery_s is not None
    # every tap went up, and the store holds each exactly once although both workers saw every batch
    assert result.taps_stored == result.taps_sent == 6000
    # both plain-subscription workers saw batches (each new tap was counted new once, by one of them)
    assert result.new_taps == 6000 and result.duplicates > 0
    # the operator's revocation reached every gate, including the one that moved to another node
    assert result.gates_on_seq == 3


def test_the_degraded_mode_is_the_same_protocol_on_any_broker(tmp_path: Path) -> None:
    """MQTT 3.1.1 gates and plain-subscription workers on the embedded Mosquitto: every tap stored once."""
    world = SyncWorld(tmp_path, gates=("gate-a",))
    try:
        def endpoint(cn: str) -> Endpoint:
            return dataclasses.replace(world.endpoint(cn), mqtt_version="3.1.1")

        sent = set(fill_outbox(world.gate_ledger("gate-a"), "gate-a", 1200))
        with IssuerSync(world.issuer, endpoint, workers=2, subscription="plain", tick_s=0.2, poll_s=0.05) as sync:
            gate = GateSync(endpoint("gate-a"), GateSyncConfig(
                device_id="gate-a", ledger_path=world.gate_ledger("gate-a"), root=world.root, site=1,
                batch_size=200, ack_timeout_s=5.0)).start()
            try:
                assert wait_for(lambda: backlog(world.gate_ledger("gate-a")) == 0, 30)
                seq = world.issuer.store.ledger_seq()
                world.issuer.revoke("0123456789abcdef", int(time.time()))
                assert wait_for(lambda: (gate.state.ledger_seq or 0) > seq, 10)
            finally:
                gate.stop()
            stats = [w.stats for w in sync.workers]
        assert world.issuer.store.tap_count() == len(sent) == 1200
        assert sum(s["new_taps"] for s in stats) == 1200 and sum(s["duplicates"] for s in stats) >= 1200
    finally:
        world.close()
