"""The issuer's ingest workers on the NATS cluster's JetStream work queue (citypass.sync.ingest_queue), on a real
three-node cluster started on free loopback ports (:class:`citypass.bench.cluster.ClusterWorld`, as in
tests/test_broker_cluster.py): gates publish over MQTT 3.1.1 as ever; a stream with work-queue retention holds
their batches while no worker runs; a durable pull consumer hands each batch to one worker; a worker SIGKILLed
with batches in hand loses none (they come back to another worker after the ack wait)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from click.testing import CliRunner

from citypass.bench.cluster import ClusterWorld
from citypass.bench.syncworld import backlog, fill_outbox, wait_for
from citypass.errors import InvalidInput, Unavailable
from citypass.sync import topics, workqueue
from citypass.sync.brokerconf import Identity
from citypass.sync.endpoint import Endpoint, tls_context
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.ingest_queue import QueueWorker
from citypass.sync.natsconf import render_users
from citypass.sync.subjects import subject, topic
from citypass.sync.workqueue import WorkQueue, parse_servers
from citypass.wiring.issuer import serve

GATES = ("gate-1", "gate-2")
LIVE = ("gate-3", "gate-4")


def test_queue_settings_subjects_and_grants() -> None:
    assert parse_servers(["n1:4222", "nats://n2:4222,tls://[::1]:4223"]) == (
        "nats://n1:4222", "nats://n2:4222", "tls://[::1]:4223")
    for bad in ("n1", "http://n1:4222", "n1:0", ""):
        with pytest.raises(InvalidInput):
            parse_servers(bad)
    assert WorkQueue(("nats://a:1",)).stream_replicas == 1
    assert WorkQueue(tuple(f"nats://n{i}:1" for i in range(5))).stream_replicas == 3
    assert WorkQueue(("nats://a:1",), replicas=3).stream_replicas == 3
    with pytest.raises(InvalidInput):
        WorkQueue(("nats://a:1",), consumer="in gest")
    # the queue's subjects are the gates' MQTT topics as the engine names them, and back
    for device in ("gate-wl-e1", "gate.wl.e1"):
        assert topic(subject(topics.gate_taps(device))) == topics.gate_taps(device)
    assert workqueue.captured() == [subject(topics.ALL_TAPS), subject(topics.ALL_REQUESTS)]
    # services may use the queue's stream and consumer on the NATS port; gates get nothing of JetStream
    users = render_users([Identity("gate-1", "device", 1), Identity("issuer-ingest-1", "service")])
    gate, service = (users.split(f"CN={cn},")[1].split("} }")[0] for cn in ("gate-1", "issuer-ingest-1"))
    assert "$JS" not in gate and "_INBOX" not in gate
    assert '"$JS.API.CONSUMER.MSG.NEXT.CITYPASS_INGEST.ingest"' in service and '"_INBOX.>"' in service
    assert "$JS.API.>" not in service and "$MQTT_" not in service  # nothing else of JetStream


def test_serve_refuses_options_that_do_not_go_together(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--home", str(tmp_path)]
    cases = [
        (["--ingest", "jetstream", "--mqtt-workers", "1", "--mqtt-version", "3.1.1"], "needs --nats"),
        (["--nats", "nats://n1:4222"], "--nats is for --ingest jetstream"),
        (["--ingest", "jetstream", "--nats", "n1:4222", "--mqtt-version", "3.1.1"], "needs --mqtt-workers"),
        (["--ingest", "jetstream", "--nats", "n1:4222", "--mqtt-workers", "1"], "add --mqtt-version 3.1.1"),
        (["--ingest", "jetstream", "--nats", "n1", "--mqtt-workers", "1", "--mqtt-version", "3.1.1"],
         "is not a NATS server"),
    ]
    for args, message in cases:
        result = runner.invoke(serve, base + args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_a_cluster_that_is_not_reachable_is_a_clear_error(tmp_path: Path) -> None:
    from citypass.sync.broker import free_port

    port = free_port()  # nobody listens there
    world = _Issuer(tmp_path)
    queue = WorkQueue((f"nats://127.0.0.1:{port}",), connect_timeout_s=1.5)
    worker = QueueWorker(world.issuer, Endpoint("127.0.0.1", free_port(), None, mqtt_version="3.1.1"),
                         "issuer-ingest-1", queue)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=rf"no NATS server of nats://127.0.0.1:{port} answered"):
        worker.start()
    assert time.monotonic() - started < 10
    world.issuer.close()


def _message(subject_: str, data: bytes, *, age_s: float = 0.0, delivered: int = 1) -> Any:
    """What nats-py hands a worker, as far as the worker reads it."""
    meta = SimpleNamespace(num_delivered=delivered, timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s),
                           sequence=SimpleNamespace(stream=1))
    return SimpleNamespace(subject=subject_, data=data, metadata=meta)


def test_what_a_worker_acks_drops_or_leaves_to_be_tried_again(tmp_path: Path) -> None:
    from citypass.issuer.records import Device
    from citypass.sync import codec
    from citypass.sync.broker import free_port

    world = _Issuer(tmp_path)
    world.issuer.store.add_device(Device("gate-1", 1, "entry", "test gate", "enrolled", int(time.time()) - 60))
    # never started: its MQTT client is not connected, so no answer it publishes is confirmed by the engine
    worker = QueueWorker(world.issuer, Endpoint("127.0.0.1", free_port(), None, mqtt_version="3.1.1"),
                         "issuer-ingest-1", WorkQueue(("nats://127.0.0.1:1",)), reply_timeout_s=0.2)
    taps = subject(topics.gate_taps("gate-1"))
    messages = [
        _message(subject(topics.gate_requests("gate-1")), codec.encode_request(0), age_s=120),  # stale: dropped
        _message("citypass.v1.elsewhere", b"x"),                                  # not a gate's topic: dropped
        _message(taps, b"garbage"),                                              # undecodable: refused, acked
        _message(subject(topics.gate_taps("gate-9")), codec.encode_taps(1, [])),  # unregistered: refused, acked
        _message(taps, codec.encode_taps(2, []), delivered=2),  # stored, but its ack unconfirmed: tried again
    ]
    assert worker.process(messages) == [True, True, True, True, False]
    assert {k: worker.stats[k] for k in ("dropped", "refused", "batches", "redelivered", "taken")} == {
        "dropped": 2, "refused": 2, "batches": 1, "redelivered": 1, "taken": 5}

    def broken(uploads: Any, received_at: int) -> None:
        raise Unavailable("the database went away")

    world.issuer.store.store_batches = broken
    assert worker.process([_message(taps, codec.encode_taps(3, [])),  # stored together with the next: both back
                           _message(taps, codec.encode_taps(4, []))]) == [False, False]
    worker.stop()
    world.issuer.close()


class _Issuer:
    def __init__(self, path: Path) -> None:
        from citypass.bench.syncworld import SITES
        from citypass.issuer.home import IssuerHome
        from citypass.issuer.service import Issuer

        self.issuer = Issuer.init(IssuerHome(path / "issuer"), SITES, now=int(time.time()) - 60)


def _gate(world: ClusterWorld, name: str, node: int, ack_timeout_s: float = 120) -> GateSync:
    """A gate that does not resend within a test (ack_timeout 120 s): whatever reaches the store came through the
    queue, not from a second copy sent by the gate."""
    return GateSync(world.endpoint(name, node), GateSyncConfig(
        device_id=name, ledger_path=world.gate_ledger(name), root=world.root, site=1, batch_size=50,
        ack_timeout_s=ack_timeout_s, status_interval_s=1.0, catch_up_interval_s=60, lanes=False))


def _held(world: ClusterWorld) -> int:
    """Messages the stream holds now (asked as the issuer, whose grants include the stream's info)."""
    async def ask() -> int:
        nc = await nats.connect(servers=list(world.cluster.client_urls), tls=tls_context(world.files["issuer"]))
        try:
            info = await nc.jetstream().stream_info(workqueue.STREAM)
            return int(info.state.messages)
        finally:
            await nc.close()
    return asyncio.run(ask())


def test_batches_sent_while_no_worker_runs_are_held_then_each_is_stored_by_exactly_one_of_two_workers(
        tmp_path: Path) -> None:
    world = ClusterWorld(tmp_path, (*GATES, *LIVE))
    gates: list[GateSync] = []
    try:
        queue = world.work_queue(fetch_batch=4)
        world.make_issuer_sync(1, queue).start(timeout=30).stop()  # the issuer's first start made the queue
        sent = {tap for g in GATES for tap in fill_outbox(world.gate_ledger(g), g, 400)}  # 8 batches of 50 each
        gates = [_gate(world, g, i).start() for i, g in enumerate(GATES)]
        # no worker runs: every gate sends its window (8 batches) and waits for acks that do not come
        assert wait_for(lambda: all(s.state.counters.get("batches", 0) >= 8 for s in gates), 30)
        assert wait_for(lambda: _held(world) >= 16, 10), _held(world)
        for s in gates:
            s.stop()
        held = _held(world)
        assert world.issuer.store.tap_count() == 0
        # two workers on two nodes, started long after those gates went away
        sync = world.make_issuer_sync(2, queue).start(timeout=30)
        try:
            assert wait_for(lambda: world.issuer.store.tap_count() == 800, 30), world.issuer.store.tap_count()
            assert wait_for(lambda: _held(world) == 0, 10)
            # two more gates upload live, 8 batches each, while both workers run
            sent |= {tap for g in LIVE for tap in fill_outbox(world.gate_ledger(g), g, 400)}
            gates = [_gate(world, g, i).start() for i, g in enumerate(LIVE)]
            assert wait_for(lambda: all(backlog(world.gate_ledger(g)) == 0 for g in LIVE), 30), \
                {g: backlog(world.gate_ledger(g)) for g in LIVE}
            stats = [dict(w.stats) for w in sync.workers]
            assert all(s.state.counters.get("resends", 0) == 0 for s in gates)
            for s in gates:
                s.stop()
            # the first gates, back: their outboxes empty too (the acks waited in their MQTT sessions)
            gates = [_gate(world, g, i).start() for i, g in enumerate(GATES)]
            assert wait_for(lambda: all(backlog(world.gate_ledger(g)) == 0 for g in GATES), 30), \
                {g: backlog(world.gate_ledger(g)) for g in GATES}
        finally:
            sync.stop()
        print(f"held {held}; workers: {stats}")
        assert {t.tap_id for t in world.issuer.store.taps(limit=10_000)} == sent and len(sent) == 1600
        # each of the 32 batches went to exactly one worker: each tap new once, never a second time
        assert sum(s["batches"] for s in stats) == 32
        assert sum(s["new_taps"] for s in stats) == 1600 and sum(s["duplicates"] for s in stats) == 0
        assert sum(s["redelivered"] for s in stats) == 0
        assert all(s["batches"] > 0 for s in stats), stats  # both took their share
    finally:
        for s in gates:
            s.stop()
        world.close()


def test_a_worker_sigkilled_with_batches_in_hand_loses_none_they_go_to_another_worker(tmp_path: Path) -> None:
    world = ClusterWorld(tmp_path, GATES)
    gates: list[GateSync] = []
    child = None
    try:
        queue = world.work_queue(fetch_batch=4, ack_wait_s=2.0)
        files = world.files["issuer-ingest-2"]
        mqtt = ",".join(f"{h}:{p}" for h, p in world.cluster.addresses)
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.queue_ingest_worker", str(tmp_path / "issuer"), "issuer-ingest-2", mqtt,
             str(files.ca), str(files.cert), str(files.key), ",".join(queue.servers), "2", "0.4"],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        stored: list[tuple[int, str]] = []
        reader = threading.Thread(target=lambda: stored.extend(
            (int(seq), leaf) for _, seq, leaf in (line.split() for line in child.stdout)), daemon=True)  # type: ignore[union-attr]
        reader.start()
        sent = {tap for g in GATES for tap in fill_outbox(world.gate_ledger(g), g, 400)}
        gates = [_gate(world, g, i).start() for i, g in enumerate(GATES)]
        # the slow worker has stored a tap batch, and its fetch of four is not acked yet: kill it
        assert wait_for(lambda: any(leaf == "taps" for _, leaf in stored), 30)
        child.send_signal(signal.SIGKILL)
        child.wait()
        stored_by_dead = world.issuer.store.tap_count()
        assert stored_by_dead >= 50
        with world.make_issuer_sync(1, queue) as sync:
            assert wait_for(lambda: world.issuer.store.tap_count() == 800, 30), world.issuer.store.tap_count()
            assert wait_for(lambda: all(backlog(world.gate_ledger(g)) == 0 for g in GATES), 20)
            # the dead worker's fetch is stored whole and its gates acked before the kill (its batches are stored
            # together): the taps are all in; what it held unacknowledged comes back after the ack wait all the same
            survivor = sync.workers[0].stats
            assert wait_for(lambda: survivor["redelivered"] >= 1 and survivor["duplicates"] >= stored_by_dead, 20)
            stats = dict(survivor)
        print(f"killed after {stored} with {stored_by_dead} taps stored; survivor: {stats}")
        in_store = {t.tap_id for t in world.issuer.store.taps(limit=10_000)}
        assert in_store == sent and world.issuer.store.tap_count() == 800  # every tap, once
        # what the dead worker had in hand, stored or not, came back to the survivor after the ack wait — not from
        # the gates, which never resent: its stored batches a second time (recognised as duplicates)
        assert stats["redelivered"] >= 1 and stats["duplicates"] >= stored_by_dead
        assert stats["new_taps"] == 800 - stored_by_dead
        assert all(s.state.counters.get("resends", 0) == 0 for s in gates)
    finally:
        for s in gates:
            s.stop()
        if child is not None:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        world.close()


@pytest.mark.slow
def test_a_node_that_vanishes_moves_the_workers_connection_to_another(tmp_path: Path) -> None:
    world = ClusterWorld(tmp_path, GATES)
    gates: list[GateSync] = []
    try:
        queue = world.work_queue(fetch_batch=4, ack_wait_s=5.0)
        sync = world.make_issuer_sync(2, queue).start(timeout=30)
        try:
            workers = [w for w in sync.workers if isinstance(w, QueueWorker)]
            urls = [u.removeprefix("nats://") for u in world.cluster.client_urls]
            victim = urls.index(workers[0].nats_server or "")  # the node the first worker's connection is on
            others = [i for i in range(len(urls)) if i != victim]
            sent = {tap for g in GATES for tap in fill_outbox(world.gate_ledger(g), g, 1000)}
            # Gates that resend after 10 s: a batch a gate published while the killed node led the stream is
            # confirmed by MQTT but not in the queue (docs/broker.md, the work queue's limits), and only its gate's
            # resend brings it — nothing is lost, as the protocol promises, but not without the gate.
            gates = [_gate(world, g, others[i], ack_timeout_s=10).start() for i, g in enumerate(GATES)]
            assert wait_for(lambda: world.issuer.store.tap_count() > 0, 30)
            world.cluster.kill(victim)
            assert wait_for(lambda: workers[0].nats_server not in (None, urls[victim]), 30), workers[0].nats_server
            assert wait_for(lambda: world.issuer.store.tap_count() == 2000, 90), world.issuer.store.tap_count()
        finally:
            sync.stop()
        assert {t.tap_id for t in world.issuer.store.taps(limit=10_000)} == sent
    finally:
        for s in gates:
            s.stop()
        world.close()



@pytest.mark.slow
def test_issuer_serve_ingest_jetstream_takes_the_gates_uploads(tmp_path: Path) -> None:
    """The option as an operator runs it: `citypass issuer serve --ingest jetstream --nats …` in a process of its
    own, its identities enrolled by itself, gates uploading over MQTT 3.1.1 to another node."""
    from tests.helpers.served import Served

    world = ClusterWorld(tmp_path, GATES)
    served = None
    gates: list[GateSync] = []
    try:
        (host, port), *others = world.cluster.addresses
        served = Served(["--home", str(tmp_path / "issuer"), "--broker-home", str(world.home.path),
                         "--broker", f"{host}:{port}", *[x for h, p in others for x in ("--broker-node", f"{h}:{p}")],
                         "--mqtt-version", "3.1.1", "--mqtt-workers", "2", "--ingest", "jetstream",
                         "--nats", ",".join(world.cluster.client_urls)])
        served.start(timeout=60)
        sent = {tap for g in GATES for tap in fill_outbox(world.gate_ledger(g), g, 500)}
        gates = [_gate(world, g, 2).start() for g in GATES]
        assert wait_for(lambda: all(backlog(world.gate_ledger(g)) == 0 for g in GATES), 40), \
            {g: backlog(world.gate_ledger(g)) for g in GATES}
        assert {t.tap_id for t in world.issuer.store.taps(limit=10_000)} == sent
        assert wait_for(lambda: _held(world) == 0, 10)
    finally:
        for s in gates:
            s.stop()
        if served is not None and served.process is not None and served.process.poll() is None:
            served.stop(signal.SIGTERM)
        world.close()
