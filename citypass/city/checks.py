"""What the demo proves at the end, as pure checks over what the gates did and what the issuer reports.

:func:`run_checks` takes :class:`Facts` — the visit results seen at the gates, each gate's own tap count
and remaining outbox, and the issuer's reports fetched over HTTP — and returns one :class:`Check` per
claim. The demo prints them and fails (exit status 1) if any does not hold, so the README's first
command is also a test of the whole system.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from citypass.city.lane import VisitResult
from citypass.city.script import LANE1, LANE2, METRO_IN, METRO_OUT, Cast, GateSpec


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Facts:
    cast: Cast
    gates: tuple[GateSpec, ...]
    results: list[VisitResult]
    gate_taps: dict[str, int]        # taps each gate recorded (from its own daemon)
    unexpected: dict[str, int]       # decisions a gate made that no visit asked for
    backlog: dict[str, int]          # outbox events left on each gate at the end
    activity: list[dict[str, Any]]   # GET /v1/activity
    incidents: list[dict[str, Any]]  # GET /v1/incidents
    inside: dict[str, int]           # GET /v1/sites/{site}/occupancy → inside, per entry site
    journeys: list[dict[str, Any]]   # GET /v1/journeys
    fare: int                        # the fare set for the Longxiangqiao → Fengqi pair
    double_use_before_reconnect: int
    lane_counters: dict[str, dict[str, int]]  # each gate's sync counters at the end (lane_applied, lane_races, …)


def run_checks(f: Facts) -> list[Check]:
    return [_decisions(f), _taps(f), _lanes(f), _double_use(f), _refused_reported(f), _occupancy(f), _journeys(f)]


def _decisions(f: Facts) -> Check:
    wrong = [f"{r.gate}: {r.visit.label} → {r.describe()} (expected {r.visit.expect.describe()})"
             for r in f.results if not r.matches]
    extra = sum(f.unexpected.values())
    detail = f"{len(f.results) - len(wrong)}/{len(f.results)} visits decided as expected"
    if extra:
        detail += f"; {extra} decision(s) nobody asked for"
    return Check("every decision and reason as expected", not wrong and not extra,
                 "; ".join([detail, *wrong[:5]]))


def _taps(f: Facts) -> Check:
    at_issuer = Counter[str]()
    for row in f.activity:
        at_issuer[row["gate_id"]] += row["taps"]
    bad = [f"{g.gate_id}: {f.gate_taps.get(g.gate_id, 0)} at the gate, {at_issuer[g.gate_id]} at the issuer, "
           f"{f.backlog.get(g.gate_id, -1)} not acknowledged"
           for g in f.gates
           if f.gate_taps.get(g.gate_id, 0) != at_issuer[g.gate_id] or f.backlog.get(g.gate_id) != 0]
    total = sum(f.gate_taps.values())
    return Check("no tap lost or duplicated", not bad,
                 "; ".join(bad) if bad else f"{total} taps at the gates, {sum(at_issuer.values())} at the issuer, "
                                            "every outbox empty")


def _double_use(f: Facts) -> Check:
    doubles = [i for i in f.incidents if i["kind"] == "double_use"]
    found = [i for i in doubles if i["credential_id"] == f.cast.shared.credential_id
             and {LANE1, LANE2} <= set(i["gate_ids"])]
    ok = len(doubles) == len(found) == 1 and f.double_use_before_reconnect == 0
    return Check("offline double use reported after the link came back", ok,
                 f"{f.double_use_before_reconnect} double use(s) known while {LANE1} was offline; "
                 f"{len(doubles)} after it reconnected" + (f": {found[0]['detail']}" if found else ""))


def _lanes(f: Facts) -> Check:
    """The museum's lanes act as one gate: lane 2 refused the screenshot of what lane 1 had admitted because lane 1
    told it, and once lane 1 was back from isolation each lane flagged the double use it had been part of."""
    shown = [r for r in f.results if r.gate == LANE2 and r.visit.card == f.cast.lent]
    refused = bool(shown) and all(r.outcome is not None and r.outcome.decision.reason is not None
                                  and r.outcome.decision.reason.value == "already_used" for r in shown)
    learned = f.lane_counters.get(LANE2, {}).get("lane_applied", 0)
    races = {g: f.lane_counters.get(g, {}).get("lane_races", 0) for g in (LANE1, LANE2)}
    ok = refused and learned > 0 and all(n >= 1 for n in races.values())
    return Check("the museum's lanes share admissions", ok,
                 f"screenshot at {LANE2}: {'refused already_used' if refused else 'NOT refused'}; {LANE2} applied "
                 f"{learned} of its sibling's admissions; races flagged: "
                 + ", ".join(f"{g} {n}" for g, n in races.items()))


def _refused_reported(f: Facts) -> Check:
    kinds = Counter(i["kind"] for i in f.incidents)
    want = ("forged_code", "revoked_presented", "replayed_code", "passback_denied")
    missing = [k for k in want if not kinds[k]]
    return Check("refused codes reported to the issuer", not missing,
                 ", ".join(f"{k} ×{kinds[k]}" for k in want) + (f"; missing {missing}" if missing else ""))


def _occupancy(f: Facts) -> Check:
    walked = Counter[str]()
    site_of = {g.gate_id: g.site for g in f.gates if g.direction == "entry" and g.site in f.inside}
    for r in f.results:
        if r.gate in site_of:
            walked[site_of[r.gate]] += r.walked
    bad = [f"{site}: {inside} inside at the issuer, {walked[site]} walked in" for site, inside in f.inside.items()
           if inside != walked[site]]
    return Check("occupancy = people who walked through the beams", not bad,
                 "; ".join(bad) or ", ".join(f"{s} {n}" for s, n in f.inside.items()))


def _journeys(f: Facts) -> Check:
    tapped: dict[str, set[str]] = {}
    for r in f.results:
        if r.gate in (METRO_IN, METRO_OUT) and r.outcome is not None and r.outcome.decision.allowed:
            tapped.setdefault(r.visit.card.credential_id, set()).add(r.gate)
    paired = {c for c, gates in tapped.items() if gates == {METRO_IN, METRO_OUT}}
    metro = [j for j in f.journeys if j["credential_id"] in tapped]  # bus rides are other cards
    complete = Counter(j["credential_id"] for j in metro if j["complete"])
    priced = all(j["fare"] == f.fare for j in metro if j["complete"])
    jumper = any(j["credential_id"] == f.cast.jumper.credential_id and j["flag"] == "no_tap_in" for j in metro)
    ok = set(complete) == paired and all(n == 1 for n in complete.values()) and priced and jumper
    return Check("metro journeys paired across stations and priced", ok,
                 f"{sum(complete.values())} complete (expected {len(paired)}), "
                 f"{'all' if priced else 'not all'} at {f.fare} fen; "
                 f"gate jumper flagged no_tap_in: {'yes' if jumper else 'no'}")
