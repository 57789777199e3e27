"""The issuer's side of sync: ingest workers on a shared subscription, ledger deltas and time ticks down.

Two kinds of client, each with its own broker identity (the broker forces client id = certificate CN):

* :class:`IngestWorker` — any number at once, e.g. ``issuer-ingest-1`` … ``-4``. Each subscribes to
  ``$share/<group>/citypass/v1/gate/+/taps`` (and ``…/requests``), so the broker hands every batch to
  exactly one of them. A batch is stored through the issuer's own ingest path —
  :func:`citypass.issuer.ingest.ingest` (validation, then the repository's ``store_batch``), the very code behind
  ``POST /v1/taps`` — and acknowledged on ``gate/<device>/acks`` *after* the transaction commits. The
  device id comes from the topic, which the broker's ACL lets only that device publish to. Workers
  connect with a clean session: a dead worker's queue would hold its share of taps hostage; without
  one, the broker gives them to the live members and gates resend what nobody acknowledged.

  **Without shared subscriptions** (MQTT 3.1.1, the degraded mode for an engine such as NATS:
  ``subscription="plain"``) each worker subscribes to ``citypass/v1/gate/+/taps`` itself, so *every* worker
  gets *every* batch. Storage stays exactly-once — the store keeps a tap id once and answers a duplicate as
  such (``duplicates``) — and the gate, acknowledged once per worker, marks its rows once. The cost is one
  store transaction per batch per worker: run two such workers for redundancy, not for throughput. Plain
  workers keep a persistent session, so the engine holds what arrives while a worker is between nodes.
  **On the engine's work queue** (``subscription="queue"``, a NATS JetStream stream:
  :class:`citypass.sync.ingest_queue.QueueWorker`) a worker subscribes to nothing over MQTT: it takes each batch
  from the queue, one worker per batch, and its MQTT client only publishes the acks and deltas (:meth:`reply`).
* :class:`LedgerPublisher` — one per issuer node. It polls the ledger sequence and publishes each change as
  a signed delta on ``all/ledger`` (several nodes on one PostgreSQL database each run one; a delta is claimed
  in the store before it is sent — :meth:`~citypass.issuer.repository.LedgerRepository.claim_publication` —
  so each change is published once, by whichever node claims it first), a signed time tick on
  ``issuer/time`` every ``tick_s``, and keeps the gates' retained statuses (and their Last Wills) in
  :attr:`LedgerPublisher.statuses` and the store's device health.

    issuer = Issuer.open(IssuerHome(path))
    with IssuerSync(issuer, endpoint_for, workers=2, group=secret_group) as sync:
        ...   # endpoint_for(cn) → Endpoint with that identity's TLS files
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import paho.mqtt.client as mqtt

from citypass.errors import CityPassError
from citypass.issuer.deltas import SnapshotRequired, build_delta
from citypass.issuer.ingest import Upload, ingest_many
from citypass.issuer.records import DeviceHealth, NotFound
from citypass.issuer.service import Issuer
from citypass.sync import codec, topics
from citypass.sync.endpoint import Endpoint
from citypass.sync.service_client import Complaints, ServiceClient

log = logging.getLogger(__name__)
#: Most changes in a delta sent over MQTT: 20,000 ids of ≤16 bytes stay well under 1 MiB packets.
MQTT_DELTA_LIMIT = 20_000

#: How ingest workers share the gates' batches: an MQTT 5 shared subscription (each batch to one worker), a
#: plain subscription where every worker gets every batch and the store dedupes (MQTT 3.1.1 engines), or the
#: engine's work queue (a NATS JetStream stream, :mod:`citypass.sync.ingest_queue`): no MQTT subscription at all,
#: the MQTT client only publishes the acks and deltas.
Subscription = Literal["shared", "plain", "queue"]


class IngestWorker(ServiceClient):
    """Stores tap batches from the shared subscription and acks them; answers gates' delta requests.

    ``require_registered``: batches from a device the issuer's registry does not know are not stored
    and not acknowledged (they stay in the gate's outbox until the device is registered). ``subscription``:
    ``"shared"`` (MQTT 5, the group splits the batches) or ``"plain"`` (every worker gets every batch; see the
    module's docstring).

    Batches that arrive over MQTT go to a queue of :data:`WAITING` uploads, and a storing thread takes from it
    all that is waiting, up to :data:`PER_TRANSACTION` events, and stores them together
    (:func:`citypass.issuer.ingest.ingest_many`: one transaction, each upload's result its own) before it acks
    each. Under light load that is one batch at a time, as before; under a peak the fixed cost of a transaction
    is shared by many gates' batches. When the queue is full the network thread waits, and the broker holds
    the rest (QoS 1 flow control): nothing is taken that cannot be stored soon, and nothing waiting is acked."""

    #: Uploads received and not yet stored, at most.
    WAITING = 64
    #: Most events of waiting uploads stored in one transaction.
    PER_TRANSACTION = 2000

    def __init__(self, issuer: Issuer, endpoint: Endpoint, client_id: str, group: str, *,
                 clock: Callable[[], float] = time.time, require_registered: bool = True,
                 subscription: Subscription = "shared") -> None:
        super().__init__(endpoint, client_id, clock, clean_start=subscription != "plain")
        self.issuer = issuer
        self.group = group
        self.subscription = subscription
        self.require_registered = require_registered
        self.stats = {"batches": 0, "events": 0, "new_taps": 0, "duplicates": 0, "refused": 0, "transactions": 0}
        self.complaints = Complaints()
        self._waiting: queue.Queue[tuple[str, bytes] | None] = queue.Queue(self.WAITING)
        self._storer: threading.Thread | None = None

    def subscriptions(self) -> list[tuple[str, int]]:
        if self.subscription == "queue":
            return []
        if self.subscription == "plain":
            return [(topics.ALL_TAPS, 1), (topics.ALL_REQUESTS, 1)]
        return [(topics.shared(self.group, topics.ALL_TAPS), 1), (topics.shared(self.group, topics.ALL_REQUESTS), 1)]

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parsed = topics.parse_gate_topic(message.topic)
        if parsed is not None and parsed[1] == topics.TAPS and self._storer is not None:
            self._waiting.put((parsed[0], bytes(message.payload)))  # full: the network thread waits here
            return
        super()._on_message(client, userdata, message)

    def start(self) -> None:
        self._storer = threading.Thread(target=self._store_waiting, name=f"store-{self.client_id}", daemon=True)
        self._storer.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        if self._storer is not None:
            try:  # what is still waiting is dropped unacknowledged: its gates send it again
                while True:
                    self._waiting.get_nowait()
            except queue.Empty:
                pass
            self._waiting.put(None)
            self._storer.join(10)
            self._storer = None

    def _store_waiting(self) -> None:
        """The storing thread: everything waiting (up to :data:`PER_TRANSACTION` events) stored together."""
        while True:
            first = self._waiting.get()
            if first is None:
                return
            taken, size = [first], len(first[1])
            while size < self.PER_TRANSACTION * 200:  # ~200 bytes an event on the wire: cut before decoding
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._waiting.put(None)
                    break
                taken.append(item)
                size += len(item[1])
            try:
                self.ingest_waiting(taken)
            except CityPassError as exc:  # the store is full or unreachable: nothing acked, the gates resend
                self.stats["refused"] += len(taken)
                for device in sorted({device for device, _ in taken}):
                    self.complaints.note(device, f"taps: {exc}")
            except Exception:  # a bad batch must never end the storing thread
                log.exception("%s: storing %d waiting batches failed", self.client_id, len(taken))

    def handle(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse_gate_topic(topic)
        if parsed is None:
            return
        device, leaf = parsed
        try:
            if leaf == topics.TAPS:
                self.ingest(device, payload)
            elif leaf == topics.REQUESTS:
                self.answer(device, codec.decode_request(payload))
        except CityPassError as exc:  # malformed, refused, or the store is full: nothing acked, the gate resends
            self.stats["refused"] += 1
            self.complaints.note(device, f"{leaf}: {exc}")

    def ingest(self, device: str, payload: bytes) -> codec.Ack | None:
        """Store one batch and publish its ack; None (nothing acked) for a batch that cannot be taken."""
        return self.ingest_waiting([(device, payload)])[0]

    def ingest_waiting(self, uploads: list[tuple[str, bytes]]) -> list[codec.Ack | None]:
        """Store these uploads (device, payload) together and publish each one's ack once they are committed;
        per upload its ack, or None for one that cannot be taken (undecodable, from an unregistered device, an
        id breaking the id rule: counted, complained of, not acked). A failure of the store raises
        (:class:`~citypass.errors.CityPassError`): nothing of these was acked."""
        store = self.issuer.store
        acks: list[codec.Ack | None] = [None] * len(uploads)
        taken: list[tuple[int, str, codec.TapBatch]] = []
        for index, (device, payload) in enumerate(uploads):
            try:
                batch = codec.decode_taps(payload)
            except codec.CodecError as exc:
                self.stats["refused"] += 1
                self.complaints.note(device, f"undecodable tap batch: {exc}")
                continue
            taken.append((index, device, batch))
        if not taken:
            return acks
        outcomes = ingest_many(store, [Upload(device, batch.events) for _, device, batch in taken],
                               lambda: int(self.clock()), max_events=self.PER_TRANSACTION,
                               registered_only=self.require_registered)
        self.stats["transactions"] += 1
        for (index, device, batch), result in zip(taken, outcomes, strict=True):
            if isinstance(result, NotFound):  # not in the registry: stays in the gate's outbox until it is
                self.stats["refused"] += 1
                log.warning("tap batch from unregistered device %s: not acknowledged", device)
                continue
            if isinstance(result, CityPassError):
                self.stats["refused"] += 1
                self.complaints.note(device, f"taps: {result}")
                continue
            ack = codec.Ack(batch.batch_id, result.acknowledged, result.new_taps, result.duplicates,
                            len(result.quarantined))
            self.reply(topics.gate_acks(device), codec.encode_ack(ack.batch_id, ack.event_ids, ack.new_taps,
                                                                  ack.duplicates, ack.quarantined))
            for key, value in (("batches", 1), ("events", len(batch.events)), ("new_taps", result.new_taps),
                               ("duplicates", result.duplicates)):
                self.stats[key] += value
            acks[index] = ack
        return acks

    def answer(self, device: str, since: int) -> None:
        """One signed delta after ``since`` to that gate alone, or a notice that it needs a snapshot."""
        try:
            delta = build_delta(self.issuer.store, since, int(self.clock()), MQTT_DELTA_LIMIT)
        except SnapshotRequired:
            payload = codec.encode_snapshot_notice(self.issuer.store.ledger_seq())
        else:
            if delta is None:
                return
            payload = delta.sign(self.issuer.ledger_key())
        self.reply(topics.gate_ledger(device), payload)

    def reply(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish an answer to a gate (an ack, a delta) at QoS 1; what paho says of its delivery."""
        return self.client.publish(topic, payload, qos=1)


class LedgerPublisher(ServiceClient):
    """Signed deltas on ``all/ledger`` when the ledger changes, signed ticks on ``issuer/time``, presence."""

    def __init__(self, issuer: Issuer, endpoint: Endpoint, client_id: str = "issuer", *,
                 clock: Callable[[], float] = time.time, tick_s: float = 10.0, poll_s: float = 0.5) -> None:
        super().__init__(endpoint, client_id, clock)
        self.issuer = issuer
        self.tick_s = tick_s
        self.poll_s = poll_s
        self.published_seq = issuer.store.ledger_seq()
        self.statuses: dict[str, codec.Status] = {}
        self.status_changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(topics.ALL_STATUS, 1)]

    def handle(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse_gate_topic(topic)
        if parsed is None or parsed[1] != topics.STATUS or not payload:
            return
        status = codec.decode_status(payload)
        with self.status_changed:
            self.statuses[parsed[0]] = status
            self.status_changed.notify_all()
        try:
            self.issuer.store.record_health(DeviceHealth(
                parsed[0], last_seen=int(self.clock()), ledger_seq=status.seq, outbox_backlog=status.backlog,
                clock_offset_s=status.clock_offset, reported_at=status.at or None,
                details={"online": status.online, "fps": status.fps, "software": status.software,
                         "clock_alarm": status.clock_alarm, **status.counters}))
        except NotFound:
            pass

    def wait_status(self, device: str, predicate: Callable[[codec.Status], bool], timeout: float = 10.0) -> bool:
        with self.status_changed:
            return self.status_changed.wait_for(
                lambda: device in self.statuses and predicate(self.statuses[device]), timeout)

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self._run, name=f"ledger-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        super().stop()

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stopping.wait(self.poll_s):
            if not self.connected.is_set():
                continue
            try:
                self.publish_changes()
                if time.monotonic() >= next_tick:
                    self.publish_tick()
                    next_tick = time.monotonic() + self.tick_s
            except Exception:
                log.exception("ledger publisher")

    def publish_tick(self) -> None:
        data = codec.sign_time(self.issuer.ledger_key(), int(self.clock() * 1000), self.issuer.store.ledger_seq())
        self.client.publish(topics.ISSUER_TIME, data, qos=0)

    def publish_changes(self) -> int:
        """Publish deltas up to the current sequence; returns how many. A trust-list change cannot travel
        as a delta: the publisher skips past it and gates, seeing a gap, fetch a snapshot.

        Each delta starts where the publication cursor (any node's) or this publisher's own start point is,
        whichever is later, and is published only if this publisher wins its claim; a node that loses sees the
        cursor moved and goes on from there. A node killed between claim and publish leaves a gap, which gates
        close as after any missed delta (a snapshot)."""
        store = self.issuer.store
        count = 0
        while True:
            base = max(self.published_seq, store.publication_cursor())
            if base >= store.ledger_seq():
                break
            try:
                delta = build_delta(store, base, int(self.clock()), MQTT_DELTA_LIMIT)
            except SnapshotRequired:
                store.claim_publication(base, base + 1)
                self.published_seq = base + 1
                continue
            if delta is None:
                break
            if store.claim_publication(base, delta.seq):
                self.client.publish(topics.ALL_LEDGER, delta.sign(self.issuer.ledger_key()), qos=1)
                self.published_seq = delta.seq
                count += 1
        return count


class IssuerSync:
    """A publisher and ``workers`` ingest workers; ``endpoint_for(cn)`` gives each identity's endpoint.
    ``subscription="plain"`` for an engine without shared subscriptions (see :class:`IngestWorker`).
    ``make_worker(cn, endpoint)``, when given, makes each worker instead (e.g. a
    :class:`citypass.sync.ingest_queue.QueueWorker` on the engine's work queue)."""

    def __init__(self, issuer: Issuer, endpoint_for: Callable[[str], Endpoint], *, workers: int = 1,
                 group: str = "ingest", publisher_id: str = "issuer", worker_prefix: str = "issuer-ingest-",
                 tick_s: float = 10.0, poll_s: float = 0.5, clock: Callable[[], float] = time.time,
                 subscription: Subscription = "shared",
                 make_worker: Callable[[str, Endpoint], IngestWorker] | None = None) -> None:
        self.publisher = LedgerPublisher(issuer, endpoint_for(publisher_id), publisher_id, clock=clock,
                                         tick_s=tick_s, poll_s=poll_s)
        if make_worker is None:
            def make_worker(cn: str, endpoint: Endpoint) -> IngestWorker:
                return IngestWorker(issuer, endpoint, cn, group, clock=clock, subscription=subscription)
        self.workers = [make_worker(f"{worker_prefix}{i}", endpoint_for(f"{worker_prefix}{i}"))
                        for i in range(1, workers + 1)]

    def start(self, timeout: float = 10.0) -> IssuerSync:
        try:
            for part in (self.publisher, *self.workers):
                part.start()
            for part in (self.publisher, *self.workers):
                if not part.connected.wait(timeout):
                    raise TimeoutError(f"{part.client_id} did not connect within {timeout:g} s")
        except BaseException:  # nothing left running behind an error (a worker that cannot reach its queue)
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in (*self.workers, self.publisher):
            part.stop()

    def __enter__(self) -> IssuerSync:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
