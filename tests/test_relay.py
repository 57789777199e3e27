"""The cuttable link (sync.relay): bytes both ways, a cut that drops every connection and turns new ones
away, a restore, no thread or socket left behind; and a real gate losing its broker link and getting it back."""

from __future__ import annotations

import contextlib
import gc
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from citypass.bench.syncworld import SyncWorld, backlog, fill_outbox, wait_for
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.relay import LinkRelay
from tests.helpers.sync import issuer_sync
from tests.helpers.sync import world as world  # the SyncWorld fixture


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.request.recv(65_536):
                self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def dial(relay: LinkRelay) -> socket.socket:
    return socket.create_connection((relay.listen_host, relay.port), timeout=5.0)


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` (from a thread, so a big payload cannot fill both directions' buffers) and read it back."""
    sender = threading.Thread(target=sock.sendall, args=(data,))
    sender.start()
    received = bytearray()
    while len(received) < len(data) and (chunk := sock.recv(65_536)):
        received += chunk
    sender.join()
    return bytes(received)


def closed_by_peer(sock: socket.socket) -> bool:
    """The peer closed the connection: EOF or a reset (not a timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("relay-")]


def test_forwards_bytes_both_ways_and_passes_a_half_close_on(echo: tuple[str, int]) -> None:
    with LinkRelay(*echo) as relay, dial(relay) as a, dial(relay) as b:
        assert relay.is_up and relay.port > 0
        assert roundtrip(a, b"hello") == b"hello"
        payload = bytes(range(256)) * 8_000  # 2 MB
        assert roundtrip(b, payload) == payload
        assert relay.connections == 2
        a.shutdown(socket.SHUT_WR)  # the echo server sees EOF, ends, and its close comes back to us
        assert a.recv(1) == b""
        assert wait_for(lambda: relay.connections == 1, 5)
        assert roundtrip(b, b"still here") == b"still here"


def test_cut_drops_live_connections_and_turns_new_ones_away_until_restored(echo: tuple[str, int]) -> None:
    with LinkRelay(*echo) as relay, dial(relay) as a, dial(relay) as b:
        assert roundtrip(a, b"x") == b"x" and roundtrip(b, b"y") == b"y"
        relay.cut()
        assert not relay.is_up
        assert relay.connections == 0  # cut() returns once both sides of every pair are closed
        assert closed_by_peer(a) and closed_by_peer(b)
        with pytest.raises(ConnectionRefusedError):
            dial(relay)  # nobody listens while the link is down
        port = relay.port
        relay.restore()
        assert relay.is_up and relay.port == port  # the same port again: the gate's config still holds
        with dial(relay) as d:
            assert roundtrip(d, b"back") == b"back"
            assert relay.connections == 1


def test_an_unreachable_target_closes_the_client(echo: tuple[str, int]) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead_port = spare.getsockname()[1]  # bound, never listening: connections are refused
        with LinkRelay("127.0.0.1", dead_port) as relay, dial(relay) as client:
            assert closed_by_peer(client)
            assert relay.connections == 0


def test_stop_leaves_no_thread_and_no_socket_behind(echo: tuple[str, int]) -> None:
    assert relay_threads() == []
    relay = LinkRelay(*echo).start()
    with dial(relay) as a, dial(relay) as b:
        assert roundtrip(a, b"1") == b"1" and roundtrip(b, b"2") == b"2"
        assert len(relay_threads()) == 5  # the acceptor and two pumps per connection
        relay.stop()
        assert relay_threads() == []
        assert closed_by_peer(a) and closed_by_peer(b)
    relay.stop()  # idempotent
    with pytest.raises(OSError):
        dial(relay)  # nobody listens any more
    gc.collect()  # an unclosed socket would raise a ResourceWarning here (filterwarnings = error)


# -- a real gate, a real broker (TLS end to end through the relay) ------------------------------------------
def test_a_gate_loses_its_broker_link_and_gets_it_back(world: SyncWorld) -> None:
    path = world.gate_ledger("gate-a")
    config = GateSyncConfig(device_id="gate-a", ledger_path=path, root=world.root, site=1, ack_timeout_s=2.0,
                            status_interval_s=0.5, catch_up_interval_s=0.5)
    with issuer_sync(world), LinkRelay(world.broker.host, world.broker.port) as link:
        # Only the port changes: the gate still dials 127.0.0.1, which the broker's certificate names.
        endpoint = replace(world.endpoint("gate-a"), host=link.listen_host, port=link.port)
        gate = GateSync(endpoint, config).start()
        try:
            assert wait_for(lambda: gate.state.connected)
            assert link.connections == 1
            link.cut()
            assert wait_for(lambda: not gate.state.connected, 10)
            tap_ids = fill_outbox(path, "gate-a", 3)  # taps made while the gate is cut off
            time.sleep(1.5)  # paho keeps trying, with its backoff, and is refused
            assert backlog(path) == 3 and world.issuer.store.tap_count() == 0
            link.restore()
            assert wait_for(lambda: gate.state.connected)
            assert wait_for(lambda: backlog(path) == 0), backlog(path)
        finally:
            gate.stop()
    assert {t.tap_id for t in world.issuer.store.taps(limit=100)} == set(tap_ids)
