"""Where and as whom a sync client connects: one paho-mqtt 2.x client per identity, MQTT 5 over TLS;
and the issuer's ledger over HTTP, which a gate uses to close a gap (:class:`HttpLedgerSource`).

Shared by the gate (:mod:`citypass.sync.gate_sync`) and the issuer (:mod:`citypass.sync.issuer_sync`), so both connect
the same way: the VERSION2 callback API, the certificate's CN as client id (the broker forces it
anyway, see docs/broker.md), reconnect with exponential backoff (1 s doubling to ``max_backoff_s``: 30 s,
or a gate's ``sync.reconnect_max_s``) with jitter — each client draws its own first delay and ceiling, up
to ``jitter`` (50 %) above the configured ones, so ten thousand gates that lost one broker at the same
instant do not all knock again at the same instants when it comes back — and ``connect_async`` +
``loop_start`` so the network thread does the connecting and reconnecting and no socket is opened on the
caller's thread (no ``loop()`` before ``loop_start()``).

    endpoint = Endpoint("broker.city.example", 8883, tls=ClientFiles(ca, cert, key))
    client = endpoint.client("gate-wl-e1", will=(topics.gate_status("gate-wl-e1"), offline_bytes))
    endpoint.start(client, clean_start=False, session_expiry=7 * 86_400)

**A cluster of brokers.** ``fallbacks`` names the cluster's other nodes: each connection attempt (the first one
and every reconnect) dials the next address in turn, so a client whose node died is on another node after its
next backoff delay. **MQTT 3.1.1.** ``mqtt_version="3.1.1"`` is the degraded mode for an engine without MQTT 5
(NATS, docs/broker.md "A clustered engine"): the same topics and payloads, but the session is kept until the
client connects with a clean one (no session expiry), and there are no shared subscriptions (the issuer's
ingest workers subscribe plainly and the store dedupes, see :mod:`citypass.sync.issuer_sync`).

>>> Endpoint("n1", 8883, None, fallbacks=(("n2", 8883), ("n3", 8883))).addresses
(('n1', 8883), ('n2', 8883), ('n3', 8883))
"""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class ClientFiles:
    """What a client needs for TLS (:func:`tls_context`): the CA certificate, its own certificate and
    its private key."""

    ca: Path
    cert: Path
    key: Path


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails. paho-mqtt (2.2) wraps the TCP socket and calls
    ``do_handshake()`` itself, but drops the socket without closing it when the handshake fails — as it
    does on every reconnect attempt over a link that dies mid-handshake — leaving the file descriptor to
    the garbage collector (a ResourceWarning)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(files: ClientFiles) -> ssl.SSLContext:
    """The client TLS context every MQTT client of the project uses: TLS 1.2 or later, the broker's
    certificate must chain to ``files.ca`` and name the host dialled, this client's certificate and key
    presented (what paho's ``tls_set`` builds, plus sockets that close when a handshake fails)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(str(files.ca))
    context.load_cert_chain(str(files.cert), str(files.key))
    context.sslsocket_class = _ClosingSSLSocket
    return context


def use_tls(client: mqtt.Client, files: ClientFiles) -> None:
    """Give ``client`` the project's TLS context (:func:`tls_context`), hostname checked."""
    client.tls_set_context(tls_context(files))
    client.tls_insecure_set(False)


#: The MQTT protocol versions a client speaks: "5" (the protocol as designed) or "3.1.1" (the degraded mode).
MqttVersion = Literal["5", "3.1.1"]
MQTT_VERSIONS: tuple[MqttVersion, ...] = ("5", "3.1.1")

#: A week: a gate offline for up to this long resumes its session (and its queued acks and deltas).
WEEK_S = 7 * 86_400


@dataclass(frozen=True)
class Endpoint:
    """The broker's address and this client's TLS files (``tls=None`` only for a ``--dev-insecure`` broker)."""

    host: str
    port: int
    tls: ClientFiles | None
    keepalive: int = 30
    min_backoff_s: float = 1
    max_backoff_s: float = 30
    jitter: float = 0.5
    fallbacks: tuple[tuple[str, int], ...] = ()
    mqtt_version: MqttVersion = "5"

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Every node this client may dial, its own first."""
        return ((self.host, self.port), *self.fallbacks)

    def backoff(self, rng: random.Random | None = None) -> tuple[float, float]:
        """This client's (first delay, ceiling): the configured ones stretched by a random factor in
        ``[1, 1 + jitter]`` — the same factor for both, so each client's attempts keep doubling from its own
        start, and different clients' attempts drift apart from the first one on."""
        factor = 1 + (rng or random.SystemRandom()).random() * self.jitter
        return self.min_backoff_s * factor, self.max_backoff_s * factor

    def client(self, client_id: str, *, will: tuple[str, bytes] | None = None,
               clean_start: bool = False) -> mqtt.Client:
        """A configured, not yet connected client. ``will`` is a retained QoS 1 Last Will. ``clean_start`` matters
        only for MQTT 3.1.1, whose clean-session flag belongs to the client (MQTT 5 takes it in :meth:`start`)."""
        if self.mqtt_version == "3.1.1":
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                 clean_session=clean_start)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if self.tls is not None:
            use_tls(client, self.tls)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        first, ceiling = self.backoff()
        # paho annotates the delays as int; it only multiplies, compares and sleeps them, so seconds as floats work.
        client.reconnect_delay_set(first, ceiling)  # type: ignore[arg-type]
        # A gate's backlog is sent in a window of batches; paho's own queue only ever holds that window.
        client.max_inflight_messages_set(64)
        client.max_queued_messages_set(0)
        return client

    def start(self, client: mqtt.Client, *, clean_start: bool, session_expiry: int) -> None:
        """Connect in the background (the network thread retries until the broker answers). With MQTT 3.1.1
        the client's own clean-session flag applies and there is no session expiry: the broker keeps the
        session until the client next connects clean."""
        options: dict[str, Any] = {}
        if self.mqtt_version == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = session_expiry
            options = {"clean_start": clean_start, "properties": props}
        client.connect_async(self.host, self.port, keepalive=self.keepalive, **options)
        if self.fallbacks:
            client.on_pre_connect = _Rotation(self.addresses, self.keepalive, options)
        client.loop_start()


class _Rotation:
    """paho's ``on_pre_connect``: point the client at the next node before each reconnection attempt.

    paho calls it from its network thread with the socket closed, just before it dials; ``connect_async`` (the
    public way to change the address, with the same options) is the only call that may change it then."""

    def __init__(self, addresses: tuple[tuple[str, int], ...], keepalive: int, options: dict[str, Any]) -> None:
        self.addresses = addresses
        self.keepalive = keepalive
        self.options = options
        self.attempts = 0

    def __call__(self, client: mqtt.Client, userdata: Any) -> None:
        if self.attempts:  # the first attempt goes where connect_async already points
            host, port = self.addresses[self.attempts % len(self.addresses)]
            client.connect_async(host, port, keepalive=self.keepalive, **self.options)
        self.attempts += 1


def granted(client: mqtt.Client, subscriptions: list[tuple[str, int]], codes: list[Any], *,
            retry_s: float = 1.0) -> bool:
    """True when the broker granted every subscription of a SUBACK; else subscribe to all of them again in
    ``retry_s`` (from a timer thread: paho's calls are thread-safe) and return False.

    Mosquitto grants what it is asked (it checks deliveries, not subscriptions); a clustered engine may refuse
    one for a while — NATS answers a failure when the node cannot reach the JetStream leader of the session's
    consumer, as in the seconds after another node died. A client that took such a SUBACK as success would
    miss its acks or deltas for the rest of the connection."""
    if not any(getattr(code, "is_failure", False) for code in codes):
        return True
    timer = threading.Timer(retry_s, client.subscribe, args=(subscriptions,))
    timer.daemon = True
    timer.start()
    return False


def stop(client: mqtt.Client) -> None:
    """Disconnect (if connected) and stop the network thread."""
    client.disconnect()
    client.loop_stop()


class HttpLedgerSource:
    """The issuer's ledger over HTTP with the gate's device token: deltas from a sequence, or a snapshot."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def delta(self, since: int) -> bytes | None:
        """The signed delta after ``since``; None when current; :class:`LookupError` if a snapshot is needed."""
        response = self.client.get("/v1/ledger/deltas", params={"since": since})
        if response.status_code == 204:
            return None
        if response.status_code == 409:
            raise LookupError(response.text)
        response.raise_for_status()
        return response.content

    def snapshot(self) -> bytes:
        response = self.client.get("/v1/ledger/snapshot")
        response.raise_for_status()
        return response.content

    def snapshot_chunks(self) -> Iterator[bytes]:
        """The snapshot's body as it streams in (a 10 M-revocation snapshot is ~90 MB: never held whole)."""
        with self.client.stream("GET", "/v1/ledger/snapshot") as response:
            response.raise_for_status()
            yield from response.iter_bytes()

    def close(self) -> None:
        self.client.close()
