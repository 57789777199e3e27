"""The project's MQTT clients close their socket when a TLS handshake fails (paho-mqtt 2.2's own
``tls_set`` clients leave it to the garbage collector, once per reconnect attempt over a bad link)."""

from __future__ import annotations

import gc
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citypass.sync.endpoint import ClientFiles, Endpoint, tls_context
from citypass.sync.home import BrokerHome


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ClientFiles:
    path = tmp_path_factory.mktemp("tls")
    return BrokerHome(path / "broker").init().add_device_with_key("gate-a", 1, path / "keys")


@pytest.fixture
def hang_up() -> Iterator[int]:
    """A port where every connection is accepted and closed at once: a link that dies mid-handshake."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _unclosed_after(connect: Callable[[], None]) -> list[str]:
    """Run ``connect`` (which must fail), collect garbage, and return the unraisable 'unclosed' reports."""
    seen: list[str] = []
    previous = sys.unraisablehook

    def hook(report: Any) -> None:
        seen.append(f"{report.exc_type.__name__}: {report.exc_value}")

    sys.unraisablehook = hook
    try:
        with pytest.raises((OSError, ValueError)):
            connect()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return [s for s in seen if "unclosed" in s]


def test_a_failed_handshake_leaves_no_socket_behind(files: ClientFiles, hang_up: int) -> None:
    client = Endpoint("127.0.0.1", hang_up, tls=files).client("gate-a")
    assert _unclosed_after(lambda: client.connect("127.0.0.1", hang_up)) == []


def test_the_plain_paho_client_would_have_leaked_it(files: ClientFiles, hang_up: int) -> None:
    """The check above can fail: the same failure through paho's own ``tls_set`` leaks the socket."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate-a", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key))
    leaked = _unclosed_after(lambda: client.connect("127.0.0.1", hang_up))
    assert leaked and "SSLSocket" in leaked[0]


def test_the_context_verifies_the_broker(files: ClientFiles) -> None:
    context = tls_context(files)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
