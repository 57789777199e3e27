"""The broker's security and durability, proved against a real Mosquitto started on a free port.

Every test gets a fresh broker home (CA, server certificate, ACL) and its own mosquitto process, stopped
by the fixture's finalizer whatever happens. Clients are paho-mqtt 2.x, MQTT 5, TLS with client
certificates, exactly as gates and the issuer will connect.
"""

from __future__ import annotations

import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from citypass.sync import topics
from citypass.sync.broker import Broker
from citypass.sync.ca import CertificateAuthority, make_device_key
from citypass.sync.endpoint import ClientFiles
from citypass.sync.home import BrokerError, BrokerHome

NOT_AUTHORIZED = 0x87
QUIET = 0.4  # how long "nothing arrives" is watched for; deliveries on loopback take milliseconds


class Peer:
    """A paho client with blocking helpers: connect, subscribe, publish (returning the PUBACK code)."""

    def __init__(self, broker: Broker, files: ClientFiles | None, *, client_id: str = "", clean_start: bool = True,
                 session_expiry: int | None = None, will: tuple[str, bytes] | None = None, tls: bool = True) -> None:
        self.broker = broker
        # No automatic reconnects: a test that restarts the broker connects new peers explicitly.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                  reconnect_on_failure=False)
        if tls:
            ca = str(files.ca if files else broker.home.ca_cert)
            if files is not None:
                self.client.tls_set(ca_certs=ca, certfile=str(files.cert), keyfile=str(files.key))
            else:
                self.client.tls_set(ca_certs=ca)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: ReasonCode | None = None
        self.session_present = False
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_publish = lambda c, u, mid, rc, p: self._ack(mid, rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ack(mid, rcs)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connack, self.session_present = rc, bool(flags.session_present)
        (self.disconnected if rc.is_failure else self.connected).set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.disconnected.set()

    def _ack(self, mid: int, value: Any) -> None:
        with self._acked:
            self._acks[mid] = value
            self._acked.notify_all()

    def _wait_ack(self, mid: int) -> Any:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, timeout=5), f"no ack for message {mid}"
            return self._acks.pop(mid)

    def connect(self, timeout: float = 5.0) -> bool:
        """True if the broker accepted us; False if it refused (TLS alert, CONNACK failure or hang-up)."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self.session_expiry is not None:
            props.SessionExpiryInterval = self.session_expiry
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30,
                                clean_start=self.clean_start, properties=props)
        except (ssl.SSLError, OSError):
            return False  # TLS 1.2 style: refused during the handshake
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected.is_set():
                return True
            if self.disconnected.is_set():
                break
            time.sleep(0.01)
        return False

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=qos)
        assert mid is not None
        codes: list[ReasonCode] = self._wait_ack(mid)
        return codes[0]

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> ReasonCode | None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            info.wait_for_publish(5)
            return None
        code: ReasonCode = self._wait_ack(info.mid)
        return code

    def expect(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for _ in range(count):
            message = self.messages.get(timeout=timeout)
            out.append((message.topic, bytes(message.payload)))
        return out

    def quiet(self, timeout: float = QUIET) -> list[tuple[str, bytes]]:
        """Whatever arrives within ``timeout`` (tests assert it is nothing)."""
        time.sleep(timeout)
        out: list[tuple[str, bytes]] = []
        while not self.messages.empty():
            message = self.messages.get_nowait()
            out.append((message.topic, bytes(message.payload)))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def home(tmp_path: Path) -> BrokerHome:
    return BrokerHome(tmp_path / "broker").init()


@pytest.fixture
def keys(home: BrokerHome, tmp_path: Path) -> dict[str, ClientFiles]:
    """Gates a and b at site 7, gate c at site 9, and two issuer identities."""
    out = {name: home.add_device_with_key(f"gate-{name}", site, tmp_path / "keys")
           for name, site in (("a", 7), ("b", 7), ("c", 9))}
    for cn in ("issuer", "issuer-2"):
        files = home.add_service(cn, out_dir=tmp_path / "keys")
        assert isinstance(files, ClientFiles)
        out[cn] = files
    return out


@pytest.fixture
def broker(home: BrokerHome, keys: dict[str, ClientFiles]) -> Iterator[Broker]:
    b = Broker(home).start()
    try:
        yield b
    finally:
        b.kill()  # no graceful wait needed, and never a process left behind
    assert not b.running


@pytest.fixture
def peers(broker: Broker, keys: dict[str, ClientFiles]) -> Iterator[Any]:
    """``peers("a")`` connects gate-a (``peers("issuer")`` the issuer); every peer is closed afterwards."""
    made: list[Peer] = []

    def connect(name: str, *, expect_ok: bool = True, **kw: Any) -> Peer:
        peer = Peer(broker, keys[name], **kw)
        made.append(peer)
        assert peer.connect() is expect_ok, f"{name}: connack {peer.connack}"
        return peer

    yield connect
    for peer in made:
        peer.close()


def test_a_gate_publishes_its_taps_and_reads_its_sites_downstream_topics(peers: Any) -> None:
    issuer, gate = peers("issuer"), peers("a")
    assert issuer.subscribe(topics.ALL_TAPS).value == 1
    for topic in (topics.site_ledger(7), topics.ALL_LEDGER, topics.ISSUER_TIME, topics.gate_acks("gate-a")):
        assert not gate.subscribe(topic).is_failure
    assert gate.publish(topics.gate_taps("gate-a"), b"tap-1").value == 0
    assert issuer.expect() == [(topics.gate_taps("gate-a"), b"tap-1")]
    for topic in (topics.site_ledger(7), topics.site_ledger(9), topics.ALL_LEDGER, topics.ISSUER_TIME,
                  topics.gate_acks("gate-a")):
        assert not issuer.publish(topic, topic.encode()).is_failure  # 0x10 "no subscribers" for site 9
    got = {topic for topic, _ in gate.expect(4)}
    assert got == {topics.site_ledger(7), topics.ALL_LEDGER, topics.ISSUER_TIME, topics.gate_acks("gate-a")}
    assert gate.quiet() == []  # site 9's ledger never arrives


def test_a_client_without_a_certificate_is_refused(broker: Broker) -> None:
    anonymous = Peer(broker, None, client_id="gate-a")
    try:
        assert anonymous.connect() is False
    finally:
        anonymous.close()


def test_a_certificate_from_another_ca_is_refused_even_with_a_known_name(broker: Broker, tmp_path: Path) -> None:
    rogue = CertificateAuthority.create(tmp_path / "rogue-ca", name="City Pass device CA")  # same name, other key
    key, csr = make_device_key(tmp_path / "rogue", "gate-a")
    cert = tmp_path / "rogue" / "gate-a.pem"
    from cryptography.hazmat.primitives.serialization import Encoding
    cert.write_bytes(rogue.sign_csr(csr.read_bytes(), kind="device").public_bytes(Encoding.PEM))
    peer = Peer(broker, ClientFiles(broker.home.ca_cert, cert, key))
    try:
        assert peer.connect() is False
    finally:
        peer.close()


def test_a_revoked_gate_is_refused_and_its_open_session_is_muted(broker: Broker, peers: Any) -> None:
    issuer, open_b = peers("issuer"), peers("b")
    issuer.subscribe(topics.ALL_TAPS)
    open_b.subscribe(topics.gate_acks("gate-b"))
    assert broker.home.revoke("gate-b") == 1  # new CRL + ACL, SIGHUP to the running broker
    broker.reload()  # and wait until mosquitto has logged the reload
    peers("b", expect_ok=False)
    # The connection opened before the revocation survives the CRL (checked only at handshakes), but the
    # ACL's deny lines stop it publishing or receiving anything.
    assert open_b.publish(topics.gate_taps("gate-b"), b"after revocation").value == NOT_AUTHORIZED
    issuer.publish(topics.gate_acks("gate-b"), b"ack")
    assert issuer.quiet() == [] and open_b.quiet() == []
    broker.restart()
    peers("b", expect_ok=False)
    peers("a")  # the others are unaffected


def test_a_gate_cannot_publish_as_another_gate_or_forge_downstream(peers: Any) -> None:
    issuer, a = peers("issuer"), peers("a")
    issuer.subscribe(f"{topics.PREFIX}/#")
    for topic in (topics.gate_taps("gate-b"), topics.gate_status("gate-b"), topics.site_ledger(7),
                  topics.ALL_LEDGER, topics.ISSUER_TIME, topics.gate_acks("gate-a")):
        assert a.publish(topic, b"forged").value == NOT_AUTHORIZED, topic  # MQTT 5 PUBACK 0x87
        a.publish(topic, b"forged qos0", qos=0)  # QoS 0 denials are silent: only absence shows them
    assert issuer.quiet() == []


def test_a_gate_cannot_read_another_gates_private_topics(peers: Any) -> None:
    issuer, a, b = peers("issuer"), peers("a"), peers("b")
    # Mosquitto 2.0's ACL file does not check SUBSCRIBE (SUBACK is "granted"); what it enforces is every
    # delivery against the real topic. EMQX refuses the SUBACK itself. Either way nothing reaches gate a.
    for topic in (topics.gate_acks("gate-b"), f"{topics.PREFIX}/#", "#", topics.site_ledger(9)):
        code = a.subscribe(topic)
        assert code.is_failure or code.value == 1
    b.subscribe(topics.gate_acks("gate-b"))
    issuer.publish(topics.gate_acks("gate-b"), b"ack for b", retain=True)
    issuer.publish(topics.site_ledger(9), b"other site")
    assert b.expect() == [(topics.gate_acks("gate-b"), b"ack for b")]
    assert a.quiet() == []
    late = peers("c")  # a retained message is checked on delivery too
    late.subscribe(topics.gate_acks("gate-b"))
    assert late.quiet() == []


def test_the_client_id_is_the_certificate_cn_so_sessions_cannot_be_stolen(peers: Any) -> None:
    b = peers("b")
    peers("a", client_id="gate-b")  # would take over b's session if the broker honoured the client id
    time.sleep(QUIET)
    assert not b.disconnected.is_set()


def test_issuer_workers_split_every_gates_taps_over_a_shared_subscription(peers: Any) -> None:
    workers = [peers("issuer"), peers("issuer-2")]
    interloper = peers("c")
    for worker in workers:
        assert worker.subscribe(topics.shared("ingest", topics.ALL_TAPS)).value == 1
    # A gate in a share group of its own gets nothing (deliveries are checked against the real topic).
    interloper.subscribe(topics.shared("mine", topics.ALL_TAPS))
    sent = set()
    for name in ("a", "b"):
        gate = peers(name)
        for n in range(10):
            payload = f"gate-{name}/{n}".encode()
            assert gate.publish(topics.gate_taps(f"gate-{name}"), payload).value == 0
            sent.add(payload)
    got: list[list[tuple[str, bytes]]] = [[] for _ in workers]
    deadline = time.monotonic() + 5
    while sum(len(g) for g in got) < len(sent) and time.monotonic() < deadline:
        for worker, bucket in zip(workers, got, strict=True):
            bucket += worker.quiet(0.05)
    payloads = [payload for bucket in got for _, payload in bucket]
    assert sorted(payloads) == sorted(sent)  # every tap once, none twice
    assert all(got), "both workers took a share"
    assert interloper.quiet() == []


def test_a_queued_message_reaches_an_offline_session_after_a_broker_restart(broker: Broker, peers: Any) -> None:
    gate = peers("a", clean_start=False, session_expiry=3600)
    gate.subscribe(topics.site_ledger(7))
    gate.close()
    issuer = peers("issuer")
    assert issuer.publish(topics.site_ledger(7), b"delta 42").value == 0  # 0x10 would mean "no subscribers"
    broker.restart()  # SIGTERM: mosquitto writes mosquitto.db, then starts again from it
    back = peers("a", clean_start=False, session_expiry=3600)
    assert back.session_present
    assert back.expect() == [(topics.site_ledger(7), b"delta 42")]


def test_the_last_will_marks_a_gate_offline_in_its_retained_status(peers: Any) -> None:
    gate = peers("a", will=(topics.gate_status("gate-a"), topics.OFFLINE))
    gate.publish(topics.gate_status("gate-a"), topics.ONLINE, retain=True)
    # Disconnect reason 0x04 asks the broker to publish the Will, as a dropped link would.
    gate.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    assert gate.disconnected.wait(5)
    watcher = peers("issuer")
    watcher.subscribe(topics.ALL_STATUS)
    assert watcher.expect() == [(topics.gate_status("gate-a"), topics.OFFLINE)]
    # Mosquitto 2.0 accepts a Will on a topic the client may not write, but checks it when publishing it:
    # gate a cannot fake gate b's presence.
    liar = peers("a", will=(topics.gate_status("gate-b"), topics.OFFLINE))
    liar.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    assert liar.disconnected.wait(5)
    assert watcher.quiet() == []


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state owned by ``pid`` (from /proc: the sockets among its file descriptors)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_nothing_listens_without_tls(broker: Broker) -> None:
    assert broker.pid is not None
    assert _listening_ports(broker.pid) == {broker.port}
    plain = Peer(broker, None, tls=False)
    try:
        assert plain.connect(timeout=2) is False
    finally:
        plain.close()
    with socket.create_connection((broker.host, broker.port), timeout=2) as raw:
        # An MQTT 3.1.1 CONNECT in the clear: a TLS server cannot answer it with a CONNACK (0x20).
        raw.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0]))
        try:
            reply = raw.recv(16)
        except (ConnectionError, TimeoutError):
            reply = b""
        assert not reply.startswith(b"\x20")


def test_kill_and_restart_leave_no_process_behind(broker: Broker) -> None:
    pid = broker.pid
    assert pid is not None and broker.home.running_pid() == pid
    broker.kill()
    assert not broker.running and broker.home.running_pid() is None
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    broker.start()
    assert broker.running and broker.pid != pid


def test_a_taken_port_or_a_missing_mosquitto_is_a_clear_error(broker: Broker, tmp_path: Path) -> None:
    other = BrokerHome(tmp_path / "other").init()
    with pytest.raises(BrokerError, match="Address already in use"):
        Broker(other, port=broker.port).start()
    assert other.running_pid() is None
    with pytest.raises(BrokerError, match="mosquitto not found at /nonexistent/mosquitto: install it"):
        Broker(other, mosquitto="/nonexistent/mosquitto").start()
