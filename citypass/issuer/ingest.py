"""Tap ingest, the pure half: validate a batch of uploaded outbox events before anything is stored.

A gate uploads its outbox rows (gate/ledger/outbox.py) in batches and marks uploaded exactly the event
ids the issuer acknowledges. So the issuer must acknowledge every event it has *dealt with* — stored,
seen before, or found invalid — or a gate would resend a broken event forever. :func:`prepare` sorts a
batch into events to store and events to quarantine (kept with the reason, acknowledged, never
counted); the repository's ``store_batch`` then stores it in one transaction.

    >>> ev = TapEvent("e1", "t1", "annul", {"persons_unused": 0}, 0)
    >>> prepare([ev]).events[0].error
    'annul: persons_unused must be a positive integer'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from citypass.issuer.records import IngestResult, TapEvent
from citypass.issuer.tap_records import TapRecord

if TYPE_CHECKING:
    from citypass.issuer.repository import TapRepository

EVENT_KINDS = ("tap", "annul", "passage", "stage")


@dataclass(frozen=True)
class PreparedEvent:
    """One event with what validation made of it: a tap record, an annulment count, or an error."""

    event: TapEvent
    tap: TapRecord | None = None
    persons_unused: int | None = None
    error: str | None = None
    body_json: str = ""  # the body as it is stored (compact JSON), made once during validation

    def stored_body(self) -> str:
        return self.body_json or json.dumps(self.event.body, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch's events, each event id once (the first copy wins), in upload order."""

    events: tuple[PreparedEvent, ...]

    @property
    def event_ids(self) -> list[str]:
        return [p.event.event_id for p in self.events]


#: Bounds on a tap's numbers (the gate's own limits, with room): anything outside is not a real tap.
MAX_SITE = 1023
MAX_PERSONS = 1000
MAX_TIME = 2**40
MAX_PRODUCT = 65535
MAX_BODY_BYTES = 16_384


class RawEvent(Protocol):
    """An uploaded outbox row as either transport carries it (HTTP JSON, MQTT CBOR)."""

    @property
    def event_id(self) -> str: ...
    @property
    def tap_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def body(self) -> dict[str, Any] | str: ...
    @property
    def created_at(self) -> int: ...


def parse_body(body: dict[str, Any] | str) -> tuple[dict[str, Any], str | None]:
    """The event body as an object, and a problem if it is not one (the gate may send the JSON text
    exactly as stored, or the object)."""
    if isinstance(body, dict):
        return body, None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return {"text": body[:200]}, "body is not valid JSON"
    if not isinstance(parsed, dict):
        return {"text": body[:200]}, "body is not a JSON object"
    return parsed, None


def ingest(store: TapRepository, raw: Iterable[RawEvent], device_id: str | None, received_at: int) -> IngestResult:
    """One upload, whichever transport brought it: parse bodies, validate, store idempotently. The one
    path behind ``POST /v1/taps`` and the MQTT ingest workers."""
    events, problems = [], {}
    for e in raw:
        body, problem = parse_body(e.body)
        events.append(TapEvent(e.event_id, e.tap_id, e.kind, body, e.created_at))
        if problem:
            problems[e.event_id] = problem
    return store.store_batch(prepare(events, device_id, problems), device_id, received_at)


def prepare(events: Sequence[TapEvent], device_id: str | None = None,
            problems: Mapping[str, str] | None = None) -> PreparedBatch:
    """Validate each event; ``device_id`` (the uploading gate, when known) must be each tap's gate.
    ``problems`` maps event ids the caller already found broken (e.g. a body that is not JSON) to why."""
    seen: set[str] = set()
    out: list[PreparedEvent] = []
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        problem = (problems or {}).get(event.event_id)
        out.append(PreparedEvent(event, error=problem) if problem else _prepare_one(event, device_id))
    return PreparedBatch(tuple(out))


def _prepare_one(event: TapEvent, device_id: str | None) -> PreparedEvent:
    body = event.body
    if event.kind not in EVENT_KINDS:
        return PreparedEvent(event, error=f"unknown event kind {event.kind!r}")
    try:  # stored as JSON text: it must be JSON (no NaN) and of a sane size
        text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError) as exc:
        return PreparedEvent(event, error=f"body is not plain JSON: {exc}")
    if len(text) > MAX_BODY_BYTES:
        return PreparedEvent(event, error=f"body larger than {MAX_BODY_BYTES} bytes")
    if event.kind == "tap":
        try:
            tap = TapRecord.from_event(event.tap_id, body)
        except (ValueError, TypeError) as exc:
            return PreparedEvent(event, error=f"tap: {exc}", body_json=text)
        problem = _out_of_range(tap)
        if problem:
            return PreparedEvent(event, error=f"tap: {problem}", body_json=text)
        if device_id is not None and tap.gate_id != device_id:
            return PreparedEvent(event, error=f"tap: gate_id {tap.gate_id!r} is not the uploading device",
                                 body_json=text)
        return PreparedEvent(event, tap=tap, body_json=text)
    if event.kind == "annul":
        persons = body.get("persons_unused")
        if not _is_int(persons) or not 1 <= persons <= 1000:
            return PreparedEvent(event, error="annul: persons_unused must be a positive integer", body_json=text)
        return PreparedEvent(event, persons_unused=persons, body_json=text)
    if event.kind == "passage":
        person = body.get("person")
        if not _is_int(person) or not 0 <= person < 1000:
            return PreparedEvent(event, error="passage: person must be a non-negative integer", body_json=text)
    return PreparedEvent(event, body_json=text)


def _out_of_range(tap: TapRecord) -> str | None:
    if tap.site > MAX_SITE:
        return f"site must be 0..{MAX_SITE}"
    if tap.persons > MAX_PERSONS:
        return f"persons must be 0..{MAX_PERSONS}"
    if tap.at >= MAX_TIME:
        return "at is not a plausible Unix time"
    if tap.product is not None and tap.product > MAX_PRODUCT:
        return f"product must be 1..{MAX_PRODUCT}"
    texts = (tap.gate_id, tap.reason or "", tap.kind or "", *tap.flags)
    if not all(_encodable(t) for t in texts) or len(tap.flags) > 32:
        return "text fields must be valid Unicode, at most 32 flags"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return False
    return True


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
