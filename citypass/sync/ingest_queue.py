"""The issuer's ingest workers on a NATS JetStream work queue: each gate upload to one worker, held while none runs.

On a NATS cluster the engine speaks MQTT 3.1.1 only, so there are no shared subscriptions; instead of the
degraded mode (plain subscriptions, every worker stores every batch) the workers can take the gates' batches
from the engine's own work queue (:mod:`citypass.sync.workqueue` has its names and settings):

* The **stream** ``CITYPASS_INGEST`` (work-queue retention, file storage, R3 on three nodes) captures
  ``citypass.v1.gate.*.taps`` and ``…requests`` — the subjects the engine publishes each gate's QoS 1 MQTT
  PUBLISH on. Every worker makes or updates it, and the consumer, when it starts (idempotent), so the queue
  exists from the issuer's first start on and holds what gates send while no worker runs.
* One **durable pull consumer** ``ingest`` is shared by every worker of every issuer node: each message is
  handed to one worker at a time. The worker stores the batch through the issuer's ingest path (the very
  :meth:`~citypass.sync.issuer_sync.IngestWorker.ingest` of the MQTT workers), publishes the gate's ack over
  MQTT at QoS 1 (as every worker does: a NATS-protocol publish would reach the gate at QoS 0), waits for the
  engine's PUBACK, and only then acks the message, which removes it from the stream. A message whose storing
  failed for a reason that may pass (the database is down) or whose ack was not confirmed is nak'ed and comes
  back after a short delay; a message a worker took and never answered — the worker died — comes back to
  another worker after ``ack_wait_s``. Storing a batch twice is harmless: the store keeps a tap id once.
* A batch the issuer refuses (undecodable, an unregistered device) is acked and dropped, as the MQTT workers
  drop it: the gate keeps it in its outbox and sends it again. A delta request older than
  ``request_max_age_s`` is dropped unanswered (its gate has asked again since).

Each worker runs its NATS connection on an asyncio loop in a thread of its own, beside its paho client (which
only publishes). nats-py reconnects by itself: to any server named, or any the cluster told it of.

    queue = WorkQueue(parse_servers("nats://n1:4222,nats://n2:4222,nats://n3:4222"))
    make = lambda cn, endpoint: QueueWorker(issuer, endpoint, cn, queue)
    with IssuerSync(issuer, endpoint_for, workers=2, subscription="queue", make_worker=make) as sync:
        ...
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import nats
import nats.errors
import nats.js.errors
import paho.mqtt.client as mqtt
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from citypass.errors import CityPassError, InvalidInput, Unavailable
from citypass.issuer.service import Issuer
from citypass.sync import subjects, topics
from citypass.sync.endpoint import Endpoint, tls_context
from citypass.sync.issuer_sync import IngestWorker
from citypass.sync.workqueue import WorkQueue, captured

log = logging.getLogger(__name__)

#: Errors of a cluster that is electing leaders or between nodes: wait and ask again.
_PASSING = (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
            nats.errors.ConnectionReconnectingError, asyncio.TimeoutError)


def stream_config(queue: WorkQueue) -> StreamConfig:
    """The stream: work-queue retention on the gates' upward subjects, on disk, replicated."""
    return StreamConfig(name=queue.stream, subjects=captured(), retention=RetentionPolicy.WORK_QUEUE,
                        storage=StorageType.FILE, num_replicas=queue.stream_replicas, max_age=queue.max_age_s,
                        max_bytes=queue.max_bytes, discard=DiscardPolicy.OLD)


def consumer_config(queue: WorkQueue) -> ConsumerConfig:
    """The one durable pull consumer: explicit acks, redelivery after ``ack_wait_s``, never given up."""
    return ConsumerConfig(durable_name=queue.consumer, ack_policy=AckPolicy.EXPLICIT, ack_wait=queue.ack_wait_s,
                          max_ack_pending=queue.max_ack_pending, max_deliver=-1, deliver_policy=DeliverPolicy.ALL)


def _differs(have: StreamConfig, want: StreamConfig) -> bool:
    return (set(have.subjects or ()) != set(want.subjects or ()) or have.num_replicas != want.num_replicas
            or have.max_bytes != want.max_bytes or abs((have.max_age or 0) - (want.max_age or 0)) > 1e-3)


async def ensure_queue(js: JetStreamContext, queue: WorkQueue, timeout: float) -> StreamInfo:
    """Make the stream and the consumer, or bring an existing stream to ``queue``'s settings (idempotent: every
    worker of every node does it at start). A cluster electing its leaders is waited for up to ``timeout``;
    a configuration the engine refuses raises :class:`~citypass.errors.InvalidInput`, a cluster that does not
    answer :class:`~citypass.errors.Unavailable`."""
    want = stream_config(queue)
    deadline = time.monotonic() + timeout
    while True:
        try:
            try:
                info = await js.stream_info(queue.stream)
            except nats.js.errors.NotFoundError:
                info = await js.add_stream(want)
            else:
                if info.config.retention != RetentionPolicy.WORK_QUEUE:
                    raise InvalidInput(f"stream {queue.stream} exists without work-queue retention: "
                                       "remove it, or name another stream")
                if _differs(info.config, want):
                    info = await js.update_stream(want)
            await js.add_consumer(queue.stream, consumer_config(queue))
            return info
        except _PASSING as exc:
            if time.monotonic() > deadline:
                raise Unavailable(f"JetStream did not make the work queue {queue.stream} within {timeout:g} s "
                                  f"({type(exc).__name__}: {exc}); is JetStream enabled on the cluster, and may "
                                  "this identity use it (the grants of citypass.sync.natsconf)?") from None
            await asyncio.sleep(0.5)
        except nats.js.errors.APIError as exc:
            raise InvalidInput(f"the cluster refused the work queue {queue.stream}/{queue.consumer}: "
                               f"{exc.description or exc}") from None


def _confirmed(info: mqtt.MQTTMessageInfo, deadline: float) -> bool:
    """True once the engine has PUBACKed a QoS 1 answer; False at ``deadline`` or when paho could not send it
    (not connected: paho sends it after the reconnect, and the message comes back from the queue meanwhile)."""
    try:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


class QueueWorker(IngestWorker):
    """An ingest worker that takes the gates' batches from the work queue (see the module's docstring).

    ``connected`` is set once the MQTT client is up (it publishes the acks); :meth:`start` returns once the
    queue's consumer is bound, or raises :class:`~citypass.errors.Unavailable` / ``InvalidInput`` saying why
    it could not be. ``stats`` adds to the MQTT worker's: ``taken`` (messages handed to this worker),
    ``redelivered`` (of which the queue had handed out before), ``retried`` (nak'ed: to be tried again),
    ``dropped`` (stale requests, foreign subjects)."""

    def __init__(self, issuer: Issuer, endpoint: Endpoint, client_id: str, queue: WorkQueue, *,
                 clock: Callable[[], float] = time.time, reply_timeout_s: float = 10.0) -> None:
        super().__init__(issuer, endpoint, client_id, "queue", clock=clock, subscription="queue")
        self.queue = queue
        self.reply_timeout_s = reply_timeout_s
        self.stats.update(taken=0, redelivered=0, retried=0, dropped=0)
        self.bound = threading.Event()
        self.nats_server: str | None = None  # the node this worker's NATS connection is on
        self._replies: list[mqtt.MQTTMessageInfo] | None = None
        self._halt = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- the MQTT side: answers only ----------------------------------------------------------------------------

    def reply(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        info = super().reply(topic, payload)
        if self._replies is not None:
            self._replies.append(info)
        return info

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self._main, name=f"queue-{self.client_id}", daemon=True)
        self._thread.start()
        if not self.bound.wait(self.queue.connect_timeout_s * 2 + 10) and self._failure is None:
            self._failure = Unavailable(f"{self.client_id}: the work queue was not ready in time")
        if self._failure is not None:
            self.stop()
            raise self._failure

    def stop(self) -> None:
        """Finish the messages in hand (their acks go out), leave the queue, then disconnect MQTT."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(self.reply_timeout_s + 10)
        super().stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(), or logged when the worker was already running
            self._failure = exc
            if self.bound.is_set():
                log.exception("%s: the work queue failed", self.client_id)
            self.bound.set()

    async def _connect(self) -> NatsClient:
        servers = list(self.queue.servers)

        async def disconnected() -> None:
            if self._halt.is_set():
                return
            log.warning("%s: NATS connection to %s lost; reconnecting", self.client_id, self.nats_server)

        async def reconnected() -> None:
            self.nats_server = nc.connected_url.netloc if nc.connected_url else None
            log.warning("%s: NATS connection on %s", self.client_id, self.nats_server)

        last: list[Exception] = []

        async def error(exc: Exception) -> None:
            last[:] = [exc]
            log.debug("%s: NATS: %s", self.client_id, exc)

        nc = NatsClient()
        try:
            await asyncio.wait_for(nc.connect(
                servers=servers, tls=tls_context(self.endpoint.tls) if self.endpoint.tls else None,
                name=self.client_id, connect_timeout=2, reconnect_time_wait=1, max_reconnect_attempts=-1,
                disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error),
                self.queue.connect_timeout_s)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            why = last[0] if last else exc
            raise Unavailable(f"{self.client_id}: no NATS server of {', '.join(servers)} answered within "
                              f"{self.queue.connect_timeout_s:g} s (last: {type(why).__name__}: {why})") from None
        self.nats_server = nc.connected_url.netloc if nc.connected_url else None
        return nc

    async def _serve(self) -> None:
        """Connect, make sure of the queue, take from it; a connection nats-py gave up on (closed) is made
        again, until :meth:`stop`. Failing at the first start is an error for :meth:`start` to raise."""
        while not self._halt.is_set():
            try:
                nc = await self._connect()
            except Unavailable:
                if not self.bound.is_set():
                    raise
                log.warning("%s: no NATS server answers; trying again", self.client_id)
                await asyncio.sleep(1)
                continue
            try:
                await self._take(nc)
            except Unavailable as exc:  # JetStream without a leader for longer than connect_timeout_s
                if not self.bound.is_set():
                    raise
                log.warning("%s: %s; trying again", self.client_id, exc)
                await asyncio.sleep(1)
            finally:
                await nc.close()
            if not self._halt.is_set():
                log.warning("%s: NATS connection closed; connecting again", self.client_id)

    async def _take(self, nc: NatsClient) -> None:
        """Make sure of the queue, bind to its consumer and take its messages until :meth:`stop` or until the
        connection is closed for good."""
        js = nc.jetstream(timeout=5)
        await ensure_queue(js, self.queue, self.queue.connect_timeout_s)
        pull = await js.pull_subscribe_bind(durable=self.queue.consumer, stream=self.queue.stream)
        self.bound.set()
        log.info("%s: taking %s/%s on %s", self.client_id, self.queue.stream, self.queue.consumer, self.nats_server)
        while not self._halt.is_set() and not nc.is_closed:
            if not self.connected.is_set():
                # No MQTT link (its node died, it is reconnecting): it could store but not answer, and every
                # batch it took would come back to be stored again. The other workers take them meanwhile.
                await asyncio.sleep(0.1)
                continue
            try:
                messages = await pull.fetch(self.queue.fetch_batch, timeout=1)
            except _PASSING:
                continue  # nothing waiting, or a node is going: ask again (nats-py reconnects meanwhile)
            except nats.errors.Error as exc:
                log.debug("%s: fetch: %s", self.client_id, exc)
                await asyncio.sleep(0.5)
                continue
            try:
                done = await asyncio.to_thread(self.process, messages)
            except Exception:  # a bug must not end the worker: the messages come back, to it or another
                log.exception("%s: processing a fetch failed", self.client_id)
                done = [False] * len(messages)
            for message, ok in zip(messages, done, strict=True):
                try:
                    if ok:
                        await message.ack()
                    else:
                        self.stats["retried"] += 1
                        await message.nak(delay=min(self.queue.ack_wait_s, message.metadata.num_delivered))
                except nats.errors.Error as exc:  # it comes back after ack_wait: stored twice, harmlessly
                    log.debug("%s: ack: %s", self.client_id, exc)

    # -- the work -----------------------------------------------------------------------------------------------

    def process(self, messages: list[Msg]) -> list[bool]:
        """Take a fetch's messages: its tap batches stored together (:meth:`~IngestWorker.ingest_waiting`, one
        transaction), the rest one by one (:meth:`take`); then wait for the engine to confirm every answer. True
        for a message that is done (ack it), False for one to try again — the batches stored together are done
        or retried together."""
        done: list[bool] = [True] * len(messages)
        replies: list[tuple[list[int], list[mqtt.MQTTMessageInfo]]] = []
        uploads: list[tuple[int, str, bytes]] = []
        for index, message in enumerate(messages):
            parsed = self._parse(message)
            if parsed is not None and parsed[1] == topics.TAPS:
                uploads.append((index, parsed[0], bytes(message.data)))
                continue
            sent: list[mqtt.MQTTMessageInfo] = []
            self._replies = sent
            try:
                done[index] = self.take(message)
            finally:
                self._replies = None
            replies.append(([index], sent))
        if uploads:
            sent = []
            self._replies = sent
            try:
                acks = self.ingest_waiting([(device, payload) for _, device, payload in uploads])
            except Exception as exc:  # the store failed (full, unreachable) or a bug: all of them come back
                level = logging.WARNING if isinstance(exc, CityPassError) else logging.ERROR
                log.log(level, "%s: %d batches to be tried again: %s", self.client_id, len(uploads), exc,
                        exc_info=level == logging.ERROR)
                for index, _, _ in uploads:
                    done[index] = False
            else:  # one answer per batch acked, in order; a refused batch (no answer) is done: the gate resends it
                answers = iter(sent)
                replies += [([index], [next(answers)]) for (index, _, _), ack in zip(uploads, acks, strict=True)
                            if ack is not None]
            finally:
                self._replies = None
        deadline = time.monotonic() + self.reply_timeout_s
        for indexes, sent in replies:
            if not all(_confirmed(info, deadline) for info in sent):
                for index in indexes:
                    done[index] = False
        return done

    def _parse(self, message: Msg) -> tuple[str, str] | None:
        """(device, leaf) of a message's gate topic, or None; counts what it is handed."""
        self.stats["taken"] += 1
        if message.metadata.num_delivered > 1:
            self.stats["redelivered"] += 1
        try:
            return topics.parse_gate_topic(subjects.topic(message.subject))
        except ValueError:
            return None

    def take(self, message: Msg) -> bool:
        """Handle one message (counted by :meth:`_parse`) as the MQTT workers handle a PUBLISH; False when it should
        be tried again."""
        meta = message.metadata
        try:
            topic = subjects.topic(message.subject)
        except ValueError:
            topic = ""
        parsed = topics.parse_gate_topic(topic)
        if parsed is None:
            self.stats["dropped"] += 1
            return True
        if parsed[1] == topics.REQUESTS and self.clock() - meta.timestamp.timestamp() > self.queue.request_max_age_s:
            self.stats["dropped"] += 1
            return True
        log.debug("%s: %s from %s (stream seq %d, delivery %d)", self.client_id, parsed[1], parsed[0],
                  meta.sequence.stream, meta.num_delivered)
        try:
            self.handle(topic, bytes(message.data))  # refusals (CityPassError) are counted and dropped there
        except Exception:
            log.exception("%s: %s from %s failed; to be tried again", self.client_id, parsed[1], parsed[0])
            return False
        return True
