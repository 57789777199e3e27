"""``citypass bench cluster``: the sync protocol on a three-node NATS cluster, with one node SIGKILLed mid-upload.

The clustered engine of docs/broker.md ("A clustered engine"), measured on this machine, every part real:

* a broker home (the project's device CA and registry) and a three-node nats-server 2.9 JetStream cluster
  configured from it (:mod:`citypass.sync.natsconf`), each node on free loopback ports;
* a real issuer home; its MQTT side in the degraded mode — MQTT 3.1.1, ``workers`` ingest workers on plain
  subscriptions (every worker gets every batch; the store keeps each tap id once) — one worker per node,
  the ledger publisher on the second node;
* ``gates`` gate sync clients (MQTT 3.1.1, the gate's own outbox and ledger), spread over the nodes, each
  knowing every node (:attr:`~citypass.sync.endpoint.Endpoint.fallbacks`).

The run: every gate's outbox is filled with ``taps`` taps, the gates start, and as soon as the issuer has
acknowledged the first batch of the first gate its node (node 0, which also carries an ingest worker) is
SIGKILLed. The run ends when every outbox is empty; then the operator revokes a credential and the run ends
when every gate has applied the signed delta. Figures (:class:`ClusterRun`): taps/s end to end, how long the
gates of the dead node went without an ack (kill → first ack through another node), the delta's delivery
time, and the exactly-once check (taps stored == distinct tap ids sent, duplicates counted separately).

With ``ingest="queue"`` the workers take the batches from the cluster's JetStream work queue instead
(:mod:`citypass.sync.ingest_queue`: each batch to one worker). The command runs both ways by default, each on a
fresh cluster, and prints them side by side with a line comparing taps/s and duplicate arrivals.

Example::

    citypass bench cluster                    # 4 gates × 10,000 taps, 2 ingest workers, plain and work queue
    citypass bench cluster --gates 6 --taps 50000 --no-kill --ingest queue
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click

from citypass.bench.report import Row, print_rows, scratch_dir
from citypass.bench.syncworld import ISSUER_IDS, SITES, backlog, fill_outbox, seeded_gate_ledger, wait_for
from citypass.credential.keys import VerifyKey
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Device
from citypass.issuer.service import Issuer
from citypass.sync.cluster import NatsCluster
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.home import BrokerHome
from citypass.sync.ingest_queue import QueueWorker
from citypass.sync.issuer_sync import IssuerSync
from citypass.sync.workqueue import WorkQueue

#: How the issuer's ingest workers take the gates' batches on the cluster: plain MQTT subscriptions (every worker
#: every batch) or the JetStream work queue (each batch to one worker).
Ingest = Literal["plain", "queue"]


class ClusterWorld:
    """Enrolled gates and issuer identities, a NATS cluster over them, and an issuer that knows the gates."""

    def __init__(self, path: Path, gates: tuple[str, ...], *, nodes: int = 3) -> None:
        self.path = path
        self.home = BrokerHome(path / "broker").init()
        self.files: dict[str, ClientFiles] = {g: self.home.add_device_with_key(g, 1, path / "keys") for g in gates}
        for cn in ISSUER_IDS:
            files = self.home.add_service(cn, out_dir=path / "keys")
            assert isinstance(files, ClientFiles)
            self.files[cn] = files
        now = int(time.time()) - 60
        self.issuer = Issuer.init(IssuerHome(path / "issuer"), SITES, now=now)
        for gate in gates:
            self.issuer.store.add_device(Device(gate, 1, "entry", "cluster gate", "enrolled", now))
        self.cluster = NatsCluster(self.home, path / "nats", nodes=nodes).start()
        self.issuer_sync: IssuerSync | None = None  # set by run()
        self.gates: list[GateSync] = []

    @property
    def root(self) -> VerifyKey:
        return self.issuer.root_key().public

    def endpoint(self, cn: str, node: int) -> Endpoint:
        """``cn``'s endpoint: ``node`` first, then the others (MQTT 3.1.1, quick reconnects for a test).

        A keepalive of 5 s: paho abandons a CONNECT that gets no CONNACK only after the keepalive, and a node
        whose JetStream is electing leaders may leave one unanswered for a while."""
        addresses = self.cluster.addresses
        first = addresses[node % len(addresses)]
        return Endpoint(*first, tls=self.files[cn], min_backoff_s=0.5, max_backoff_s=1, keepalive=5,
                        fallbacks=tuple(a for a in addresses if a != first), mqtt_version="3.1.1")

    def gate_ledger(self, gate: str) -> Path:
        return seeded_gate_ledger(self.path, gate, self.issuer, self.root)

    def work_queue(self, **settings: Any) -> WorkQueue:
        """The issuer's JetStream work queue on this cluster (every node named: R3 on three nodes)."""
        return WorkQueue(self.cluster.client_urls, **settings)

    def make_issuer_sync(self, workers: int, queue: WorkQueue | None = None) -> IssuerSync:
        """The issuer's MQTT side, not started: ingest worker i on node i - 1, the publisher on node 1; the
        workers take the work queue ``queue``, or (None) hold plain subscriptions (the degraded mode)."""
        n = len(self.cluster.addresses)
        make = None if queue is None else (lambda cn, ep: QueueWorker(self.issuer, ep, cn, queue))
        return IssuerSync(self.issuer, lambda cn: self.endpoint(cn, _node_of(cn, n)), workers=workers,
                          subscription="plain" if queue is None else "queue", make_worker=make, tick_s=1.0,
                          poll_s=0.05)

    def close(self) -> None:
        self.cluster.stop()
        self.issuer.close()


@dataclass(frozen=True)
class ClusterRun:
    """What one run measured and checked."""

    gates: int
    taps_sent: int           # distinct tap ids in the gates' outboxes
    taps_stored: int         # rows in the issuer's store afterwards
    new_taps: int            # the ingest workers' count of first arrivals (each tap id stored once)
    duplicates: int          # arrivals the store recognised as already stored (plain subscriptions, resends)
    upload_s: float          # gates' start → every outbox empty
    killed: bool
    reconnect_s: float | None  # kill → every gate of the dead node connected to another node
    recovery_s: float | None  # kill → a gate of the dead node reconnected and acknowledged through another node
    delta_s: float           # revocation → every gate applied the signed delta
    gates_on_seq: int        # gates whose ledger is at the issuer's sequence
    ingest: Ingest = "plain"  # how the workers took the batches

    @property
    def taps_per_s(self) -> float:
        return self.taps_sent / self.upload_s


def run(path: Path, *, gates: int = 4, taps: int = 10_000, workers: int = 2, kill: bool = True, batch: int = 500,
        ack_timeout_s: float = 30.0, timeout: float = 120.0,
        then: Callable[[ClusterWorld], None] | None = None, ingest: Ingest = "plain") -> ClusterRun:
    """One run in ``path`` (see the module's docstring). Raises :class:`TimeoutError` if the gates do not
    drain or the delta does not arrive within ``timeout`` seconds each. ``then(world)`` runs at the end, with the
    cluster, the issuer's sync (``world.issuer_sync``) and the gates (``world.gates``) still up: a test's checks.
    ``ingest="queue"``: the workers take the JetStream work queue instead of plain subscriptions."""
    names = tuple(f"gate-{i}" for i in range(1, gates + 1))
    world = ClusterWorld(path, names)
    syncs: list[GateSync] = []
    try:
        sent: set[str] = set()
        for name in names:
            sent.update(fill_outbox(world.gate_ledger(name), name, taps))
        n = len(world.cluster.addresses)
        # Worker i on node i (worker 1 on the node that dies); the publisher on node 1.
        issuer_sync = world.make_issuer_sync(workers, world.work_queue() if ingest == "queue" else None)
        # The engine makes its MQTT streams at the first connection to a new cluster: allow for it.
        world.issuer_sync = issuer_sync.start(timeout=30)
        try:
            syncs = [GateSync(world.endpoint(g, i), GateSyncConfig(
                device_id=g, ledger_path=world.gate_ledger(g), root=world.root, site=1, batch_size=batch,
                ack_timeout_s=ack_timeout_s, status_interval_s=1.0, catch_up_interval_s=1.0, lanes=False))
                for i, g in enumerate(names)]
            paths = [world.gate_ledger(g) for g in names]
            started = time.perf_counter()
            world.gates = syncs
            for s in syncs:
                s.start()
            recovery = reconnect = None
            if kill:
                victims = [s for i, s in enumerate(syncs) if i % n == 0]
                if not wait_for(lambda: victims[0].state.counters.get("acked", 0) > 0, timeout, 0.005):
                    raise TimeoutError("no ack reached the first gate")
                world.cluster.kill(0)
                killed_at = time.perf_counter()
                if not sum(backlog(s.config.ledger_path) for s in victims):
                    raise TimeoutError("the gates of node 0 had uploaded everything before the kill: more taps")
                # Acks already on their way may still arrive: count from the moment the gates noticed.
                if not wait_for(lambda: not any(s.state.connected for s in victims), timeout, 0.005):
                    raise TimeoutError("the gates of the killed node did not notice")
                acked = [s.state.counters.get("acked", 0) for s in victims]
                if not wait_for(lambda: all(s.state.connected for s in victims), timeout, 0.005):
                    raise TimeoutError("the gates of the killed node did not reconnect to another node")
                reconnect = time.perf_counter() - killed_at

                def acknowledged_again() -> bool:
                    return any(s.state.counters.get("acked", 0) > a or not backlog(s.config.ledger_path)
                               for s, a in zip(victims, acked, strict=True))

                if not wait_for(acknowledged_again, timeout, 0.005):
                    raise TimeoutError("no gate of the killed node was acknowledged through another node")
                recovery = time.perf_counter() - killed_at
            if not wait_for(lambda: sum(backlog(p) for p in paths) == 0, timeout, 0.05):
                raise TimeoutError(f"the outboxes still hold {sum(backlog(p) for p in paths)} taps: "
                                   + _situation(world, syncs, issuer_sync))
            upload = time.perf_counter() - started
            seq = world.issuer.store.ledger_seq()
            world.issuer.revoke(os.urandom(8).hex(), int(time.time()))
            revoked_at = time.perf_counter()
            wait_for(lambda: all((s.state.ledger_seq or 0) > seq for s in syncs), timeout, 0.01)
            delta = time.perf_counter() - revoked_at
            target = world.issuer.store.ledger_seq()
            on_seq = sum(1 for s in syncs if s.state.ledger_seq == target)
            stats = [dict(w.stats) for w in issuer_sync.workers]
            if then is not None:
                then(world)
        finally:
            for s in syncs:
                s.stop()
            issuer_sync.stop()
        return ClusterRun(gates, len(sent), world.issuer.store.tap_count(), sum(s["new_taps"] for s in stats),
                          sum(s["duplicates"] for s in stats), upload, kill, reconnect, recovery, delta, on_seq,
                          ingest)
    finally:
        world.close()


def _situation(world: ClusterWorld, syncs: list[GateSync], issuer_sync: IssuerSync) -> str:
    """Who is connected and how far each part got (for a run that timed out)."""
    gates = [f"{s.config.device_id}: connected={s.state.connected} backlog={backlog(s.config.ledger_path)} "
             f"{s.state.counters}" for s in syncs]
    workers = [f"{w.client_id}: connected={w.connected.is_set()} {w.stats}" for w in issuer_sync.workers]
    return "; ".join(gates + workers)


def _node_of(cn: str, nodes: int) -> int:
    """Where each issuer identity connects: ingest worker i on node i - 1, the publisher on node 1."""
    prefix = "issuer-ingest-"
    return (int(cn[len(prefix):]) - 1) % nodes if cn.startswith(prefix) else 1 % nodes


@click.command("cluster")
@click.option("--gates", default=4, show_default=True, type=click.IntRange(1, 32), help="Simulated gates.")
@click.option("--taps", default=10_000, show_default=True, type=click.IntRange(1), help="Taps per gate.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 4),
              help="Issuer ingest workers (plain subscriptions: each gets every batch; work queue: each one).")
@click.option("--kill/--no-kill", default=True, show_default=True, help="SIGKILL node 0 mid-upload.")
@click.option("--ingest", "modes", type=click.Choice(["both", "plain", "queue"]), default="both", show_default=True,
              help="How the workers take the batches: plain subscriptions, the JetStream work queue, or a run of "
                   "each (a fresh cluster for each), compared side by side.")
def cluster_command(gates: int, taps: int, workers: int, kill: bool, modes: str) -> None:
    """Taps/s through a three-node NATS cluster (MQTT 3.1.1, TLS), recovery after a node's SIGKILL, delta delivery;
    with plain-subscription workers and with the JetStream work queue."""
    ingests: list[Ingest] = [m for m in ("plain", "queue") if modes in ("both", m)]
    results: dict[Ingest, ClusterRun] = {}
    for ingest in ingests:
        with scratch_dir("citypass-bench-cluster-") as path:
            results[ingest] = run(path, gates=gates, taps=taps, workers=workers, kill=kill, ingest=ingest)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows: list[Row] = []
    for ingest, r in results.items():
        how = (f"{workers} plain-subscription worker(s)" if ingest == "plain"
               else f"{workers} worker(s) on the JetStream work queue")
        tag = "" if len(results) == 1 else f"{_LABELS[ingest]}: "
        rows += [
            Row(f"{tag}end to end", f"{r.taps_per_s:,.0f} taps/s", f"{r.gates} gates × {taps:,} taps in "
                f"{r.upload_s:.1f} s; {how}" + (", node 0 SIGKILLed mid-upload" if r.killed else "")),
            Row(f"{tag}exactly once", f"{r.taps_stored:,} stored", f"of {r.taps_sent:,} sent; {r.new_taps:,} new + "
                f"{r.duplicates:,} duplicates recognised"),
            Row(f"{tag}reconnect after SIGKILL", "-" if r.reconnect_s is None else f"{r.reconnect_s:.2f} s",
                "kill → every gate of the dead node connected to another node"),
            Row(f"{tag}recovery after SIGKILL", "-" if r.recovery_s is None else f"{r.recovery_s:.2f} s",
                "kill → the first ack for a gate of the dead node after it reconnected"),
            Row(f"{tag}delta delivery", f"{r.delta_s:.2f} s",
                f"revocation → applied at {r.gates_on_seq}/{r.gates} gates"),
        ]
    if len(results) == 2:
        plain, queue = results["plain"], results["queue"]
        rows.append(Row("plain vs work queue", f"{plain.taps_per_s:,.0f} / {queue.taps_per_s:,.0f} taps/s",
                        f"upload → every tap stored and acked: {plain.upload_s:.1f} s / {queue.upload_s:.1f} s; "
                        f"duplicate arrivals recognised: {plain.duplicates:,} / {queue.duplicates:,}"))
    print_rows(f"sync on a 3-node NATS cluster (load average {load})", rows)


_LABELS = {"plain": "plain", "queue": "work queue"}
