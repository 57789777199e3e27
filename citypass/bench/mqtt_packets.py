"""The few MQTT 5 packets a simulated gate needs, as bytes: pure functions, no I/O.

``citypass bench broker`` holds thousands of gate sessions in one event loop; paho-mqtt's client (a thread,
a socket and a few hundred kB per connection) is what a real gate runs, but not what a benchmark can run ten
thousand of on two cores. These are the packets such a light client sends and reads — CONNECT (with a Last
Will and a session expiry), CONNACK, SUBSCRIBE, SUBACK, PUBLISH, PUBACK, PINGREQ/PINGRESP, DISCONNECT —
following the MQTT 5.0 standard (OASIS, 2019), section 3. Nothing else of the protocol is implemented.

>>> packet = connect("gate-1", keepalive=30, clean_start=False, session_expiry=604_800,
...                  will=("citypass/v1/gate/gate-1/status", b"offline"))
>>> reader = PacketReader()
>>> [(kind, len(body)) for kind, _, body in reader.feed(packet)]
[(1, 66)]
>>> publish_packet = publish("citypass/v1/all/ledger", b"delta", qos=1, packet_id=7)
>>> [(kind, parse_publish(flags, body)) for kind, flags, body in reader.feed(publish_packet)]
[(3, Publish(topic='citypass/v1/all/ledger', payload=b'delta', qos=1, packet_id=7, retain=False))]

A packet split across reads comes out whole once its last byte arrives:

>>> list(reader.feed(publish_packet[:5])), len(list(reader.feed(publish_packet[5:])))
([], 1)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from citypass.errors import InvalidInput

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
SESSION_EXPIRY = 0x11  # property identifier: Session Expiry Interval (four-byte integer)


class ProtocolError(InvalidInput):
    """Bytes from the broker that are not the MQTT 5 this client expects."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


def connect(client_id: str, *, keepalive: int, clean_start: bool, session_expiry: int,
            will: tuple[str, bytes] | None = None) -> bytes:
    """CONNECT as a gate sends it: no username (the broker takes it from the certificate), the Last Will
    retained at QoS 1 (what :meth:`citypass.sync.endpoint.Endpoint.client` sets)."""
    flags = (0x02 if clean_start else 0) | (0x04 | 0x08 | 0x20 if will else 0)  # will, will QoS 1, will retain
    properties = bytes([SESSION_EXPIRY]) + struct.pack("!I", session_expiry)
    body = _string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + _varint(len(properties)) + properties
    body += _string(client_id)
    if will:
        body += _varint(0) + _string(will[0]) + struct.pack("!H", len(will[1])) + will[1]
    return _packet(CONNECT, 0, body)


def subscribe(packet_id: int, filters: Sequence[tuple[str, int]]) -> bytes:
    """SUBSCRIBE to ``(filter, qos)`` pairs, no properties, default options otherwise."""
    body = struct.pack("!H", packet_id) + _varint(0)
    for topic_filter, qos in filters:
        body += _string(topic_filter) + bytes([qos])
    return _packet(SUBSCRIBE, 0x02, body)


def publish(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 0, retain: bool = False) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + _varint(0) + payload
    return _packet(PUBLISH, qos << 1 | int(retain), body)


def puback(packet_id: int) -> bytes:
    """PUBACK, success (MQTT 5 lets the reason code be left out when it is 0)."""
    return _packet(PUBACK, 0, struct.pack("!H", packet_id))


PINGREQ_PACKET = _packet(PINGREQ, 0, b"")
DISCONNECT_PACKET = _packet(DISCONNECT, 0, b"")


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int
    retain: bool


def _read_varint(data: bytes | bytearray, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(at, min(at + 4, len(data))):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    raise ProtocolError("bad variable byte integer")


def parse_connack(body: bytes) -> tuple[bool, int]:
    """``(session_present, reason_code)``; a reason code of 0x80 or more is a refusal."""
    if len(body) < 2:
        raise ProtocolError("short CONNACK")
    return bool(body[0] & 1), body[1]


def parse_suback(body: bytes) -> tuple[int, bytes]:
    """``(packet_id, reason codes)``: one code per filter, the granted QoS or a failure ≥ 0x80."""
    if len(body) < 3:
        raise ProtocolError("short SUBACK")
    length, at = _read_varint(body, 2)
    return struct.unpack_from("!H", body)[0], body[at + length:]


def parse_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 3
    (length,) = struct.unpack_from("!H", body)
    topic = body[2:2 + length].decode()
    at = 2 + length
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, at)
        at += 2
    prop_length, at = _read_varint(body, at)
    return Publish(topic, body[at + prop_length:], qos, packet_id, bool(flags & 1))


class PacketReader:
    """Splits the bytes read from one connection into ``(type, flags, body)`` packets."""

    def __init__(self, max_packet: int = 1024 * 1024) -> None:
        self._buffer = bytearray()
        self.max_packet = max_packet

    def feed(self, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        self._buffer += data
        while len(self._buffer) >= 2:
            try:
                length, at = _read_varint(self._buffer, 1)
            except ProtocolError:
                if len(self._buffer) < 5:
                    return  # the length's bytes have not all arrived
                raise
            if length > self.max_packet:
                raise ProtocolError(f"a {length}-byte packet is over the limit")
            if len(self._buffer) < at + length:
                return
            first = self._buffer[0]
            body = bytes(self._buffer[at:at + length])
            del self._buffer[:at + length]
            yield first >> 4, first & 0x0F, body
