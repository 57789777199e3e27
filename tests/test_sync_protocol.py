"""The sync protocol against a real Mosquitto, a real issuer store and real gate ledger files.

Taps go up exactly once and are marked uploaded only on the issuer's ack; signed deltas come down and
are verified, applied in order, and forged, replayed and gapped ones are handled as docs/mqtt.md says;
statuses are retained; the clock offset is estimated from signed ticks.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest

from citypass.bench.syncworld import SyncWorld, backlog, fill_outbox, wait_for
from citypass.credential.delta import LedgerDelta
from citypass.credential.keys import SigningKey
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.gate.ledger import GateLedger
from citypass.issuer.tokens import create_token
from citypass.sync import codec, topics
from citypass.sync.endpoint import HttpLedgerSource, stop
from tests.helpers.sync import gate_sync, issuer_sync
from tests.helpers.sync import world as world  # the SyncWorld fixture


class Injector:
    """A service identity that publishes raw bytes (a compromised or confused relay, for the tests)."""

    def __init__(self, world: SyncWorld) -> None:
        self.client = world.endpoint("issuer-ingest-4").client("issuer-ingest-4")
        self.client.connect(world.broker.host, world.broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)

    def close(self) -> None:
        stop(self.client)


def test_codec_round_trips_and_refuses_garbage(world: SyncWorld) -> None:
    events = [codec.Event("0190f1c2-7a3b-7c4d-8e5f-60718293a4b5", "t-1", "annul", '{"persons_unused":1}', 5)]
    assert codec.decode_taps(codec.encode_taps(9, events)).events == tuple(events)
    ack = codec.decode_ack(codec.encode_ack(9, ["x"], 1, 2, 3))
    assert (ack.batch_id, ack.event_ids, ack.new_taps, ack.duplicates, ack.quarantined) == (9, ("x",), 1, 2, 3)
    status = codec.Status(online=True, at=1, seq=4, backlog=5, fps=29.5, clock_offset=-0.25, software="s",
                          counters={"forged": 1})
    assert codec.decode_status(codec.encode_status(status)) == status
    assert codec.decode_status(topics.OFFLINE) == codec.Status(online=False)
    assert codec.decode_request(codec.encode_request(12)) == 12
    assert codec.decode_snapshot_notice(codec.encode_snapshot_notice(3)) == 3
    garbage = (b"", b"\xff", codec.encode_request(1), b"\x83\x02\x00\x80", b"\x83\x01\x00\x81\x85\x00\x00\x09\x00\x00")
    for bad in garbage:
        with pytest.raises(codec.CodecError):
            codec.decode_taps(bad)
    ledger_key = world.issuer.ledger_key()
    trust = world.issuer.trust_list(world.now)
    tick = codec.verify_time(codec.sign_time(ledger_key, (world.now + 5) * 1000, 3), trust)
    assert tick == codec.TimeTick((world.now + 5) * 1000, 3)
    with pytest.raises(codec.CodecError):
        codec.verify_time(codec.sign_time(SigningKey.generate(), world.now * 1000, 3), trust)


def test_taps_go_up_exactly_once_and_resends_are_acked_again(world: SyncWorld) -> None:
    path = world.gate_ledger("gate-a")
    tap_ids = fill_outbox(path, "gate-a", 1200)
    with issuer_sync(world) as isync:
        gate = gate_sync(world)
        try:
            assert wait_for(lambda: backlog(path) == 0), f"backlog {backlog(path)}"
        finally:
            gate.stop()
        assert world.issuer.store.tap_count() == 1200
        # Lose the acks of 500 rows (as a power cut after the COMMIT would): they go again, the issuer
        # acks them as duplicates and stores nothing twice.
        with GateLedger.open(path) as ledger:
            ledger.db.conn.execute("UPDATE outbox SET uploaded_at = NULL WHERE seq <= 500")
        gate = gate_sync(world)
        try:
            assert wait_for(lambda: backlog(path) == 0)
        finally:
            gate.stop()
        worker = isync.workers[0]
        assert worker.stats["duplicates"] >= 500 and worker.stats["new_taps"] == 1200
    assert world.issuer.store.tap_count() == 1200
    assert {t.tap_id for t in world.issuer.store.taps()} == set(tap_ids)


def test_nothing_is_marked_uploaded_without_the_issuers_ack(world: SyncWorld) -> None:
    path = world.gate_ledger("gate-a")
    fill_outbox(path, "gate-a", 700)
    gate = gate_sync(world, ack_timeout_s=1.0)
    try:
        assert wait_for(lambda: gate.state.counters.get("batches", 0) >= 2)
        time.sleep(0.5)  # published QoS 1 and PUBACKed by the broker, but no issuer to store and ack them
        assert backlog(path) == 700 and world.issuer.store.tap_count() == 0
        with issuer_sync(world):  # the issuer comes up: the gate's next resend is acked
            assert wait_for(lambda: backlog(path) == 0)
            assert gate.state.counters["resends"] >= 1
    finally:
        gate.stop()
    assert world.issuer.store.tap_count() == 700


def test_two_workers_on_a_shared_subscription_split_the_load(world: SyncWorld) -> None:
    paths = {g: world.gate_ledger(g) for g in ("gate-a", "gate-b")}
    for gate, path in paths.items():
        fill_outbox(path, gate, 3000)
    with issuer_sync(world, workers=2) as isync:
        gates = [gate_sync(world, g, batch_size=200) for g in paths]
        try:
            assert wait_for(lambda: all(backlog(p) == 0 for p in paths.values()))
        finally:
            for g in gates:
                g.stop()
        stats = [w.stats for w in isync.workers]
    assert all(s["batches"] >= 5 for s in stats), stats
    assert sum(s["new_taps"] for s in stats) == 6000 == world.issuer.store.tap_count()


def test_a_busy_worker_stores_the_batches_waiting_together_and_acks_each(world: SyncWorld) -> None:
    """A store slower than the gates (each transaction held 0.2 s): the batches that arrive meanwhile wait, and the
    worker stores them in one transaction the next time — fewer transactions than batches — while every gate gets
    its own acks and every tap is stored once."""
    paths = {g: world.gate_ledger(g) for g in ("gate-a", "gate-b")}
    for gate, path in paths.items():
        fill_outbox(path, gate, 2000)
    store = world.issuer.store
    real = store.store_batches
    sizes: list[int] = []

    def slow(uploads, received_at):  # type: ignore[no-untyped-def]
        sizes.append(len(uploads))
        time.sleep(0.2)
        return real(uploads, received_at)

    store.store_batches = slow
    try:
        with issuer_sync(world, workers=1) as isync:
            gates = [gate_sync(world, g, batch_size=100, ack_timeout_s=30.0) for g in paths]
            try:
                assert wait_for(lambda: all(backlog(p) == 0 for p in paths.values()), 60)
            finally:
                for g in gates:
                    g.stop()
            [stats] = [w.stats for w in isync.workers]
    finally:
        del store.store_batches
    assert stats["new_taps"] == 4000 == store.tap_count() and stats["batches"] >= 40
    assert stats["transactions"] < stats["batches"] and max(sizes) > 1, (stats, sizes)
    assert sum(sizes) == stats["batches"]  # each batch stored in exactly one transaction


def test_signed_deltas_apply_in_order_and_bad_ones_are_rejected_and_reported(world: SyncWorld) -> None:
    path = world.gate_ledger("gate-a")
    issuer = world.issuer
    start = issuer.store.ledger_seq()
    creds = [issuer.credential_ref(issuer.mint_annual(["west-lake"], world.now)).hex() for _ in range(3)]
    with issuer_sync(world) as isync, GateLedger.open(path, root=world.root) as view:
        gate = gate_sync(world)
        injector = Injector(world)
        try:
            assert wait_for(lambda: gate.state.connected)
            # The real thing: a revocation and a new site reach the gate as signed deltas on all/ledger.
            issuer.revoke(creds[0], int(time.time()))
            issuer.add_site(SiteSettings(number=9, name="new-museum", kind=SiteKind.MUSEUM), int(time.time()))
            assert wait_for(lambda: view.seq == start + 2), (view.seq, gate.state)
            assert view.is_revoked(bytes.fromhex(creds[0])) and view.site(9) is not None
            applied = gate.state.counters["deltas"]
            seq = view.seq
            assert seq is not None

            key = issuer.ledger_key()
            revoke_1 = LedgerDelta(seq, seq + 1, int(time.time()), revoked=frozenset({bytes.fromhex(creds[1])}))
            # Forged: signed by a key the trust list does not hold, and a genuine one with a flipped byte.
            injector.publish(topics.ALL_LEDGER, revoke_1.sign(SigningKey.generate()))
            genuine = bytearray(revoke_1.sign(key))
            genuine[-5] ^= 0x01
            injector.publish(topics.site_ledger(1), bytes(genuine))
            assert wait_for(lambda: gate.state.counters["forged"] == 2)
            assert not view.is_revoked(bytes.fromhex(creds[1])) and view.seq == seq
            # Replayed: an old genuine delta is ignored (and counted), not applied twice.
            injector.publish(topics.ALL_LEDGER, LedgerDelta(seq - 1, seq, int(time.time()),
                                                            unrevoked=frozenset({bytes.fromhex(creds[0])})).sign(key))
            assert wait_for(lambda: gate.state.counters["replayed"] == 1)
            assert view.is_revoked(bytes.fromhex(creds[0]))
            # Gap: the gate is at seq and this starts at seq + 1. It asks (MQTT request), the issuer's worker
            # answers on gate/gate-a/ledger with the real delta from seq, and the gate catches up.
            isync.publisher.published_seq += 10  # the publisher "missed" the next changes
            issuer.revoke(creds[1], int(time.time()))
            issuer.revoke(creds[2], int(time.time()))
            injector.publish(topics.ALL_LEDGER, LedgerDelta(seq + 1, seq + 2, int(time.time()),
                                                            revoked=frozenset({bytes.fromhex(creds[2])})).sign(key))
            assert wait_for(lambda: gate.state.counters["gaps"] >= 1)
            assert wait_for(lambda: view.seq == seq + 2)
            assert view.is_revoked(bytes.fromhex(creds[1])) and view.is_revoked(bytes.fromhex(creds[2]))
            assert gate.state.counters["deltas"] == applied + 1
        finally:
            injector.close()
            gate.stop()


def test_a_gate_behind_a_trust_change_fetches_a_snapshot_over_http(world: SyncWorld) -> None:
    from citypass.issuer.api import create_app
    from citypass.issuer.api.server import BackgroundServer

    path = world.gate_ledger("gate-a")
    token = create_token(world.issuer.store, "device", world.now, device_id="gate-a").text
    issuer = world.issuer
    issuer.rotate(int(time.time()))  # a trust-list change: no delta can carry it
    cred = issuer.credential_ref(issuer.mint_annual(["west-lake"], world.now))
    issuer.revoke(cred.hex(), int(time.time()))
    # (the view is opened before the gate starts: opening migrates, which takes the write lock briefly)
    with (BackgroundServer(create_app(issuer)) as server, issuer_sync(world),
          GateLedger.open(path, root=world.root) as view):
        gate = gate_sync(world, fetcher=HttpLedgerSource(server.url, token))
        try:
            assert wait_for(lambda: view.seq == issuer.store.ledger_seq())
            assert view.is_revoked(cred) and len([k for k in view.trust.keys if k.role == "issuer"]) == 2
            # the install ends after the swap (old tables are emptied in batches): its count follows shortly
            assert wait_for(lambda: gate.state.counters.get("snapshots", 0) >= 1), gate.state
        finally:
            gate.stop()


def test_status_is_retained_and_the_clock_offset_is_estimated(world: SyncWorld) -> None:
    skew = 120.0
    with issuer_sync(world) as isync:
        gate = gate_sync(world, clock=lambda: time.time() + skew, clock_alarm_s=5.0)
        try:
            assert wait_for(lambda: gate.state.clock_alarm and gate.estimator.offset is not None, 10)
            assert abs((gate.estimator.offset or 0) - skew) < 0.5
            assert isync.publisher.wait_status("gate-a", lambda s: s.online and s.clock_alarm and s.seq is not None)
            status = isync.publisher.statuses["gate-a"]
            assert status.backlog == 0 and status.software.startswith("citypass")
            assert status.clock_offset is not None and abs(status.clock_offset - skew) < 0.5
        finally:
            gate.stop()
        assert isync.publisher.wait_status("gate-a", lambda s: not s.online)
    health = world.issuer.store.health("gate-a")
    assert health is not None and health.clock_offset_s is not None and abs(health.clock_offset_s - skew) < 0.5
    # Retained: a client connecting now still reads the gate's last status.
    late = world.endpoint("issuer-ingest-3").client("issuer-ingest-3")
    got: list[bytes] = []
    late.on_message = lambda c, u, m: got.append(bytes(m.payload))
    late.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.gate_status("gate-a"), 1)
    late.connect(world.broker.host, world.broker.port)
    late.loop_start()
    try:
        assert wait_for(lambda: bool(got), 5)
    finally:
        stop(late)
    assert codec.decode_status(got[0]).online is False


def test_clients_speak_mqtt5(world: SyncWorld) -> None:
    client = world.endpoint("gate-a").client("gate-a")
    assert client.protocol == mqtt.MQTTv5

