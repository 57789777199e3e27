"""Allow paths and edges of the decision core: dynamic windows and skew, parties, transit, policies."""

from __future__ import annotations

import pytest

from citypass.credential import Reason, VerifyPolicy, present
from citypass.gate.decision import is_open
from citypass.gate.policy import Direction, GatePolicy, TapKind
from tests.helpers.codes import DAY, NOW, World
from tests.helpers.decisions import at, ledger_for


@pytest.mark.parametrize("age, allowed, reason", [
    (0, True, None),
    (40, True, None),  # window 30 s + skew 10 s
    (41, False, Reason.PRESENTATION_EXPIRED),
    (-10, True, None),  # phone 10 s ahead is within skew
    (-11, False, Reason.PRESENTATION_FROM_FUTURE),
])
def test_dynamic_window_edges_with_default_skew(age: int, allowed: bool, reason: Reason | None, world: World) -> None:
    decision = at(ledger_for(world), world, "scenic", present(world.annual(holder=True), world.holder, NOW - age))
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_dynamic_window_is_configurable(world: World) -> None:
    policy = GatePolicy(verify=VerifyPolicy(window_s=5, skew_s=0))
    p = present(world.annual(holder=True), world.holder, NOW - 6)
    assert at(ledger_for(world), world, "scenic", p, policy=policy).reason is Reason.PRESENTATION_EXPIRED
    p = present(world.annual(holder=True), world.holder, NOW - 5)
    assert at(ledger_for(world), world, "scenic", p, policy=policy).allowed


def test_a_fresh_presentation_of_the_same_credential_is_a_new_entry(world: World) -> None:
    ledger, credential = ledger_for(world), world.transit(holder=True)
    assert at(ledger, world, "bus", present(credential, world.holder, NOW)).allowed
    assert at(ledger, world, "bus", present(credential, world.holder, NOW + 1), NOW + 2).allowed


def test_party_of_three_admits_three_then_is_used_up(world: World) -> None:
    ledger, code = ledger_for(world), world.reservation(party=3)
    first = at(ledger, world, "museum", code)
    assert first.allowed and first.persons == 3 and first.kind is TapKind.ENTRY
    assert at(ledger, world, "museum", code, NOW + 5).reason is Reason.ALREADY_USED


def test_reservation_grace_window_edges(world: World) -> None:
    start, end = NOW + 900, NOW + 4000  # grace 15 min: entry from NOW
    assert at(ledger_for(world), world, "museum", world.reservation(start=start, end=end)).allowed
    assert at(ledger_for(world), world, "museum", world.reservation(start=NOW - 5000, end=NOW - 900)).allowed


def test_metro_tap_in_then_tap_out_and_bus_single_taps(world: World) -> None:
    ledger, code = ledger_for(world), world.transit()
    tap_in = at(ledger, world, "metro", code)
    assert tap_in.allowed and tap_in.kind is TapKind.TAP_IN
    tap_out = at(ledger, world, "metro", code, NOW + 600, direction=Direction.EXIT)
    assert tap_out.allowed and tap_out.kind is TapKind.TAP_OUT and tap_out.flags == ()
    again = at(ledger, world, "metro", code, NOW + 700)
    assert again.allowed and again.kind is TapKind.TAP_IN
    for t in (NOW, NOW + 1):
        bus = at(ledger, world, "bus", code, t)
        assert bus.allowed and bus.kind is TapKind.TAP


def test_metro_exit_without_known_tap_in_is_allowed_and_flagged_by_default(world: World) -> None:
    d = at(ledger_for(world), world, "metro", world.transit(), direction=Direction.EXIT)
    assert d.allowed and Reason.NOT_TAPPED_IN in d.flags


def test_stale_tap_in_does_not_block_a_new_journey(world: World) -> None:
    ledger, code = ledger_for(world), world.transit()
    assert at(ledger, world, "metro", code).allowed
    assert at(ledger, world, "metro", code, NOW + 5 * 3600).kind is TapKind.TAP_IN


def test_soft_passback_allows_and_flags(world: World) -> None:
    ledger, code = ledger_for(world, passback_hard=False), world.annual()
    assert at(ledger, world, "scenic", code).allowed
    second = at(ledger, world, "scenic", code, NOW + 60)
    assert second.allowed and Reason.PASSBACK in second.flags
    # outside the window there is no flag
    assert at(ledger, world, "scenic", code, NOW + 3600).flags == ()


def test_passback_is_per_site(world: World) -> None:
    ledger, code = ledger_for(world), world.annual()
    assert at(ledger, world, "scenic", code).allowed
    assert at(ledger, world, "scenic2", code, NOW + 60).allowed


def test_exit_gate_at_a_scenic_site_counts_the_exit(world: World) -> None:
    ledger, code = ledger_for(world, capacity=1), world.annual()
    assert at(ledger, world, "scenic", code).allowed
    assert ledger.occupancy(1) == 1
    out = at(ledger, world, "scenic", code, NOW + 60, direction=Direction.EXIT)
    assert out.allowed and out.kind is TapKind.EXIT and ledger.occupancy(1) == 0


def test_stale_ledger_is_allowed_but_flagged_by_default(world: World) -> None:
    d = at(ledger_for(world, issued_at=NOW - 4 * DAY), world, "scenic", world.annual())
    assert d.allowed and Reason.LEDGER_STALE in d.flags


def test_untrusted_clock_judges_static_codes_against_the_floor_and_flags_them(world: World) -> None:
    ledger = ledger_for(world)  # floor NOW - 3600
    d = at(ledger, world, "scenic", world.annual(), now=0)
    assert d.allowed and Reason.CLOCK_UNTRUSTED in d.flags and d.effective_now == NOW - 3600
    expired = at(ledger_for(world), world, "scenic", world.annual(valid_to=NOW - 7200), now=0)
    assert expired.reason is Reason.EXPIRED  # the floor is past its validity: denied for what it is
    deny_all = at(ledger_for(world), world, "scenic", world.annual(), now=0,
                  policy=GatePolicy(untrusted_clock_static="deny"))
    assert deny_all.reason is Reason.CLOCK_UNTRUSTED


def test_forged_code_with_untrusted_clock_reports_the_forgery(world: World) -> None:
    from citypass.credential import SigningKey

    d = at(ledger_for(world), world, "scenic", world.annual(key=SigningKey.generate()), now=0)
    assert d.reason is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("opens, closes, minute_of_day, expected", [
    ("09:00", "17:00", 9 * 60, True), ("09:00", "17:00", 17 * 60, False), ("09:00", "17:00", 8 * 60 + 59, False),
    ("22:00", "02:00", 23 * 60, True), ("22:00", "02:00", 60, True), ("22:00", "02:00", 3 * 60, False),
])
def test_opening_hours_in_local_time(world: World, opens: str, closes: str, minute_of_day: int, expected: bool) -> None:
    site = world.sites["scenic"].model_copy(update={"opens": opens, "closes": closes})
    local_midnight_utc = 1_799_942_400  # 2027-01-15T00:00+08:00
    assert is_open(site, local_midnight_utc + minute_of_day * 60) is expected
