"""One simulated gate's MQTT session on an asyncio event loop: TLS with its own certificate, a gate's
subscriptions, a gate's reconnect policy — and timestamps of what happened, for ``citypass bench broker``.

A :class:`GateSession` does on the wire what :class:`citypass.sync.gate_sync.GateSync` does, minus the ledger:

* connects over TLS with its device certificate (the broker takes its username and client id from the CN),
  ``clean_start=false`` and a week's session expiry, a retained ``offline`` Last Will on its status topic;
* on CONNACK subscribes to what a gate subscribes to — its acks and catch-up ledger topics, ``all/ledger``,
  ``issuer/time`` (QoS 0) and its site's subtree — and on SUBACK publishes its retained ``online`` status;
* acknowledges every QoS 1 message (PUBACK), pings every ``keepalive`` seconds;
* when the connection is lost, waits and tries again with paho's backoff (first delay, then doubling up to a
  ceiling, reset by a successful CONNACK) and the project's jitter: the first delay and the ceiling come from
  :meth:`citypass.sync.endpoint.Endpoint.backoff`, drawn once per session, exactly as a real gate draws them.

TLS runs through :class:`ssl.SSLObject` over memory BIOs on a plain asyncio transport (:class:`TlsLink`):
asyncio's own TLS transport keeps a 256 kB read buffer per connection, 2.5 GB for 10,000 sessions.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from citypass.bench import mqtt_packets as mp
from citypass.sync import codec, topics
from citypass.sync.endpoint import WEEK_S, Endpoint

T = TypeVar("T")
#: paho's default for the TCP connect and TLS handshake (``Client._connect_timeout``).
CONNECT_TIMEOUT_S = 5.0


class TlsLink(asyncio.Protocol):
    """TLS over one TCP connection with memory BIOs; decrypted bytes go to ``on_data(data, received_at)``."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str,
                 on_data: Callable[[bytes, float], None]) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=False,
                                     server_hostname=server_hostname)
        self._on_data = on_data
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        # A handshake that fails after its session gave up waiting (a timeout) is nobody's news: retrieve it.
        self.handshake.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._step_handshake()

    def _step_handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:
            self._fail(exc)
            return
        self._flush()
        if not self.handshake.done():
            self.handshake.set_result(None)

    def data_received(self, data: bytes) -> None:
        received = time.monotonic()
        self._incoming.write(data)
        if not self.handshake.done():
            self._step_handshake()
            if not self.handshake.done():
                return
        chunks = []
        try:
            while True:
                chunks.append(self._tls.read(65_536))
                if not chunks[-1]:
                    break  # the broker closed TLS
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError) as exc:  # e.g. the broker refused our certificate after the handshake
            self._fail(exc)
            return
        self._flush()  # TLS 1.3 may answer with records of its own (key updates)
        data = b"".join(chunks)
        if data:
            self._on_data(data, received)

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._tls.write(data)
        self._flush()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self._transport is not None and not self._transport.is_closing():
            self._transport.write(pending)

    def _fail(self, exc: BaseException) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("closed during the TLS handshake"))
        if not self.lost.done():
            self.lost.set_result(None)


@dataclass
class SessionRecord:
    """What one session saw, in ``time.monotonic()`` seconds (one clock for every process of the machine)."""

    connects: list[float] = field(default_factory=list)       # each SUBACK: the session is usable
    #: per usable connection, when its attempt began, TCP connected, TLS finished, CONNACK came (SUBACK: connects)
    phases: list[tuple[float, float, float, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)         # each connection lost after it was usable
    sessions_present: list[bool] = field(default_factory=list)
    attempts: int = 0
    refusals: list[int] = field(default_factory=list)         # CONNACK reason codes ≥ 0x80
    ledger: list[tuple[float, bytes]] = field(default_factory=list)  # (received, payload) per ledger delta
    ticks: int = 0


class GateSession:
    """One simulated gate (see the module). ``run()`` until ``stop()``; ``record`` says what happened."""

    def __init__(self, device_id: str, site: int, context: ssl.SSLContext, host: str, port: int, *,
                 keepalive: int = 30, endpoint: Endpoint | None = None, rng: random.Random | None = None) -> None:
        self.device_id, self.site, self.context = device_id, site, context
        self.host, self.port, self.keepalive = host, port, keepalive
        policy = endpoint or Endpoint(host, port, tls=None)
        self.first_delay, self.max_delay = policy.backoff(rng)
        self.record = SessionRecord()
        self.connected = False
        self._link: TlsLink | None = None
        self._reader = mp.PacketReader()
        self._packet_ids = 0
        self._connack: asyncio.Future[tuple[bool, int]] | None = None
        self._suback: asyncio.Future[bytes] | None = None
        self._stopping = False

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        """What :meth:`citypass.sync.gate_sync.GateSync._on_connect` subscribes to, with the same QoS."""
        subs = [topics.gate_acks(self.device_id), topics.gate_ledger(self.device_id), topics.ALL_LEDGER,
                topics.ISSUER_TIME, topics.site_subtree(self.site)]
        return [(t, 0 if t == topics.ISSUER_TIME else 1) for t in subs]

    def _next_id(self) -> int:
        self._packet_ids = self._packet_ids % 65_535 + 1
        return self._packet_ids

    async def run(self, handshakes: asyncio.Semaphore | None = None) -> None:
        """Connect, stay connected, reconnect with backoff, until :meth:`stop`. ``handshakes`` (for the first
        connection only) bounds how many sessions of this loop connect at once: gates switched on in waves."""
        delay: float | None = None
        while not self._stopping:
            self.record.attempts += 1
            try:
                if handshakes is not None:
                    async with handshakes:
                        await self._connect()
                    handshakes = None
                else:
                    await self._connect()
            except (TimeoutError, OSError, mp.ProtocolError):  # ssl.SSLError and ConnectionError are OSErrors
                self._drop()
            else:
                delay = None  # paho resets its backoff on a successful CONNACK
                await self._hold()
            if self._stopping:
                return
            delay = self.first_delay if delay is None else min(delay * 2, self.max_delay)
            await asyncio.sleep(delay)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = mp.PacketReader()
        self._connack, self._suback = loop.create_future(), loop.create_future()
        began = time.monotonic()
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: TlsLink(self.context, self.host, self._on_data), self.host, self.port),
            CONNECT_TIMEOUT_S)
        self._link = link
        tcp = time.monotonic()
        await asyncio.wait_for(link.handshake, CONNECT_TIMEOUT_S)
        tls = time.monotonic()
        will = codec.encode_status(codec.Status(online=False, at=int(time.time())))
        link.write(mp.connect(self.device_id, keepalive=self.keepalive, clean_start=False,
                              session_expiry=WEEK_S, will=(topics.gate_status(self.device_id), will)))
        present, reason = await self._wait(self._connack)
        connack = time.monotonic()
        if reason >= 0x80:
            self.record.refusals.append(reason)
            raise ConnectionError(f"CONNACK refused: 0x{reason:02x}")
        link.write(mp.subscribe(self._next_id(), self.subscriptions))
        codes = await self._wait(self._suback)
        if any(code >= 0x80 for code in codes):
            raise ConnectionError(f"SUBACK refused: {codes.hex()}")
        self.record.sessions_present.append(present)
        self.record.connects.append(time.monotonic())
        self.record.phases.append((began, tcp, tls, connack))
        self.connected = True
        status = codec.encode_status(codec.Status(online=True, at=int(time.time())))
        link.write(mp.publish(topics.gate_status(self.device_id), status, qos=1, packet_id=self._next_id(),
                              retain=True))

    async def _wait(self, future: asyncio.Future[T]) -> T:
        """The broker's answer, or :class:`ConnectionError` if the link closes or a keepalive passes first."""
        assert self._link is not None
        waiters: list[asyncio.Future[Any]] = [future, self._link.lost]
        done, _ = await asyncio.wait(waiters, timeout=self.keepalive, return_when=asyncio.FIRST_COMPLETED)
        if future not in done:
            raise ConnectionError("the connection closed" if done else "no answer within the keepalive")
        return future.result()

    async def _hold(self) -> None:
        assert self._link is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(asyncio.shield(self._link.lost), self.keepalive)
                break
            except TimeoutError:
                self._link.write(mp.PINGREQ_PACKET)
        if self.connected and not self._stopping:
            self.record.losses.append(time.monotonic())
        self._drop()

    def _drop(self) -> None:
        self.connected = False
        if self._link is not None:
            self._link.close()
            self._link = None

    def _on_data(self, data: bytes, received: float) -> None:
        try:
            for kind, flags, body in self._reader.feed(data):
                self._packet(kind, flags, body, received)
        except (mp.ProtocolError, ValueError, IndexError):
            self._drop()

    def _packet(self, kind: int, flags: int, body: bytes, received: float) -> None:
        if kind == mp.PUBLISH:
            message = mp.parse_publish(flags, body)
            if message.qos and self._link is not None:
                self._link.write(mp.puback(message.packet_id))
            if message.topic == topics.ISSUER_TIME:
                self.record.ticks += 1
            elif message.topic.endswith("/ledger"):
                self.record.ledger.append((received, message.payload))
        elif kind == mp.CONNACK and self._connack is not None and not self._connack.done():
            self._connack.set_result(mp.parse_connack(body))
        elif kind == mp.SUBACK and self._suback is not None and not self._suback.done():
            self._suback.set_result(mp.parse_suback(body)[1])

    async def stop(self) -> None:
        """Disconnect cleanly (DISCONNECT: the broker does not publish the Last Will) and stop."""
        self._stopping = True
        if self._link is not None:
            self._link.write(mp.DISCONNECT_PACKET)
            self._link.close()
        self.connected = False
