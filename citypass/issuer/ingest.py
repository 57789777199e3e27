"""Tap ingest, the pure half: validate a batch of uploaded outbox events before anything is stored.

A gate uploads its outbox rows (gate/ledger/outbox.py) in batches and marks uploaded exactly the event
ids the issuer acknowledges. So the issuer must acknowledge every event it has *dealt with* — stored,
seen before, or found invalid — or a gate would resend a broken event forever. :func:`prepare` sorts a
batch into events to store and events to quarantine (kept with the reason, acknowledged, never
counted); the repository's ``store_batch`` then stores it in one transaction.

A device is believed only within its registration: a tap must name the uploading device as its gate, the
device's registered site and (for a gate registered as entry or exit) its direction, and its persons must be
plausible for the product (one for an annual pass or a transit ride, at most the party a reservation or group
ticket was issued for). Whatever fails is quarantined — kept with the reason, acknowledged, never counted —
and reported among the incidents (:mod:`citypass.issuer.quarantine`).

    >>> ev = TapEvent("e1", "t1", "annul", {"persons_unused": 0}, 0)
    >>> prepare([ev]).events[0].error
    'annul: persons_unused must be a positive integer'
    >>> gate = Uploader("lake-in", site=2, direction="entry")
    >>> body = {"gate_id": "lake-in", "site": 1, "direction": "entry", "decision": "allow", "reason": None,
    ...         "credential_id": "ab12", "product": 1, "persons": 500, "kind": "entry", "at": 1_800_000_000}
    >>> prepare([TapEvent("e2", "t2", "tap", body, 0)], gate).events[0].error
    'tap: site 1 is not the site lake-in is registered at (2)'
    >>> prepare([TapEvent("e2", "t2", "tap", dict(body, site=2), 0)], gate).events[0].error
    'tap: 500 persons on one annual tap (at most 1)'
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from citypass.credential.claims import MAX_PARTY, MAX_SITE_NUMBER, Product
from citypass.credential.devices import check_outbox_id
from citypass.issuer import watch
from citypass.issuer.benefits import count_taps
from citypass.issuer.records import Device, IngestResult, NotFound, TapEvent, TransactionConflict
from citypass.issuer.tap_records import ANNUAL, TRANSIT, TapRecord

if TYPE_CHECKING:
    from citypass.issuer.repository import (
        BenefitRepository,
        ControlRoomRepository,
        FleetRepository,
        LedgerRepository,
        TapRepository,
    )

    class IngestStore(TapRepository, FleetRepository, LedgerRepository, ControlRoomRepository, BenefitRepository,
                      Protocol):
        """What ingest reads and writes: taps, the device registry, issued credentials, the control room's
        tables, benefit-card uses."""

EVENT_KINDS = ("tap", "annul", "passage", "stage")
#: Tries of one batch's transaction when the database rolls it back to break a deadlock or a serialization
#: conflict with another worker's (PostgreSQL), with a growing, jittered pause between them. Past the last, the
#: error reaches the uploader unacknowledged (HTTP 503), and the gate sends the batch again later.
ATTEMPTS = 5
RETRY_PAUSE_S = 0.02


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
MAX_SITE = MAX_SITE_NUMBER
MAX_PERSONS = 1000
MAX_TIME = 2**40
MAX_PRODUCT = 65535
MAX_BODY_BYTES = 16_384
#: Persons one allowed tap can admit, by product: an annual pass, a transit ride, a benefit card or an event badge
#: admits its holder alone. A reservation or group ticket admits at most its party (the issued party, when the
#: issuer knows the credential).
SINGLE_PERSON_PRODUCTS = {ANNUAL: "annual", TRANSIT: "transit", int(Product.BENEFIT): "benefit",
                          int(Product.EVENT): "event"}

#: The party a reservation or group credential was issued for, by credential id (hex); None when unknown.
PartyOf = Callable[[str], int | None]


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


def ingest(store: IngestStore, raw: Iterable[RawEvent], device_id: str | None, received_at: int) -> IngestResult:
    """One upload, whichever transport brought it: check ids, parse bodies, validate against the device's
    registration, store idempotently. The one path behind ``POST /v1/taps`` and the MQTT ingest workers.

    Raises :class:`~citypass.errors.InvalidInput` (the whole batch refused, nothing stored) for an event or tap
    id that breaks the id rule (:func:`citypass.credential.devices.check_outbox_id`)."""
    events, problems = [], {}
    for e in raw:
        check_outbox_id(e.event_id, "event id")
        check_outbox_id(e.tap_id, "tap id")
        body, problem = parse_body(e.body)
        events.append(TapEvent(e.event_id, e.tap_id, e.kind, body, e.created_at))
        if problem:
            problems[e.event_id] = problem
    uploader = None
    if device_id is not None:
        try:
            uploader = Uploader.of(store.device(device_id))
        except NotFound:  # not registered (a worker told not to require it): the gate id is all there is to check
            uploader = Uploader(device_id)
    batch = prepare(events, uploader, problems, party_of=lambda cid: party_of_credential(store, cid))
    for attempt in itertools.count(1):
        try:
            # The taps and the control room's tables in one transaction (see ControlRoomRepository).
            with store.exclusive():
                result = store.store_batch(batch, device_id, received_at)
                count_taps(store, (p.tap for p in batch.events if p.tap is not None))  # the benefit card's count
                watch.after_batch(store, batch, received_at)  # incidents, tallies, groups, journeys: recomputed
            return result
        except TransactionConflict:  # rolled back whole (a deadlock between workers' upkeep): nothing was stored
            if attempt >= ATTEMPTS:
                raise
            time.sleep(random.uniform(0.5, 1.5) * RETRY_PAUSE_S * attempt)
    raise AssertionError("unreachable")


def party_of_credential(store: IngestStore, credential_id: str) -> int | None:
    """The party a reservation or group credential was issued for (its recorded details), or None."""
    try:
        details = store.credential_details(bytes.fromhex(credential_id))
    except ValueError:
        return None
    party = (details or {}).get("party")
    return party if _is_int(party) else None


@dataclass(frozen=True)
class Uploader:
    """The device an upload comes from, and what its registration fixes (None: not known)."""

    device_id: str
    site: int | None = None
    direction: str | None = None

    @classmethod
    def of(cls, device: Device) -> Uploader:
        return cls(device.id, device.site, device.direction)


def prepare(events: Sequence[TapEvent], uploader: Uploader | None = None,
            problems: Mapping[str, str] | None = None, *, party_of: PartyOf | None = None) -> PreparedBatch:
    """Validate each event. ``uploader`` is the uploading gate, when known: each tap must name it as its gate,
    and its registered site and direction, when those are known. ``problems``
    maps event ids the caller already found broken (e.g. a body that is not JSON) to why. ``party_of`` gives
    the issued party of a reservation or group credential, to bound a tap's persons."""
    seen: set[str] = set()
    out: list[PreparedEvent] = []
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        problem = (problems or {}).get(event.event_id)
        out.append(PreparedEvent(event, error=problem) if problem else _prepare_one(event, uploader, party_of))
    return PreparedBatch(tuple(out))


def _prepare_one(event: TapEvent, uploader: Uploader | None, party_of: PartyOf | None) -> PreparedEvent:
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
        problem = _out_of_range(tap) or _against_registration(tap, uploader) or _implausible(tap, party_of)
        if problem:
            return PreparedEvent(event, error=f"tap: {problem}", body_json=text)
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


def _against_registration(tap: TapRecord, uploader: Uploader | None) -> str | None:
    """What the tap claims beyond what the uploading device's registration allows, if anything."""
    if uploader is None:
        return None
    if tap.gate_id != uploader.device_id:
        return f"gate_id {tap.gate_id!r} is not the uploading device"
    if uploader.site is not None and tap.site != uploader.site:
        return f"site {tap.site} is not the site {uploader.device_id} is registered at ({uploader.site})"
    if uploader.direction is not None and tap.direction != uploader.direction:
        return (f"direction {tap.direction!r} is not {uploader.device_id}'s registered direction "
                f"({uploader.direction!r})")
    return None


def _implausible(tap: TapRecord, party_of: PartyOf | None) -> str | None:
    """Persons beyond what the tap's product can admit at once."""
    if not tap.allowed:
        return None
    if tap.product in SINGLE_PERSON_PRODUCTS and tap.persons > 1:
        return f"{tap.persons} persons on one {SINGLE_PERSON_PRODUCTS[tap.product]} tap (at most 1)"
    limit = MAX_PARTY
    if party_of is not None and tap.credential_id is not None and tap.product not in SINGLE_PERSON_PRODUCTS:
        issued = party_of(tap.credential_id)
        limit = issued if issued is not None else limit
    if tap.persons > limit:
        return f"{tap.persons} persons on one tap; its credential admits at most {limit}"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return False
    return True


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
