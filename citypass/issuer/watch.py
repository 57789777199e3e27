"""What ingest keeps up to date for the control room, after every stored batch: incidents, quarter-hour
tallies, and where each tour group is.

:func:`citypass.issuer.ingest.ingest` calls :func:`after_batch` once the batch is durably stored. Everything
here is *recomputed* from the stored taps rather than added up from the batch, so it is idempotent: a batch
sent twice, taps arriving out of order, an annulment arriving before its tap — the result is what the
stored taps say, whichever order they came in.

* **Incidents** (:mod:`citypass.issuer.incidents`, plus ``gate_jumper`` below) are found per *scope*: the
  credential a tap names (``c:<id>``: double use, passback, refused codes, shared passes, gate jumpers) or,
  for what is grouped by gate (a forged code with no readable id, an untrusted clock), the gate
  (``g:<gate>``). Each scope a batch touches is recomputed over its taps of the last :data:`LOOKBACK_S`
  and its unacknowledged incidents in that span replaced; an acknowledged one stays as it was (if it grew
  since, the grown incident has a new id and shows up open again, which is what an operator should see).
* **Tallies**: the (site, quarter hour) pairs the batch touched are recounted (occupancy curves, "inside
  now" and "entries today" read these, never the raw taps).
* **Groups**: a tap of a tour group's pass recounts its stop and moves the group (see
  :mod:`citypass.issuer.groups`).
* **Journeys**: the transit credentials a batch touched are paired again from their taps and their legs in the
  ``journeys`` table replaced (:func:`update_journeys`); ``/v1/journeys`` reads those, not the taps.

The credentials' taps are read once per batch (after locking the credentials, on PostgreSQL) and serve both
the incidents and the journeys.

Kinds added here (stable codes):

=================  ==========================================================================
``gate_jumper``    a transit ride ended (``tap_out``) with no ``tap_in`` before it: the rider
                   jumped or tailgated the entry gate
=================  ==========================================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from citypass.issuer.control_records import QUARTER
from citypass.issuer.incidents import SINGLE_USE_PRODUCTS, Incident, find_incidents
from citypass.issuer.journeys import legs
from citypass.issuer.tap_records import ENTRY, EXIT, TAP, TAP_IN, TAP_OUT, TapRecord, unique_taps

if TYPE_CHECKING:
    from citypass.issuer.ingest import PreparedBatch
    from citypass.issuer.repository import ControlRoomRepository, LedgerRepository

    class WatchStore(ControlRoomRepository, LedgerRepository, Protocol):
        """What the watch reads and writes."""

DAY = 86_400
#: How far back a credential's (or gate's) taps are read to recompute its incidents: the widest window any
#: incident rule looks through (a reservation's entries, a passback's previous entry) with room to spare.
LOOKBACK_S = 2 * DAY
#: A metro ride longer than this is not one ride (as in the journeys report).
MAX_RIDE_S = 4 * 3600
GATE_JUMPER = "gate_jumper"
#: "No upper bound" for a read of taps by time.
FAR = 2**62


def after_batch(store: WatchStore, batch: PreparedBatch, now: int) -> None:
    """Bring incidents, tallies and group positions up to date with what ``batch`` (just stored) touched."""
    taps = [p.tap for p in batch.events if p.error is None and p.tap is not None]
    annulled = [p.event.tap_id for p in batch.events if p.error is None and p.event.kind == "annul"]
    if annulled:  # an annulment changes its tap's counts: recount where that tap was
        known = {t.tap_id for t in taps}
        taps += store.taps_by_id(t for t in annulled if t not in known)
    if not taps:
        return
    store.recount_quarters({(t.site, t.at // QUARTER * QUARTER) for t in taps if t.kind in (ENTRY, EXIT)})
    update_incidents(store, taps, now, keep_journeys=True)
    track_groups(store, taps)


def update_incidents(store: WatchStore, taps: Sequence[TapRecord], now: int, *, keep_journeys: bool = False) -> None:
    """Recompute the incidents of every credential and gate scope these taps belong to (and, with
    ``keep_journeys``, the kept journeys of their transit credentials: :func:`update_journeys`)."""
    start = min(t.at for t in taps) - LOOKBACK_S
    end = max(t.at for t in taps) + DAY
    parties: dict[str, int | None] = {}

    def party_of(credential_id: str) -> int | None:
        if credential_id not in parties:
            details = store.credential_details(bytes.fromhex(credential_id)) or {}
            party = details.get("party")
            parties[credential_id] = party if isinstance(party, int) and not isinstance(party, bool) else None
        return parties[credential_id]

    touched = sorted({t.credential_id for t in taps if t.credential_id})
    riders = _riders(taps) if keep_journeys else []
    found: list[tuple[str, Incident]] = []
    if touched:
        # Lock the credentials (PostgreSQL), then one read of their taps — from a ride before the window on, for
        # the riders' journeys — and recompute the incidents of those whose taps could hold one, or that have an
        # open incident: newer taps may have made it wrong (a ride's end uploaded before its start, say).
        flagged = set(store.open_incident_credentials(touched, start))
        read = store.taps_of_credentials(touched, start - MAX_RIDE_S, FAR if riders else end)
        window: dict[str, list[TapRecord]] = defaultdict(list)
        for tap in read:
            if start <= tap.at < end and tap.credential_id:
                window[tap.credential_id].append(tap)
        credentials = sorted(c for c in touched if c in flagged or could_hold_incident(window[c]))
        theirs = [t for c in credentials for t in window[c]]
        found += [(f"c:{i.credential_id}", i) for i in [*find_incidents(theirs, party_of), *gate_jumpers(theirs)]
                  if i.credential_id]
        if riders:
            _replace_journeys(store, riders, start, read)
    else:
        credentials = []
    gates = sorted({t.gate_id for t in taps if _gate_scoped(t)})
    for gate in gates:
        site = next(t.site for t in taps if t.gate_id == gate)
        theirs = store.gate_taps_of_note(site, gate, start, end)
        found += [(f"g:{gate}", i) for i in find_incidents(theirs, party_of) if i.credential_id is None]
    store.save_incidents([f"c:{c}" for c in credentials] + [f"g:{g}" for g in gates], start, found, now)


def rebuild_incidents(store: WatchStore, now: int, *, page: int = 5000) -> int:
    """Recompute the incidents of every stored tap's scope, a page of taps at a time (each page in one
    transaction): for a store upgraded from before incidents were kept at ingest, or to apply changed rules.
    Acknowledged incidents stay. Returns how many taps were read."""
    return _every_page(store, lambda taps: update_incidents(store, taps, now), page)


def _every_page(store: WatchStore, apply: Callable[[Sequence[TapRecord]], None], page: int) -> int:
    """``apply`` to every stored tap in time order, a page at a time, each page in one transaction; taps read."""
    read = 0
    after: tuple[int, str] | None = None
    while True:
        taps = store.taps_page(since=0, until=2**40, after=after, limit=page)
        if not taps:
            return read
        with store.exclusive():
            apply(taps)
        read += len(taps)
        after = (taps[-1].at, taps[-1].tap_id)


def could_hold_incident(taps: Sequence[TapRecord]) -> bool:
    """Whether one credential's taps could hold an incident, cheaply (the full rules only run where this says so):
    a refusal or a flag other than a metro exit's ``not_tapped_in`` (the exit gate's local view: the issuer pairs
    rides across stations, and would otherwise recompute every metro rider), admissions at two places, two
    admissions of a reservation or group ticket, more ride ends than starts. Every incident rule
    (:func:`citypass.issuer.incidents.find_incidents`, :func:`gate_jumpers`) needs one of these."""
    sites, single_use, ends = set(), 0, 0
    for t in taps:
        if t.decision == "deny" or (t.flags and t.flags != ("not_tapped_in",)):
            return True
        if t.allowed:
            if t.kind in (ENTRY, TAP_IN):
                sites.add(t.site)
            single_use += t.kind == ENTRY and t.product in SINGLE_USE_PRODUCTS
            ends += (t.kind == TAP_OUT) - (t.kind == TAP_IN)
    return len(sites) > 1 or single_use > 1 or ends > 0


def update_journeys(store: WatchStore, taps: Sequence[TapRecord]) -> None:
    """Recompute the kept journeys (:class:`~citypass.issuer.journeys.Leg`) of the transit credentials these taps
    belong to: their taps from :data:`LOOKBACK_S` before the earliest of ``taps`` on are paired again, and their
    legs whose last tap is in that span replaced. Pairing walks a credential's taps in time order, so a tap that
    arrives late (a ride's end before its start) changes the legs around it, never more than a ride before it:
    a leg that ended before the span cannot pair with a tap in it."""
    riders = _riders(taps)
    if riders:
        start = min(t.at for t in taps) - LOOKBACK_S
        _replace_journeys(store, riders, start, store.taps_of_credentials(riders, start - MAX_RIDE_S, FAR))


def rebuild_journeys(store: WatchStore, *, page: int = 5000) -> int:
    """Recompute the kept journeys of every stored tap's transit credential, a page of taps at a time: for a
    store upgraded from before journeys were kept. Returns how many taps were read."""
    return _every_page(store, lambda taps: update_journeys(store, taps), page)


def _riders(taps: Iterable[TapRecord]) -> list[str]:
    """The credentials of these taps that ride (a tap-in, tap-out or single tap, whatever its decision)."""
    return sorted({t.credential_id for t in taps if t.credential_id and t.kind in (TAP_IN, TAP_OUT, TAP)})


def _replace_journeys(store: WatchStore, riders: Sequence[str], start: int, read: Iterable[TapRecord]) -> None:
    mine = set(riders)
    kept = [leg for leg in legs((t for t in read if t.credential_id in mine), max_journey_s=MAX_RIDE_S)
            if leg.last_at >= start]
    store.replace_journeys(riders, start, kept)


def _gate_scoped(tap: TapRecord) -> bool:
    """Whether a tap can be part of an incident grouped by gate rather than by credential."""
    return "clock_untrusted" in tap.flags or tap.reason == "clock_untrusted" or (
        tap.credential_id is None and not tap.allowed)


def gate_jumpers(taps: Iterable[TapRecord]) -> list[Incident]:
    """``gate_jumper`` incidents: allowed ``tap_out`` taps with no allowed ``tap_in`` of the same credential in
    the :data:`MAX_RIDE_S` before them (and after the previous ``tap_out``). One incident per such tap."""
    trails: dict[str, list[TapRecord]] = defaultdict(list)
    for tap in unique_taps(taps):
        if tap.allowed and tap.credential_id and tap.kind in (TAP_IN, TAP_OUT):
            trails[tap.credential_id].append(tap)
    out = []
    for credential_id in sorted(trails):
        open_in: TapRecord | None = None
        for tap in trails[credential_id]:
            if tap.kind == TAP_IN:
                open_in = tap
                continue
            if open_in is None or tap.at - open_in.at > MAX_RIDE_S:
                out.append(Incident(GATE_JUMPER, credential_id, (tap.tap_id,), (tap.gate_id,), (tap.site,), tap.at,
                                    tap.at, f"ride ended at {tap.gate_id} with no tap-in before it: the rider "
                                            "jumped or tailgated the entry gate"))
            open_in = None
    return out


def track_groups(store: WatchStore, taps: Sequence[TapRecord]) -> None:
    """Recount the stops of group passes among ``taps`` and move their groups to where they were last seen."""
    stops = store.group_stops_of({t.credential_id for t in taps if t.credential_id})
    if not stops:
        return
    moves = []
    for tap in sorted(taps, key=lambda t: t.order):
        if tap.credential_id in stops and tap.allowed and tap.kind in (ENTRY, EXIT):
            group_id, _ = stops[tap.credential_id]
            moves.append((group_id, tap.site, tap.at, tap.kind == ENTRY and tap.net_persons > 0))
    store.track_groups(sorted(stops), moves)
