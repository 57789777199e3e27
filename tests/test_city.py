"""The city act's pure parts: the script (who shows what where, expecting what) and the end-of-day checks."""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from typing import Any

import pytest

from citypass.city.checks import Facts, run_checks
from citypass.city.lane import VisitResult
from citypass.city.script import (
    BUS,
    GATES,
    LANE1,
    LANE2,
    METRO_IN,
    METRO_OUT,
    PHASES,
    SCENIC,
    Card,
    Cast,
    Cut,
    Restore,
    Revoke,
    Visit,
    allow,
    build_script,
    crowd,
)
from citypass.credential import Mode, SigningKey, parse
from citypass.credential.reasons import Reason
from citypass.credential.verifier import Verdict
from citypass.gate.daemon import Outcome
from citypass.gate.decision import Decision
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Cast:
    iss = Issuer.init(IssuerHome(tmp_path_factory.mktemp("iss")), [("west-lake", "scenic"),
                                                                    ("zhejiang-museum", "museum")], NOW - 86_400)

    def card(code: str, party: int = 1, phone: SigningKey | None = None) -> Card:
        return Card(code, parse(code).credential.id.hex(), party, phone)

    def annual() -> Card:
        return card(iss.mint_annual(["west-lake"], NOW))

    def reservation(party: int) -> Card:
        return card(iss.mint_reservation("zhejiang-museum", NOW - 60, NOW + 3600, party, NOW), party)

    def rider() -> Card:
        phone = SigningKey.generate()
        return card(iss.mint_transit("1", Mode.METRO | Mode.BUS, NOW, holder=phone.public), phone=phone)

    members = crowd(30, seed=3)
    made = {"annual": annual, "museum": lambda m: reservation(m.party), "metro": rider, "bus": rider}
    return Cast(annual=annual(), revocable=annual(), family=reservation(3), couple=reservation(2),
                shared=reservation(2), lent=reservation(1), wrong_site=reservation(1), forged=reservation(1),
                riders=(rider(), rider()),
                screenshot=rider(), jumper=rider(), bus_rider=rider(), static_transit=rider(),
                crowd=tuple((m, made[m.kind](m) if m.kind == "museum" else made[m.kind]()) for m in members))


def test_crowd_is_reproducible_and_mixed() -> None:
    assert crowd(50, seed=1) == crowd(50, seed=1)
    assert crowd(50, seed=1) != crowd(50, seed=2)
    kinds = {m.kind for m in crowd(200, seed=5)}
    assert kinds == {"annual", "museum", "metro", "bus"}
    for m in crowd(200, seed=5):
        assert 0 <= m.phase < len(PHASES)
        assert 1 <= m.walkers <= m.party
        if m.kind == "museum" and m.phase == 1:
            assert m.lane == LANE1  # the offline lane takes parties while its link is down
        if m.kind == "museum" and m.phase == 2:
            assert m.lane == LANE2
    assert crowd(0, seed=1) == []


def test_script_phases_actions_and_pacing(cast: Cast) -> None:
    phases = build_script(cast, duration_s=20)
    assert [p.name for p in phases] == list(PHASES)
    assert phases[1].before == (Cut(LANE1),)
    assert phases[2].before == (Revoke(cast.revocable, "reported lost", (SCENIC,)),)
    assert phases[3].before == (Restore(LANE1),)
    gate_ids = {g.gate_id for g in GATES}
    for phase in phases:
        for v in phase.visits:
            assert v.gate in gate_ids
            assert 0 <= v.at < 5  # a quarter of the duration
    # the shared reservation: admitted offline at lane 1, then at lane 2 in the next phase
    shared = [(n, v.gate) for n, p in enumerate(phases) for v in p.visits if v.card == cast.shared]
    assert shared == [(1, LANE1), (2, LANE2)]
    # every crowd member appears; metro riders tap out one phase after tapping in, except in the last
    visits = [v for p in phases for v in p.visits]
    for m, card in cast.crowd:
        mine = [v for v in visits if v.card == card]
        if m.kind == "metro":
            assert [v.gate for v in mine] == ([METRO_IN, METRO_OUT] if m.phase < 3 else [METRO_IN])
        else:
            assert len(mine) == 1 and mine[0].expect.persons == m.party


def test_visit_text_shows_live_codes_and_screenshots(cast: Cast) -> None:
    live = Visit("rider", METRO_IN, cast.riders[0], allow(), shown="live")
    assert parse(live.text(NOW)).dynamic and parse(live.text(NOW)).generated_at == NOW
    old = replace(live, age_s=120)
    assert parse(old.text(NOW)).generated_at == NOW - 120
    static = replace(live, shown="static")
    assert static.text(NOW) == cast.riders[0].code


# -- checks ---------------------------------------------------------------------------------------
def _result(v: Visit, phase: str, *, allowed: bool | None = None, reason: str | None = None,
            persons: int | None = None, walked: int | None = None) -> VisitResult:
    ok = v.expect.allowed if allowed is None else allowed
    why = v.expect.reason if reason is None else reason
    reason_ = None if ok else Reason(why)
    decision = Decision(allowed=ok, reason=reason_, verdict=Verdict(ok, reason_), effective_now=NOW,
                        persons=persons or v.expect.persons)
    outcome = Outcome(text=v.card.code, decision=decision, tap_id="t", frame_seq=1)
    return VisitResult(v.gate, phase, v, outcome, v.walkers if walked is None else walked)


def _facts(cast: Cast, **changes: Any) -> Facts:
    phases = build_script(cast, 8)
    results = [_result(v, p.name) for p in phases for v in p.visits]
    taps = {g.gate_id: sum(r.gate == g.gate_id for r in results) for g in GATES}
    walked = {"west-lake": sum(r.walked for r in results if r.gate == SCENIC and r.visit.expect.allowed),
              "zhejiang-museum": sum(r.walked for r in results if r.gate in (LANE1, LANE2) and r.visit.expect.allowed)}
    tapped_in = {r.visit.card.credential_id for r in results if r.gate == METRO_IN and r.visit.expect.allowed}
    tapped_out = {r.visit.card.credential_id for r in results if r.gate == METRO_OUT}
    journeys = [{"credential_id": c, "complete": True, "fare": 400, "flag": None} for c in tapped_in & tapped_out]
    journeys.append({"credential_id": cast.jumper.credential_id, "complete": False, "fare": None, "flag": "no_tap_in"})
    base = dict(
        cast=cast, gates=GATES, results=results, gate_taps=taps, unexpected={}, backlog=dict.fromkeys(taps, 0),
        activity=[{"gate_id": g, "taps": n} for g, n in taps.items()],
        incidents=[{"kind": "double_use", "credential_id": cast.shared.credential_id, "gate_ids": [LANE1, LANE2],
                    "detail": "4 persons admitted on a party of 2"}]
        + [{"kind": k, "credential_id": None, "gate_ids": [SCENIC], "detail": ""}
           for k in ("forged_code", "revoked_presented", "replayed_code", "passback_denied")],
        inside=walked, journeys=journeys, fare=400, double_use_before_reconnect=0,
        lane_counters={LANE1: {"lane_applied": 3, "lane_races": 1}, LANE2: {"lane_applied": 4, "lane_races": 1}},
    )
    base.update(changes)
    return Facts(**base)


def _failed(facts: Facts) -> list[str]:
    return [c.name for c in run_checks(facts) if not c.ok]


def test_checks_pass_on_a_perfect_day(cast: Cast) -> None:
    assert _failed(_facts(cast)) == []


def test_checks_catch_a_wrong_decision_or_an_unread_code(cast: Cast) -> None:
    facts = _facts(cast)
    first = facts.results[0]
    wrong = _result(first.visit, first.phase, allowed=False, reason="expired")
    assert _failed(replace(facts, results=[wrong, *facts.results[1:]])) == ["every decision and reason as expected"]
    unread = VisitResult(first.gate, first.phase, first.visit, None, 0)
    assert "every decision and reason as expected" in _failed(replace(facts, results=[unread, *facts.results[1:]]))
    assert _failed(replace(facts, unexpected={BUS: 1})) == ["every decision and reason as expected"]


def test_checks_catch_a_lost_or_unacknowledged_tap(cast: Cast) -> None:
    facts = _facts(cast)
    lost = [dict(row, taps=row["taps"] - (row["gate_id"] == LANE1)) for row in facts.activity]
    assert _failed(replace(facts, activity=lost)) == ["no tap lost or duplicated"]
    assert _failed(replace(facts, backlog={**facts.backlog, LANE1: 3})) == ["no tap lost or duplicated"]


def test_checks_catch_a_missing_or_premature_double_use(cast: Cast) -> None:
    facts = _facts(cast)
    others = [i for i in facts.incidents if i["kind"] != "double_use"]
    assert _failed(replace(facts, incidents=others)) == ["offline double use reported after the link came back"]
    assert _failed(replace(facts, double_use_before_reconnect=1)) == [
        "offline double use reported after the link came back"]
    another = {"kind": "double_use", "credential_id": cast.family.credential_id, "gate_ids": [LANE1],
               "detail": "5 persons admitted on a party of 3"}
    assert _failed(replace(facts, incidents=[*facts.incidents, another])) == [
        "offline double use reported after the link came back"]


def test_the_lent_screenshot_comes_after_its_admission_at_the_other_lane(cast: Cast) -> None:
    opening = build_script(cast, 8)[0].visits
    [first] = [v for v in opening if v.card == cast.lent and v.gate == LANE1]
    [friend] = [v for v in opening if v.card == cast.lent and v.gate == LANE2]
    assert first.expect.allowed and friend.after == first.label and friend.expect.reason == "already_used"


def test_checks_catch_lanes_that_do_not_share(cast: Cast) -> None:
    facts = _facts(cast)
    name = "the museum's lanes share admissions"
    admitted = [_result(r.visit, r.phase, allowed=True, persons=1) if r.visit.card == cast.lent and r.gate == LANE2
                else r for r in facts.results]
    assert name in _failed(replace(facts, results=admitted))
    deaf = {**facts.lane_counters, LANE2: {"lane_applied": 0, "lane_races": 1}}
    assert _failed(replace(facts, lane_counters=deaf)) == [name]
    unflagged = {**facts.lane_counters, LANE1: {"lane_applied": 3, "lane_races": 0}}
    assert _failed(replace(facts, lane_counters=unflagged)) == [name]


def test_checks_catch_missing_reports_occupancy_and_journeys(cast: Cast) -> None:
    facts = _facts(cast)
    no_forged = [i for i in facts.incidents if i["kind"] != "forged_code"]
    assert _failed(replace(facts, incidents=no_forged)) == ["refused codes reported to the issuer"]
    assert _failed(replace(facts, inside={**facts.inside, "west-lake": facts.inside["west-lake"] + 1})) == [
        "occupancy = people who walked through the beams"]
    assert _failed(replace(facts, journeys=facts.journeys[1:])) == ["metro journeys paired across stations and priced"]
    assert _failed(replace(facts, fare=300)) == ["metro journeys paired across stations and priced"]
    twice = [*facts.journeys, facts.journeys[0]]  # one ride counted twice
    assert _failed(replace(facts, journeys=twice)) == ["metro journeys paired across stations and priced"]


def test_the_demo_names_whatever_it_started_and_did_not_stop() -> None:
    import click
    from rich.console import Console

    from citypass.demo import _stopped

    baseline = set(threading.enumerate())
    release = threading.Event()
    straggler = threading.Thread(target=release.wait, name="gate-straggler", daemon=True)
    straggler.start()
    try:
        with pytest.raises(click.ClickException, match="threads left: gate-straggler"):
            _stopped(Console(file=io.StringIO()), None, baseline, None, wait_s=0.2)
    finally:
        release.set()
        straggler.join()
    out = io.StringIO()
    _stopped(Console(file=out), None, baseline, None, wait_s=0.2)
    assert "0 threads left" in out.getvalue()
