"""The issuer's ingest work queue on a NATS JetStream cluster: its names, its settings and its grants — pure.

On a NATS cluster the gates still publish their tap batches and delta requests over MQTT 3.1.1, to any node;
the engine turns each QoS 1 PUBLISH on ``citypass/v1/gate/D/taps`` into a message on the subject
``citypass.v1.gate.D.taps`` (:mod:`citypass.sync.subjects`). A JetStream stream with *work-queue retention*
captures those subjects (:func:`captured`), replicated over the cluster's nodes (R3 with three), so a batch
published while no ingest worker is connected waits in the stream. One durable pull consumer
(:data:`CONSUMER`), shared by every ingest worker of every issuer node, hands each message to one worker; the
worker stores it, publishes the gate's application ack over MQTT, waits for the engine's PUBACK, and only then
acks the message, which removes it from the stream. A worker that dies leaves its messages unacknowledged; the
consumer gives them to another worker after :attr:`WorkQueue.ack_wait_s` (the store keeps a tap id once, so a
batch stored twice is harmless). The worker itself is :mod:`citypass.sync.ingest_queue`.

>>> captured()
['citypass.v1.gate.*.taps', 'citypass.v1.gate.*.requests']
>>> WorkQueue(parse_servers("nats://n1:4222,n2:4222,tls://n3:4222")).servers
('nats://n1:4222', 'nats://n2:4222', 'tls://n3:4222')
>>> WorkQueue(parse_servers("n1:4222,n2:4222,n3:4222")).stream_replicas
3
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from citypass.errors import InvalidInput
from citypass.sync import topics
from citypass.sync.subjects import subject

#: The stream that holds the gates' batches and delta requests until a worker has taken them.
STREAM = "CITYPASS_INGEST"
#: The one durable pull consumer all ingest workers share (each message goes to one of them).
CONSUMER = "ingest"

_SERVER = re.compile(r"(?:(nats|tls)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


def captured() -> list[str]:
    """The subjects the stream captures: every gate's ``taps`` and ``requests`` topic."""
    return [subject(topics.ALL_TAPS), subject(topics.ALL_REQUESTS)]


def api_grants(stream: str = STREAM, consumer: str = CONSUMER) -> tuple[list[str], list[str]]:
    """``(publish, subscribe)`` NATS subjects an ingest worker needs on the NATS port: make and update the stream
    and its consumer, pull messages, ack them, and read the answers on its inbox. Nothing else of JetStream (the
    engine's own ``$MQTT_*`` streams stay out of reach)."""
    api = "$JS.API"
    publish = [f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.CREATE.{stream}", f"{api}.STREAM.UPDATE.{stream}",
               f"{api}.CONSUMER.INFO.{stream}.{consumer}", f"{api}.CONSUMER.CREATE.{stream}.{consumer}",
               f"{api}.CONSUMER.CREATE.{stream}.{consumer}.>", f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
               f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}", f"$JS.ACK.{stream}.{consumer}.>"]
    return publish, ["_INBOX.>"]


def parse_servers(value: str | Iterable[str]) -> tuple[str, ...]:
    """NATS server URLs from ``"nats://n1:4222,n2:4222"`` (or several such values): ``host:port`` gets
    ``nats://``; ``tls://`` is kept. :class:`~citypass.errors.InvalidInput` names a malformed entry."""
    parts = [value] if isinstance(value, str) else list(value)
    servers: list[str] = []
    for part in parts:
        for item in (p.strip() for p in part.split(",")):
            match = _SERVER.fullmatch(item)
            if not match or not 1 <= int(match.group(3)) <= 65535:
                raise InvalidInput(f"{item!r} is not a NATS server (nats://HOST:PORT or HOST:PORT)")
            servers.append(f"{match.group(1) or 'nats'}://{match.group(2)}:{match.group(3)}")
    if not servers:
        raise InvalidInput("no NATS server given")
    return tuple(dict.fromkeys(servers))


@dataclass(frozen=True)
class WorkQueue:
    """Where the cluster is and how the queue behaves; :mod:`citypass.sync.ingest_queue` makes it so.

    ``replicas``: copies of the stream and its consumer; by default one per server named, at most three — so
    name every node of the cluster. ``ack_wait_s``: how long a message handed to a worker stays its own before
    it goes to another (a dead worker's batches come back after this). ``max_age_s`` / ``max_bytes``: what the
    stream holds at most while no worker takes anything (the oldest goes first; the gates resend whatever was
    not acknowledged to them). ``request_max_age_s``: a delta request older than this when a worker gets it is
    dropped unanswered (its gate has asked again since)."""

    servers: tuple[str, ...]
    stream: str = STREAM
    consumer: str = CONSUMER
    replicas: int | None = None
    ack_wait_s: float = 30.0
    max_ack_pending: int = 256
    max_age_s: float = 86_400.0
    max_bytes: int = 1 << 30
    fetch_batch: int = 16
    request_max_age_s: float = 60.0
    connect_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise InvalidInput("the work queue needs at least one NATS server")
        if self.replicas is not None and not 1 <= self.replicas <= 5:
            raise InvalidInput(f"replicas must be 1 to 5, not {self.replicas}")
        for name in (self.stream, self.consumer):
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                raise InvalidInput(f"{name!r} is not a stream or consumer name (letters, digits, _ and -)")
        if self.ack_wait_s <= 0 or self.max_ack_pending < 1 or self.fetch_batch < 1:
            raise InvalidInput("ack_wait_s, max_ack_pending and fetch_batch must be positive")

    @property
    def stream_replicas(self) -> int:
        """The stream's (and the consumer's) replicas: as given, else one per server named, at most three."""
        return self.replicas if self.replicas is not None else min(3, len(self.servers))
