"""The sync protocol's payloads: compact, versioned CBOR (RFC 8949), one encoder/decoder pair per message.

Every payload is one CBOR item; the first element of each array (or the ``"v"`` key of the status map)
is the format version, :data:`VERSION` (1). A change old gates cannot read gets a new topic prefix
(``citypass/v2``, see :mod:`citypass.sync.topics`), so the version field is a second line of defence, not the
upgrade path. Byte-level layouts, with sizes, are in docs/mqtt.md.

==============================  ===================================================================
message (topic)                 CBOR
==============================  ===================================================================
tap batch (``gate/D/taps``)     ``[1, batch_id, [[event_id, tap_id, kind, body, created_at], …]]``
ack (``gate/D/acks``)           ``[1, batch_id, [event_id, …], new_taps, duplicates, quarantined]``
request (``gate/D/requests``)   ``[1, since_seq]``: "send me the deltas after since_seq"
status (``gate/D/status``)      ``{"v": 1, "online": bool, "at": uint, "seq": uint|null, …}``
ledger delta (``all/ledger``,   the signed delta of :mod:`citypass.credential.delta`, byte for byte
``gate/D/ledger``)
snapshot notice (``gate/D/ledger``)  ``[1, "snapshot", issuer_seq]``: no delta can help, fetch a snapshot
time tick (``issuer/time``)     COSE_Sign1 by a *ledger* key over ``[1, "time", unix_ms, ledger_seq]``
==============================  ===================================================================

Ids that are canonical UUID strings (every outbox id a gate makes, see :func:`citypass.gate.ledger.outbox.new_id`)
travel as 16-byte byte strings, anything else as text; the decoder gives back the same text either way.
``kind`` is an index into :data:`KINDS`. ``body`` is the outbox row's JSON text exactly as the gate
stored it, so a resend is byte-identical and the issuer stores what the gate wrote.

>>> ev = Event("0190f1c2-7a3b-7c4d-8e5f-60718293a4b5", "t-1", "tap", '{"a":1}', 1_800_000_000)
>>> data = encode_taps(7, [ev])
>>> len(data)  # 16-byte UUID, a 1-byte kind, 7 bytes of body, framing
40
>>> decode_taps(data) == TapBatch(7, (ev,))
True
>>> decode_ack(encode_ack(7, [ev.event_id], 1, 0, 0)).event_ids
('0190f1c2-7a3b-7c4d-8e5f-60718293a4b5',)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from citypass.credential.cose import FormatError, decode_cbor, encode_cbor, parse_sign1, sign1
from citypass.credential.devices import OUTBOX_ID_RE
from citypass.credential.keys import SigningKey
from citypass.credential.trustlist import TrustList
from citypass.errors import InvalidInput

VERSION = 1
KINDS = ("tap", "annul", "passage", "stage")
#: Most events one batch may carry (the issuer's HTTP API allows 1000; gates send 500).
MAX_EVENTS = 1000
MAX_TEXT = 16_384
MAX_ID = 64
TIME_TYPE = "time"
SNAPSHOT_TYPE = "snapshot"


class CodecError(InvalidInput):
    """Bytes that are not a valid version-1 sync message."""


@dataclass(frozen=True)
class Event:
    """One outbox row on the wire (the fields of :class:`citypass.gate.ledger.outbox.OutboxRow` but ``seq``)."""

    event_id: str
    tap_id: str
    kind: str
    body: str
    created_at: int


@dataclass(frozen=True)
class TapBatch:
    batch_id: int
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Ack:
    """The issuer holds ``event_ids`` (new, repeated or quarantined): the gate marks exactly these uploaded."""

    batch_id: int
    event_ids: tuple[str, ...]
    new_taps: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass(frozen=True)
class Status:
    """A gate's retained status. ``None`` fields are unknown and are left out of the encoding."""

    online: bool
    at: int = 0
    seq: int | None = None
    backlog: int | None = None
    fps: float | None = None
    clock_offset: float | None = None
    clock_alarm: bool = False
    software: str = ""
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TimeTick:
    """An issuer-signed instant (Unix milliseconds) and the issuer's ledger sequence at that instant."""

    unix_ms: int
    ledger_seq: int


def _uint(value: Any, name: str, limit: int = 2**63) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise CodecError(f"{name} must be a non-negative integer")
    return value


def _id_out(text: str) -> bytes | str:
    # A canonical UUID string is 36 bytes of text but 16 bytes of binary: ~40 % of a tap's ids.
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-" and text == text.lower():
        try:
            raw = bytes.fromhex(text.replace("-", ""))
        except ValueError:
            return text
        if len(raw) == 16:  # fromhex skips spaces: a 36-character text with one is not a UUID
            return raw
    return text


def _id_in(value: Any, name: str) -> str:
    if isinstance(value, bytes) and len(value) == 16:
        h = value.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if isinstance(value, str) and OUTBOX_ID_RE.fullmatch(value):  # the rule POST /v1/taps applies too
        return value
    raise CodecError(f"{name} must be a 16-byte UUID or 1-{MAX_ID} of A-Z a-z 0-9 _ . : -")


def _decode(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise CodecError("a payload is bytes")
    try:
        return decode_cbor(bytes(data))
    except FormatError as exc:
        raise CodecError(str(exc)) from None


def _array(data: bytes, length: int, what: str) -> list[Any]:
    obj = _decode(data)
    if not isinstance(obj, list) or len(obj) != length or obj[0] != VERSION:
        raise CodecError(f"not a version {VERSION} {what}")
    return obj


# -- taps and acks ------------------------------------------------------------------------------------
def encode_taps(batch_id: int, events: Sequence[Event]) -> bytes:
    """A batch of outbox events (gate → issuer)."""
    rows = [[_id_out(e.event_id), _id_out(e.tap_id), KINDS.index(e.kind), e.body, e.created_at] for e in events]
    return encode_cbor([VERSION, batch_id, rows])


def decode_taps(data: bytes) -> TapBatch:
    _, batch_id, rows = _array(data, 3, "tap batch")
    if not isinstance(rows, list) or len(rows) > MAX_EVENTS:
        raise CodecError(f"a tap batch holds a list of at most {MAX_EVENTS} events")
    events = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 5:
            raise CodecError("an event is [event_id, tap_id, kind, body, created_at]")
        kind = _uint(row[2], "kind", len(KINDS))
        if not isinstance(row[3], str) or len(row[3]) > MAX_TEXT:
            raise CodecError(f"an event body is text of at most {MAX_TEXT} characters")
        events.append(Event(_id_in(row[0], "event_id"), _id_in(row[1], "tap_id"), KINDS[kind], row[3],
                            _uint(row[4], "created_at")))
    return TapBatch(_uint(batch_id, "batch_id"), tuple(events))


def encode_ack(batch_id: int, event_ids: Sequence[str], new_taps: int, duplicates: int, quarantined: int) -> bytes:
    """The issuer's acknowledgement (issuer → one gate)."""
    return encode_cbor([VERSION, batch_id, [_id_out(i) for i in event_ids], new_taps, duplicates, quarantined])


def decode_ack(data: bytes) -> Ack:
    _, batch_id, ids, new, dup, quarantined = _array(data, 6, "ack")
    if not isinstance(ids, list) or len(ids) > MAX_EVENTS:
        raise CodecError("an ack lists at most MAX_EVENTS ids")
    return Ack(_uint(batch_id, "batch_id"), tuple(_id_in(i, "event_id") for i in ids), _uint(new, "new_taps"),
               _uint(dup, "duplicates"), _uint(quarantined, "quarantined"))


# -- requests and notices -----------------------------------------------------------------------------
def encode_request(since: int) -> bytes:
    """A gate asks for the deltas after ``since`` (its ledger sequence)."""
    return encode_cbor([VERSION, since])


def decode_request(data: bytes) -> int:
    return _uint(_array(data, 2, "request")[1], "since")


def encode_snapshot_notice(issuer_seq: int) -> bytes:
    """No delta can bring this gate forward (trust list changed, or the log starts later)."""
    return encode_cbor([VERSION, SNAPSHOT_TYPE, issuer_seq])


def decode_snapshot_notice(data: bytes) -> int | None:
    """The issuer's sequence if ``data`` is a snapshot notice, else None (it is then a signed delta).

    The notice is unsigned on purpose: all it can make a gate do is fetch a signed snapshot."""
    try:
        obj = decode_cbor(bytes(data))
    except FormatError:
        return None
    if isinstance(obj, list) and len(obj) == 3 and obj[0] == VERSION and obj[1] == SNAPSHOT_TYPE:
        return _uint(obj[2], "issuer_seq")
    return None


# -- status ---------------------------------------------------------------------------------------------
def encode_status(status: Status) -> bytes:
    """The retained status map; keys with unknown values are left out."""
    out: dict[str, Any] = {"v": VERSION, "online": status.online, "at": status.at}
    for key, value in (("seq", status.seq), ("backlog", status.backlog), ("fps", status.fps),
                       ("clock_offset", status.clock_offset), ("sw", status.software or None),
                       ("counters", status.counters or None)):
        if value is not None:
            out[key] = value
    if status.clock_alarm:
        out["clock_alarm"] = True
    return encode_cbor(out)


def decode_status(data: bytes) -> Status:
    """A status map; also the bare words ``online``/``offline`` (:data:`citypass.sync.topics.ONLINE`/``OFFLINE``)."""
    if bytes(data) in (b"online", b"offline"):
        return Status(online=bytes(data) == b"online")
    obj = _decode(data)
    if not isinstance(obj, dict) or obj.get("v") != VERSION or not isinstance(obj.get("online"), bool):
        raise CodecError(f"not a version {VERSION} status")

    def opt_num(key: str) -> float | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise CodecError(f"{key} must be a number")
        return float(value)

    seq, backlog = obj.get("seq"), obj.get("backlog")
    counters = obj.get("counters", {})
    if not isinstance(counters, dict) or not all(isinstance(k, str) and isinstance(v, int)
                                                 for k, v in counters.items()):
        raise CodecError("counters must map names to integers")
    software = obj.get("sw", "")
    if not isinstance(software, str):
        raise CodecError("sw must be text")
    return Status(online=obj["online"], at=_uint(obj.get("at", 0), "at"),
                  seq=None if seq is None else _uint(seq, "seq"),
                  backlog=None if backlog is None else _uint(backlog, "backlog"),
                  fps=opt_num("fps"), clock_offset=opt_num("clock_offset"),
                  clock_alarm=obj.get("clock_alarm") is True, software=software, counters=dict(counters))


# -- time ticks -----------------------------------------------------------------------------------------
def sign_time(key: SigningKey, unix_ms: int, ledger_seq: int) -> bytes:
    """An issuer time tick, signed with the ledger key (COSE_Sign1, like deltas)."""
    return sign1(key, encode_cbor([VERSION, TIME_TYPE, unix_ms, ledger_seq]))


def verify_time(data: bytes, trust: TrustList) -> TimeTick:
    """Check a time tick against the gate's trust list (a ``ledger`` key, valid at the tick's time)."""
    try:
        msg = parse_sign1(_decode(data))
    except FormatError as exc:
        raise CodecError(f"malformed time tick: {exc}") from None
    key = trust.find(msg.kid, role="ledger")
    if key is None or not msg.verify(key.key):
        raise CodecError("time tick is not signed by a ledger key of the trust list")
    obj = _decode(msg.payload)
    if not isinstance(obj, list) or len(obj) != 4 or obj[0] != VERSION or obj[1] != TIME_TYPE:
        raise CodecError("not a version 1 time tick")
    tick = TimeTick(_uint(obj[2], "unix_ms"), _uint(obj[3], "ledger_seq"))
    seconds = tick.unix_ms // 1000
    if seconds < key.valid_from or (key.valid_to is not None and seconds >= key.valid_to):
        raise CodecError("time tick signed outside its ledger key's validity")
    return tick
