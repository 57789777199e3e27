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
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from citypass.credential.claims import MAX_PARTY, MAX_SITE_NUMBER, Product
from citypass.credential.devices import check_outbox_id
from citypass.errors import CityPassError, InvalidInput, Unavailable
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

log = logging.getLogger(__name__)
EVENT_KINDS = ("tap", "annul", "passage", "stage")
#: Tries of one batch's transaction when the database rolls it back to break a deadlock or a serialization
#: conflict with another worker's (PostgreSQL), with a growing, jittered pause between them. Past the last, the
#: error reaches the uploader unacknowledged (HTTP 503), and the gate sends the batch again later.
ATTEMPTS = 5
RETRY_PAUSE_S = 0.02
#: How much a batch may widen the tap-time span of a run of uploads stored together (see :func:`disjoint_groups`).
MAX_GROUP_SPAN_S = 6 * 3600


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
    exactly as stored, or the object). Text with ``NaN`` or ``Infinity`` in it is not JSON and is refused
    here, so a body that parses is stored as the very text the gate sent."""
    if isinstance(body, dict):
        return body, None
    try:
        parsed = json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return {"text": body[:200]}, "body is not valid JSON"
    if not isinstance(parsed, dict):
        return {"text": body[:200]}, "body is not a JSON object"
    return parsed, None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def ingest(store: IngestStore, raw: Iterable[RawEvent], device_id: str | None, received_at: int) -> IngestResult:
    """One upload, whichever transport brought it: check ids, parse bodies, validate against the device's
    registration, store idempotently. The one path behind ``POST /v1/taps`` and the MQTT ingest workers.

    Raises :class:`~citypass.errors.InvalidInput` (the whole batch refused, nothing stored) for an event or tap
    id that breaks the id rule (:func:`citypass.credential.devices.check_outbox_id`)."""
    outcome = ingest_many(store, [Upload(device_id, raw)], received_at)[0]
    if isinstance(outcome, CityPassError):
        raise outcome
    return outcome


@dataclass(frozen=True)
class Upload:
    """One device's batch as a transport delivered it."""

    device_id: str | None
    events: Iterable[RawEvent]


def ingest_many(store: IngestStore, uploads: Sequence[Upload], received_at: int | Callable[[], int],
                max_events: int = 2000, *, registered_only: bool = False) -> list[IngestResult | CityPassError]:
    """Several uploads (from any devices) as :func:`ingest` takes one, stored together: up to ``max_events``
    events of batches whose ids do not overlap go into one transaction with one set of statements and one round
    of control-room upkeep. An ingest worker with a queue of uploads waiting uses this to spend its database's
    fixed cost per transaction (a commit, a dozen statements planned) on a thousand taps instead of a gate's
    dozen; each upload's result is the same as if it had come alone (:func:`disjoint_groups`).

    Per upload, in order: its result, or the :class:`~citypass.errors.InvalidInput` that refused it whole (an id
    breaking the id rule; nothing of it stored), or :class:`~citypass.errors.Unavailable` for one that made its
    transaction fail in another way (a bug it triggers: logged; the others of its group are then stored one by
    one, so it holds up nobody). A failure of the store (full, unreachable, a conflict past the retries) raises:
    that group is not stored, and no upload of it may be acknowledged. ``received_at`` is a time, or a clock read
    for each transaction (a long call's later transactions are received later). With ``registered_only``, an upload
    from a device the registry does not know is not stored: its outcome is :class:`~citypass.errors.NotFound`."""
    outcomes: list[IngestResult | CityPassError | None] = [None] * len(uploads)
    prepared: list[tuple[int, PreparedBatch, str | None]] = []
    uploaders: dict[str, Uploader | None] = {}  # each device looked up once; None: not registered
    parties: dict[str, int | None] = {}  # each credential's issued party looked up once

    def party_of(credential_id: str) -> int | None:
        if credential_id not in parties:
            parties[credential_id] = party_of_credential(store, credential_id)
        return parties[credential_id]

    for index, upload in enumerate(uploads):
        try:
            events, problems, texts = _parse(upload.events)
        except InvalidInput as exc:
            outcomes[index] = exc
            continue
        uploader = None
        if upload.device_id is not None:
            if upload.device_id not in uploaders:
                try:
                    uploaders[upload.device_id] = Uploader.of(store.device(upload.device_id))
                except NotFound:
                    uploaders[upload.device_id] = None
            uploader = uploaders[upload.device_id]
            if uploader is None and registered_only:
                outcomes[index] = NotFound(f"device {upload.device_id!r} is not registered")
                continue
            # not registered (a worker told not to require it): the gate id is all there is to check
            uploader = uploader or Uploader(upload.device_id)
        batch = prepare(events, uploader, problems, party_of=party_of, texts=texts)
        prepared.append((index, batch, upload.device_id))
    clock = received_at if callable(received_at) else lambda: received_at
    for group in disjoint_groups([(b, d) for _, b, d in prepared], max_events):
        try:
            results: list[IngestResult | CityPassError] = list(
                _store_group(store, [(prepared[i][1], prepared[i][2]) for i in group], clock()))
        except CityPassError:  # the store is full, unreachable, or lost a conflict past the retries: all of it
            raise
        except Exception:
            if len(group) == 1:
                raise
            # Something in one upload broke the transaction (a bug it triggers): each alone, so the others are
            # stored and acked and only the one that fails alone is left for its gate to send again.
            log.exception("a transaction of %d uploads failed; storing each alone", len(group))
            results = [_store_alone(store, prepared[i][1], prepared[i][2], clock()) for i in group]
        for i, result in zip(group, results, strict=True):
            outcomes[prepared[i][0]] = result
    return [o if o is not None else IngestResult((), 0, 0) for o in outcomes]


def _store_alone(store: IngestStore, batch: PreparedBatch, device_id: str | None,
                 received_at: int) -> IngestResult | CityPassError:
    try:
        return _store_group(store, [(batch, device_id)], received_at)[0]
    except CityPassError:
        raise
    except Exception as exc:
        log.exception("an upload from %s could not be stored; not acknowledged", device_id)
        return Unavailable(f"this batch could not be stored ({type(exc).__name__}); it was not acknowledged")


def _parse(raw: Iterable[RawEvent]) -> tuple[list[TapEvent], dict[str, str], dict[str, str]]:
    """An upload's events with their bodies parsed; the event ids whose body is broken, and why; the JSON text of
    each body that came as text. Raises InvalidInput for an id that breaks the id rule."""
    events, problems, texts = [], {}, {}
    seen: set[str] = set()
    for e in raw:
        check_outbox_id(e.event_id, "event id")
        check_outbox_id(e.tap_id, "tap id")
        body, problem = parse_body(e.body)
        events.append(TapEvent(e.event_id, e.tap_id, e.kind, body, e.created_at))
        if e.event_id in seen:  # the first copy is the one validated and stored (prepare): its problem, its text
            continue
        seen.add(e.event_id)
        if problem:
            problems[e.event_id] = problem
        elif isinstance(e.body, str):  # stored as sent: no second encoding of what the gate already wrote
            texts[e.event_id] = e.body
    return events, problems, texts


def disjoint_groups(batches: Sequence[tuple[PreparedBatch, str | None]], max_events: int) -> list[list[int]]:
    """The batches' indexes cut into runs, in order, that may be stored in one transaction: within a run no two
    batches share an event id or a tap id (so none's outcome depends on another's — a resent batch, a tap and
    its annulment in two uploads, a collision between devices all go to the next run, which sees the first's
    rows stored), a run holds at most ``max_events`` events (a batch larger than that alone), and a batch joins a
    run only if together they span at most :data:`MAX_GROUP_SPAN_S` more than the wider of the two (the upkeep
    reads each credential's taps over the run's whole span: a gate whose clock is years off must not widen it for
    the others, while a day's backlog joins other batches of that day).

        >>> ev = lambda e, t: PreparedEvent(TapEvent(e, t, "tap", {}, 0))
        >>> a, b = PreparedBatch((ev("e1", "t1"),)), PreparedBatch((ev("e2", "t2"),))
        >>> disjoint_groups([(a, "g1"), (b, "g2"), (a, "g1"), (b, "g2")], 10)
        [[0, 1], [2, 3]]
        >>> disjoint_groups([(a, "g1"), (b, "g2")], 1)
        [[0], [1]]
    """
    groups: list[list[int]] = []
    seen: set[str] = set()
    size = 0
    span: tuple[int, int] | None = None  # the group's earliest and latest tap
    for index, (batch, _device) in enumerate(batches):
        ids = {p.event.event_id for p in batch.events} | {"\0" + p.event.tap_id for p in batch.events}
        times = [p.tap.at for p in batch.events if p.tap is not None]
        own = (min(times), max(times)) if times else None
        joined = own if span is None else span if own is None else (min(span[0], own[0]), max(span[1], own[1]))
        widened = (span is not None and own is not None and joined is not None
                   and joined[1] - joined[0] > max(span[1] - span[0], own[1] - own[0]) + MAX_GROUP_SPAN_S)
        if not groups or ids & seen or size + len(batch.events) > max_events or widened:
            groups.append([])
            seen, size = set(), 0
            joined = own
        groups[-1].append(index)
        seen |= ids
        size += len(batch.events)
        span = joined
    return groups


def _store_group(store: IngestStore, uploads: list[tuple[PreparedBatch, str | None]],
                 received_at: int) -> list[IngestResult]:
    """Store a group of batches with the control room's upkeep, in one transaction, retried whole on a conflict."""
    merged = PreparedBatch(tuple(p for batch, _ in uploads for p in batch.events))
    for attempt in itertools.count(1):
        try:
            # The taps and the control room's tables in one transaction (see ControlRoomRepository).
            with store.exclusive():
                results = store.store_batches(uploads, received_at)
                count_taps(store, (p.tap for p in merged.events if p.tap is not None))  # the benefit card's count
                watch.after_batch(store, merged, received_at)  # incidents, tallies, groups, journeys: recomputed
            return results
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
            problems: Mapping[str, str] | None = None, *, party_of: PartyOf | None = None,
            texts: Mapping[str, str] | None = None) -> PreparedBatch:
    """Validate each event. ``uploader`` is the uploading gate, when known: each tap must name it as its gate,
    and its registered site and direction, when those are known. ``problems``
    maps event ids the caller already found broken (e.g. a body that is not JSON) to why. ``party_of`` gives
    the issued party of a reservation or group credential, to bound a tap's persons. ``texts`` maps event ids to
    the JSON text their body was parsed from (:func:`parse_body`), stored as it is; other bodies are encoded."""
    seen: set[str] = set()
    out: list[PreparedEvent] = []
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        problem = (problems or {}).get(event.event_id)
        out.append(PreparedEvent(event, error=problem) if problem else
                   _prepare_one(event, uploader, party_of, (texts or {}).get(event.event_id)))
    return PreparedBatch(tuple(out))


def _prepare_one(event: TapEvent, uploader: Uploader | None, party_of: PartyOf | None,
                 text: str | None = None) -> PreparedEvent:
    body = event.body
    if event.kind not in EVENT_KINDS:
        return PreparedEvent(event, error=f"unknown event kind {event.kind!r}")
    if text is None:
        try:  # stored as JSON text: it must be JSON (no NaN) and of a sane size
            text = json.dumps(body, allow_nan=False, separators=(",", ":"))
        except (ValueError, TypeError, RecursionError) as exc:
            return PreparedEvent(event, error=f"body is not plain JSON: {exc}")
    if _utf8_size(text) > MAX_BODY_BYTES:
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


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return False
    return True


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
