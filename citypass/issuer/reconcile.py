"""Reconciliation: turning the issuer's collection of taps into what operators need.

This is the one import the issuer's storage and HTTP layers need; the work lives in modules named for
what they hold:

* :mod:`citypass.issuer.tap_records` — :class:`TapRecord` (one validated tap, annulments applied) and
  :func:`unique_taps` (one record per tap id, in ``(at, tap_id)`` order);
* :mod:`citypass.issuer.incidents` — :func:`find_incidents`: double use of a party ticket across gates that were
  offline, anti-passback, forged/replayed/revoked codes, untrusted clocks, shared passes;
* :mod:`citypass.issuer.occupancy` — :func:`occupancy`: people inside a site, entries today, an hourly series
  (:func:`occupancy_from_quarters`: the same from the quarter-hour tallies kept at ingest, what the API reads);
* :mod:`citypass.issuer.journeys` — :class:`FareTable` and :func:`journeys`: metro tap-ins paired with tap-outs
  across stations and midnight, bus and water-bus single taps, fares;
* :mod:`citypass.issuer.activity` — :class:`GateActivity` and :func:`gate_activity`: taps per gate, allowed and
  denied, persons admitted and given back, denials by reason.

Why this shape gives exactly-once accounting (brief, hard part 4): gates deliver events at least once
and in no particular order across gates. Every function here is *pure* (no I/O; ``now`` is an
argument) and is a function of the **set** of taps: it first keeps one record per tap id, then sorts by
``(at, tap_id)``. So a retried upload, a replayed backlog after a power cut, or two gates' weeks of
offline taps arriving interleaved all give the same answer as a perfect feed — a property the tests
check by shuffling and duplicating random inputs. Storage only has to keep taps by id and apply each
``annul`` event once; it never keeps counters that a duplicate could bump twice.

Example (the storage layer, with ``rows`` of stored tap event bodies and annulments)::

    taps = [TapRecord.from_event(r.tap_id, r.body, annulled=r.annulled) for r in rows]
    incidents = find_incidents(taps, party_of=store.party_size)
    now_inside = occupancy(taps, site=3, now=now).inside
    rides = journeys(taps, FareTable.from_dict(config["fares"]), now=now)
    per_gate = gate_activity(taps)
"""

from __future__ import annotations

from citypass.issuer.activity import GateActivity, gate_activity
from citypass.issuer.incidents import (
    FORGED_REASONS,
    REPLAYED_REASONS,
    REVOKED_REASONS,
    SHAREABLE_PRODUCTS,
    SINGLE_USE_PRODUCTS,
    Incident,
    find_incidents,
)
from citypass.issuer.journeys import FareTable, Journey, journeys
from citypass.issuer.occupancy import (
    Occupancy,
    OccupancyPoint,
    local_hour_start,
    local_midnight,
    occupancy,
    occupancy_from_quarters,
)
from citypass.issuer.tap_records import KINDS, TapRecord, unique_taps

__all__ = [
    "FORGED_REASONS",
    "KINDS",
    "REPLAYED_REASONS",
    "REVOKED_REASONS",
    "SHAREABLE_PRODUCTS",
    "SINGLE_USE_PRODUCTS",
    "FareTable",
    "GateActivity",
    "Incident",
    "Journey",
    "Occupancy",
    "OccupancyPoint",
    "TapRecord",
    "find_incidents",
    "gate_activity",
    "journeys",
    "local_hour_start",
    "local_midnight",
    "occupancy",
    "occupancy_from_quarters",
    "unique_taps",
]
