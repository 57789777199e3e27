"""The barrier: its rules as a pure state machine, then the same rules on gpiozero's mock pins.

Hardware tests use gpiozero's own MockFactory, passed explicitly (no default factory, so no fallback
warnings), drive the input pins with drive_low()/drive_high() and read the output pins' state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from citypass.gate.barrier import (
    INDICATIONS,
    BarrierConfig,
    BarrierEvent,
    BarrierLogic,
    BarrierMode,
    Blink,
    ExpiryReason,
    FireAlarmCleared,
    FireAlarmStarted,
    ForcedEntry,
    GrantExpired,
    GrantRejected,
    HeldOpen,
    HeldOpenCleared,
    PassageConfirmed,
    Pattern,
    RejectReason,
)
from citypass.gate.barrier.gpio import Barrier, BarrierClosedError

E = TypeVar("E", bound=BarrierEvent)

# Default wiring of BarrierConfig (BCM numbers).
RELAY, SENSOR, GREEN, RED, BUZZER, FIRE = 17, 27, 22, 23, 24, 25


def make_logic(**overrides: Any) -> BarrierLogic:
    """A started lane with round-number timings: walk-up 8 s, per person 5 s, held-open 20 s."""
    settings_ = {"passage_timeout_s": 8, "open_per_person_s": 5, "held_open_alarm_s": 20} | overrides
    logic = BarrierLogic(BarrierConfig(**settings_))
    assert logic.start(now=0.0) == []
    return logic


def walk(logic: BarrierLogic, at: float) -> list[BarrierEvent]:
    """One person through the beam: broken at ``at``, clear half a second later."""
    return logic.passage_started(at) + logic.passage_completed(at + 0.5)


# -- the pure logic ---------------------------------------------------------------------------------
def test_party_of_three_passes_three_times_then_the_barrier_closes() -> None:
    logic = make_logic()
    assert logic.grant(3, "party", now=1.0) == []
    assert logic.relay_open and logic.pattern is Pattern.ALLOW and logic.mode is BarrierMode.OPEN
    assert walk(logic, 2.0) == [PassageConfirmed("party", 0, 2.5)]
    assert walk(logic, 4.0) == [PassageConfirmed("party", 1, 4.5)]
    assert logic.relay_open  # still one to come
    assert walk(logic, 6.0) == [PassageConfirmed("party", 2, 6.5)]
    assert not logic.relay_open and logic.mode is BarrierMode.IDLE
    assert logic.tick(100.0) == []  # nothing left to expire


def test_nobody_passes_the_grant_expires_with_every_entry_unused() -> None:
    logic = make_logic()
    logic.grant(2, "t1", now=1.0)
    assert logic.next_deadline == 9.0
    assert logic.tick(8.9) == [] and logic.relay_open
    assert logic.tick(9.0) == [GrantExpired("t1", persons_passed=0, persons_unused=2, at=9.0)]
    assert not logic.relay_open and logic.pattern is Pattern.IDLE


def test_one_of_three_passes_two_entries_are_annulled() -> None:
    logic = make_logic()
    logic.grant(3, "t1", now=0.0)
    walk(logic, 1.0)
    assert logic.next_deadline == 1.5 + 5  # open_per_person_s after the first cleared the beam
    [expired] = logic.tick(6.5)
    assert isinstance(expired, GrantExpired)
    assert (expired.persons_passed, expired.persons_unused, expired.reason) == (1, 2, ExpiryReason.TIMEOUT)
    assert not logic.relay_open


def test_each_passage_restarts_the_per_person_window() -> None:
    logic = make_logic()
    logic.grant(3, "t1", now=0.0)
    walk(logic, 7.0)  # the walk-up window is 8 s
    walk(logic, 12.0)  # 4.5 s after the first cleared: inside the 5 s window
    assert logic.tick(17.4) == []
    assert logic.tick(17.5) == [GrantExpired("t1", 2, 1, 17.5)]


def test_a_person_in_the_beam_is_never_timed_out() -> None:
    logic = make_logic()
    logic.grant(1, "slow", now=0.0)
    logic.passage_started(7.0)
    assert logic.tick(15.0) == [] and logic.relay_open  # window passed, but they are in the lane
    assert logic.passage_completed(16.0) == [PassageConfirmed("slow", 0, 16.0)]


def test_passage_without_a_grant_is_forced_entry_with_a_brief_alarm() -> None:
    logic = make_logic(forced_entry_alarm_s=3)
    assert walk(logic, 1.0) == [ForcedEntry(at=1.5, started_at=1.0, barrier_open=False)]
    assert logic.pattern is Pattern.ALARM and logic.next_deadline == 4.5
    logic.tick(4.5)
    assert logic.status().pattern is Pattern.IDLE  # (status(): a fresh read, as mypy sees it)


def test_a_follower_after_the_party_is_forced_entry() -> None:
    logic = make_logic()
    logic.grant(1, "one", now=0.0)
    assert walk(logic, 1.0) == [PassageConfirmed("one", 0, 1.5)]
    assert walk(logic, 2.0) == [ForcedEntry(at=2.5, started_at=2.0)]


def test_beam_blocked_too_long_raises_held_open_once_then_clears() -> None:
    logic = make_logic(held_open_alarm_s=20)
    logic.grant(1, "g", now=0.0)
    logic.passage_started(1.0)
    assert logic.next_deadline == 21.0
    assert logic.tick(20.9) == []
    assert logic.tick(21.0) == [HeldOpen(since=1.0, at=21.0, grant_id="g")]
    assert logic.tick(30.0) == []  # reported once
    assert logic.pattern is Pattern.ALARM and logic.status().held_open
    assert logic.passage_completed(31.0) == [HeldOpenCleared(1.0, 31.0), PassageConfirmed("g", 0, 31.0)]
    assert logic.status().pattern is Pattern.IDLE  # (status(): a fresh read, as mypy sees it)


def test_fire_alarm_frees_the_barrier_ends_grants_and_counts_nothing() -> None:
    logic = make_logic(fail_mode="fail_secure")
    logic.grant(2, "a", now=0.0)
    logic.grant(1, "b", now=0.5)  # queued
    walk(logic, 1.0)
    events = logic.fire_alarm(True, now=2.0)
    assert events == [
        FireAlarmStarted(2.0),
        GrantExpired("a", 1, 1, 2.0, ExpiryReason.FIRE_ALARM),
        GrantExpired("b", 0, 1, 2.0, ExpiryReason.FIRE_ALARM),
    ]
    assert logic.relay_open and logic.pattern is Pattern.FIRE and logic.mode is BarrierMode.FIRE_ALARM
    assert walk(logic, 3.0) == []  # evacuating: neither counted nor forced
    assert logic.grant(1, "c", now=4.0) == [GrantRejected("c", 1, RejectReason.FIRE_ALARM, 4.0)]
    logic.passage_started(100.0)
    assert logic.tick(500.0) == []  # a crowd in the beam is no held-open alarm
    assert logic.fire_alarm(True, now=501.0) == []  # a repeated edge is not a second alarm
    assert logic.fire_alarm(False, now=502.0) == [FireAlarmCleared(since=2.0, at=502.0)]
    assert not logic.relay_open
    assert logic.tick(521.9) == []  # the held-open clock restarted when the alarm cleared
    assert logic.tick(522.0) == [HeldOpen(since=100.0, at=522.0, grant_id=None)]
    assert logic.passage_completed(523.0) == [HeldOpenCleared(100.0, 523.0)]  # not forced: began in the alarm


def test_fire_alarm_opens_even_out_of_service_in_fail_secure() -> None:
    logic = BarrierLogic(BarrierConfig(fail_mode="fail_secure"))
    assert not logic.relay_open and logic.mode is BarrierMode.OUT_OF_SERVICE
    logic.fire_alarm(True, now=1.0)
    assert logic.relay_open
    logic.fire_alarm(False, now=2.0)
    assert not logic.relay_open


@pytest.mark.parametrize(("fail_mode", "safe_open"), [("fail_safe", True), ("fail_secure", False)])
def test_safe_state_follows_the_fail_mode(fail_mode: str, safe_open: bool) -> None:
    logic = BarrierLogic(BarrierConfig(fail_mode=fail_mode))
    assert logic.safe_relay_open is safe_open
    assert logic.relay_open is safe_open  # before start()
    assert logic.pattern is Pattern.OUT_OF_ORDER
    assert logic.grant(1, "early", now=0.0) == [GrantRejected("early", 1, RejectReason.OUT_OF_SERVICE, 0.0)]
    logic.start(now=1.0)
    assert logic.relay_open is False  # in service, idle: closed in both modes
    logic.grant(2, "g", now=2.0)
    assert logic.enter_safe_state(now=3.0) == [GrantExpired("g", 0, 2, 3.0, ExpiryReason.SAFE_STATE)]
    assert logic.relay_open is safe_open


def test_walking_through_a_barrier_parked_open_is_recorded_without_a_siren() -> None:
    logic = BarrierLogic(BarrierConfig(fail_mode="fail_safe"))
    assert walk(logic, 1.0) == [ForcedEntry(at=1.5, started_at=1.0, barrier_open=True)]
    assert logic.pattern is Pattern.OUT_OF_ORDER


def test_a_grant_during_a_grant_is_queued_and_takes_over_the_open_barrier() -> None:
    logic = make_logic(max_queued_grants=1)
    logic.grant(2, "a", now=0.0)
    assert logic.grant(1, "b", now=1.0) == []
    assert logic.status().queued == ("b",)
    assert logic.grant(1, "c", now=1.5) == [GrantRejected("c", 1, RejectReason.BUSY, 1.5)]
    assert logic.grant(3, "a", now=1.6) == [GrantRejected("a", 3, RejectReason.DUPLICATE, 1.6)]
    assert logic.grant(1, "b", now=1.7) == [GrantRejected("b", 1, RejectReason.DUPLICATE, 1.7)]
    walk(logic, 2.0)
    assert walk(logic, 3.0) == [PassageConfirmed("a", 1, 3.5)]
    # "a" is done; "b" takes over without the relay closing, with a fresh walk-up window.
    assert logic.relay_open and logic.active_grant_id == "b" and logic.next_deadline == 3.5 + 8
    assert walk(logic, 4.0) == [PassageConfirmed("b", 0, 4.5)]
    assert not logic.relay_open


def test_a_queued_grant_behind_an_expired_one_gets_its_own_window() -> None:
    logic = make_logic()
    logic.grant(1, "a", now=0.0)
    logic.grant(1, "b", now=1.0)
    assert logic.tick(8.0) == [GrantExpired("a", 0, 1, 8.0)]
    assert logic.relay_open and logic.active_grant_id == "b"
    assert logic.tick(16.0) == [GrantExpired("b", 0, 1, 16.0)]
    assert not logic.relay_open


def test_without_a_queue_a_second_grant_is_busy() -> None:
    logic = make_logic(max_queued_grants=0)
    logic.grant(1, "a", now=0.0)
    assert logic.grant(1, "b", now=0.1) == [GrantRejected("b", 1, RejectReason.BUSY, 0.1)]


def test_out_of_order_closes_the_lane_whatever_the_fail_mode() -> None:
    logic = make_logic(fail_mode="fail_safe")
    logic.grant(1, "a", now=0.0)
    assert logic.set_out_of_order(True, now=1.0) == [GrantExpired("a", 0, 1, 1.0, ExpiryReason.OUT_OF_ORDER)]
    assert not logic.relay_open and logic.pattern is Pattern.OUT_OF_ORDER
    assert logic.grant(1, "b", now=2.0) == [GrantRejected("b", 1, RejectReason.OUT_OF_ORDER, 2.0)]
    logic.set_out_of_order(False, now=3.0)
    assert logic.grant(1, "b", now=4.0) == [] and logic.relay_open


def test_deny_shows_briefly_and_leaves_the_relay_alone() -> None:
    logic = make_logic(deny_display_s=1.5)
    logic.deny(now=1.0)
    assert logic.pattern is Pattern.DENY and not logic.relay_open and logic.next_deadline == 2.5
    logic.tick(2.5)
    assert logic.status().pattern is Pattern.IDLE  # (status(): a fresh read, as mypy sees it)


def test_a_good_code_right_after_a_deny_shows_green_at_once() -> None:
    logic = make_logic(deny_display_s=1.5)
    logic.deny(now=1.0)
    logic.grant(1, "retry", now=1.2)
    assert logic.pattern is Pattern.ALLOW and logic.relay_open


def test_repeated_or_orphan_beam_edges_are_ignored() -> None:
    logic = make_logic()
    assert logic.passage_completed(1.0) == []  # cleared without a break we saw
    logic.grant(1, "a", now=2.0)
    logic.passage_started(3.0)
    logic.passage_started(3.1)  # bounce
    assert logic.passage_completed(3.5) == [PassageConfirmed("a", 0, 3.5)]


def test_a_beam_found_broken_at_boot_is_not_a_passage() -> None:
    logic = make_logic()
    logic.passage_started(0.0, exempt=True)
    assert logic.passage_completed(1.0) == []


def test_a_grant_is_for_at_least_one_person() -> None:
    with pytest.raises(ValueError, match="at least one"):
        make_logic().grant(0, "x", now=0.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["grant", "walk", "tick", "fire_on", "fire_off", "beam_on", "beam_off"]),
            st.integers(1, 3),
            st.floats(0.0, 12.0),
        ),
        max_size=40,
    )
)
def test_every_accepted_entry_is_either_passed_or_reported_unused(
    steps: list[tuple[str, int, float]],
) -> None:
    """Whatever happens, each accepted grant's n entries end as passages plus reported unused ones."""
    logic = make_logic()
    now = 0.0
    events: list[BarrierEvent] = []
    granted: dict[str, int] = {}
    for i, (action, n, gap) in enumerate(steps):
        now += gap
        if action == "grant":
            granted[f"g{i}"] = n
            events += logic.grant(n, f"g{i}", now)
        elif action == "walk":
            events += walk(logic, now)
            now += 0.5
        elif action == "tick":
            events += logic.tick(now)
        elif action in ("fire_on", "fire_off"):
            events += logic.fire_alarm(action == "fire_on", now)
        else:
            events += logic.passage_started(now) if action == "beam_on" else logic.passage_completed(now)
        assert logic.relay_open or logic.mode is not BarrierMode.FIRE_ALARM
    events += logic.fire_alarm(False, now) + logic.passage_completed(now)
    for later in range(1, 12):  # one expiry per tick: a promoted grant gets its own fresh window
        events += logic.tick(now + 100 * later)
    for grant_id, n in granted.items():
        rejected = [e for e in events if isinstance(e, GrantRejected) and e.grant_id == grant_id]
        passed = [e for e in events if isinstance(e, PassageConfirmed) and e.grant_id == grant_id]
        expired = [e for e in events if isinstance(e, GrantExpired) and e.grant_id == grant_id]
        if rejected:
            assert (len(rejected), passed, expired) == (1, [], [])
            continue
        assert [p.person_index for p in passed] == list(range(len(passed)))
        if expired:
            [end] = expired
            assert (end.persons_passed, end.persons_passed + end.persons_unused) == (len(passed), n)
        else:
            assert len(passed) == n


# -- configuration and patterns ----------------------------------------------------------------------
def test_config_rejects_unknown_keys_and_shared_pins_and_describes_every_field() -> None:
    with pytest.raises(ValidationError, match="passage_timout_s"):
        BarrierConfig(passage_timout_s=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="both wired to pin"):
        BarrierConfig(relay_pin=5, buzzer_pin=5)
    with pytest.raises(ValidationError):
        BarrierConfig(passage_timeout_s=0)
    for name, field in BarrierConfig.model_fields.items():
        assert field.description, f"{name} has no description"


def test_patterns_sound_different() -> None:
    assert set(INDICATIONS) == set(Pattern)
    allow, deny = INDICATIONS[Pattern.ALLOW].buzzer, INDICATIONS[Pattern.DENY].buzzer
    alarm, broken = INDICATIONS[Pattern.ALARM].buzzer, INDICATIONS[Pattern.OUT_OF_ORDER].buzzer
    assert isinstance(allow, Blink) and allow.n == 1 and allow.on_s <= 0.2
    assert isinstance(deny, Blink) and deny.n == 2 and deny.on_s <= 0.2
    assert isinstance(alarm, Blink) and alarm.n is None and alarm.on_s > alarm.off_s
    assert isinstance(broken, Blink) and broken.off_s >= 1.0
    assert INDICATIONS[Pattern.ALLOW].green is True and INDICATIONS[Pattern.DENY].red is True


# -- on gpiozero's mock pins -------------------------------------------------------------------------
@pytest.fixture
def factory() -> Iterator[Any]:
    pins = MockFactory()
    yield pins
    pins.reset()


@pytest.fixture
def make_barrier(factory: Any) -> Iterator[Callable[..., Barrier]]:
    made: list[Barrier] = []

    def make(on_event: Callable[[BarrierEvent], None] | None = None, **overrides: Any) -> Barrier:
        barrier = Barrier(BarrierConfig(**overrides), pin_factory=factory, on_event=on_event)
        made.append(barrier)
        return barrier

    yield make
    for barrier in made:
        barrier.close()


def relay_level(open_: bool, active_high: bool) -> bool:
    return open_ == active_high


def next_event(barrier: Barrier, kind: type[E], timeout: float = 3.0) -> E:
    """The next event of ``kind`` from the barrier's queue, skipping others."""
    end = time.monotonic() + timeout
    while True:
        event = barrier.events.get(timeout=max(0.0, end - time.monotonic()))
        if isinstance(event, kind):
            return event


def pass_beam(factory: Any) -> None:
    """Default sensor wiring: pull-up, low while the beam is broken."""
    factory.pin(SENSOR).drive_low()
    factory.pin(SENSOR).drive_high()


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize(("fail_mode", "safe_open"), [("fail_safe", True), ("fail_secure", False)])
def test_relay_is_in_the_safe_state_from_construction_without_a_twitch(
    factory: Any, make_barrier: Callable[..., Barrier], active_high: bool, fail_mode: str, safe_open: bool
) -> None:
    make_barrier(relay_active_high=active_high, fail_mode=fail_mode)
    relay = factory.pin(RELAY)
    safe_level = relay_level(safe_open, active_high)
    assert relay.function == "output" and relay.state is safe_level
    # Every level the pin took as an output was the safe one (states[0] is its level as an input).
    assert all(change.state is safe_level for change in relay.states[1:])


@pytest.mark.parametrize("active_high", [True, False])
def test_grant_energises_relay_and_green_lamp_and_records_when(
    factory: Any, make_barrier: Callable[..., Barrier], active_high: bool
) -> None:
    barrier = make_barrier(relay_active_high=active_high)
    barrier.start()
    assert factory.pin(RELAY).state is relay_level(False, active_high)
    before = time.monotonic()
    assert barrier.grant(1, "tap-1") is True
    after = time.monotonic()
    assert factory.pin(RELAY).state is relay_level(True, active_high)
    assert factory.pin(GREEN).state is True and factory.pin(RED).state is False
    energised = barrier.relay_energised_at("tap-1")
    assert energised is not None and before <= energised <= after
    assert barrier.state.grant_id == "tap-1" and barrier.state.relay_open


def test_sensor_pulses_confirm_a_party_then_the_relay_closes(
    factory: Any, make_barrier: Callable[..., Barrier]
) -> None:
    barrier = make_barrier()
    barrier.start()
    barrier.grant(2, "party")
    pass_beam(factory)
    assert factory.pin(RELAY).state is True
    pass_beam(factory)
    assert factory.pin(RELAY).state is False
    confirmed = [next_event(barrier, PassageConfirmed) for _ in range(2)]
    assert [(e.grant_id, e.person_index) for e in confirmed] == [("party", 0), ("party", 1)]


def test_an_inverted_break_beam_receiver_is_read_the_right_way_round(
    factory: Any, make_barrier: Callable[..., Barrier]
) -> None:
    # Open-collector receiver with the internal pull-up: high while broken, which gpiozero alone calls
    # "inactive". The mock pin idles high (the pull-up), i.e. broken: found broken at boot, not a passage.
    barrier = make_barrier(sensor_pull_up=True, sensor_active_low=False)
    barrier.start()
    factory.pin(SENSOR).drive_low()  # receiver powered: beam intact
    barrier.grant(1, "t")
    factory.pin(SENSOR).drive_high()
    factory.pin(SENSOR).drive_low()
    confirmed = next_event(barrier, PassageConfirmed)
    assert isinstance(confirmed, PassageConfirmed) and confirmed.grant_id == "t"
    assert barrier.events.empty()  # and no ForcedEntry for the beam found broken at boot


def test_nobody_passes_the_relay_closes_and_the_grant_expires(
    factory: Any, make_barrier: Callable[..., Barrier]
) -> None:
    barrier = make_barrier(passage_timeout_s=0.2)
    barrier.start()
    barrier.grant(3, "t")
    expired = next_event(barrier, GrantExpired)
    assert isinstance(expired, GrantExpired) and expired.persons_unused == 3
    assert factory.pin(RELAY).state is False and barrier.state.mode is BarrierMode.IDLE


def test_blocked_beam_raises_held_open(factory: Any, make_barrier: Callable[..., Barrier]) -> None:
    barrier = make_barrier(held_open_alarm_s=0.2)
    barrier.start()
    factory.pin(SENSOR).drive_low()
    assert isinstance(next_event(barrier, HeldOpen), HeldOpen)
    assert barrier.state.pattern is Pattern.ALARM
    factory.pin(SENSOR).drive_high()
    assert isinstance(next_event(barrier, HeldOpenCleared), HeldOpenCleared)
    assert isinstance(next_event(barrier, ForcedEntry), ForcedEntry)


@pytest.mark.parametrize("fail_mode", ["fail_safe", "fail_secure"])
def test_fire_alarm_input_opens_the_barrier(factory: Any, make_barrier: Callable[..., Barrier], fail_mode: str) -> None:
    barrier = make_barrier(fail_mode=fail_mode, relay_active_high=False)
    barrier.start()
    assert factory.pin(RELAY).state is True  # active-low relay, closed
    factory.pin(FIRE).drive_low()
    assert factory.pin(RELAY).state is False  # energised: free for evacuation
    assert barrier.state.mode is BarrierMode.FIRE_ALARM
    assert barrier.grant(1, "during") is False
    factory.pin(FIRE).drive_high()
    assert factory.pin(RELAY).state is True
    kinds = []
    while not barrier.events.empty():
        kinds.append(type(barrier.events.get_nowait()))
    assert kinds == [FireAlarmStarted, GrantRejected, FireAlarmCleared]


def test_a_cut_normally_closed_fire_contact_frees_the_barrier_at_boot(
    factory: Any, make_barrier: Callable[..., Barrier]
) -> None:
    # NC contact to ground with the pull-up: the mock pin idles high, as a cut wire would.
    barrier = make_barrier(fire_alarm_pull_up=True, fire_alarm_active_low=False, fail_mode="fail_secure")
    at_boot = barrier.state
    assert factory.pin(RELAY).state is True and at_boot.mode is BarrierMode.FIRE_ALARM
    factory.pin(FIRE).drive_low()  # contact made: all normal
    after = barrier.state
    assert factory.pin(RELAY).state is False and after.mode is BarrierMode.OUT_OF_SERVICE


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize(("fail_mode", "safe_open"), [("fail_safe", True), ("fail_secure", False)])
def test_close_leaves_the_safe_state_and_annuls_the_open_grant(
    factory: Any, active_high: bool, fail_mode: str, safe_open: bool
) -> None:
    barrier = Barrier(BarrierConfig(relay_active_high=active_high, fail_mode=fail_mode), pin_factory=factory)
    barrier.start()
    barrier.grant(2, "g")
    barrier.close()
    barrier.close()  # idempotent
    assert factory.pin(RELAY).state is relay_level(safe_open, active_high)
    expired = barrier.events.get_nowait()
    assert isinstance(expired, GrantExpired)
    assert (expired.grant_id, expired.persons_unused, expired.reason) == ("g", 2, ExpiryReason.SAFE_STATE)
    with pytest.raises(BarrierClosedError):
        barrier.grant(1, "late")


def test_safe_state_parks_the_relay_until_started_again(factory: Any, make_barrier: Callable[..., Barrier]) -> None:
    barrier = make_barrier(fail_mode="fail_safe")
    barrier.start()
    assert factory.pin(RELAY).state is False
    barrier.safe_state()
    assert factory.pin(RELAY).state is True and barrier.grant(1, "x") is False
    barrier.start()
    assert factory.pin(RELAY).state is False and barrier.grant(1, "y") is True


def test_buzzer_beeps_once_to_allow_and_twice_to_deny(factory: Any, make_barrier: Callable[..., Barrier]) -> None:
    barrier = make_barrier(deny_display_s=0.5)
    barrier.start()
    buzzer = factory.pin(BUZZER)

    def beeps_after(action: Callable[[], object], lamp: int) -> int:
        buzzer.clear_states()
        action()
        assert factory.pin(lamp).state is True
        time.sleep(0.6)  # the longer pattern (deny) takes 0.4 s
        return sum(1 for change in buzzer.states[1:] if change.state)

    assert beeps_after(barrier.deny, RED) == 2
    assert beeps_after(lambda: barrier.grant(1, "g"), GREEN) == 1


def test_event_handler_may_call_back_and_sees_events_in_order(
    factory: Any, make_barrier: Callable[..., Barrier]
) -> None:
    seen: list[BarrierEvent] = []
    barrier: Barrier

    def handler(event: BarrierEvent) -> None:
        seen.append(event)
        if isinstance(event, PassageConfirmed) and event.grant_id == "a":
            barrier.grant(1, "b")  # re-entrant: the next visitor, granted from inside the handler
        if isinstance(event, ForcedEntry):
            raise RuntimeError("a broken handler must not break the barrier")

    barrier = make_barrier(on_event=handler, max_queued_grants=0)
    barrier.start()
    barrier.grant(1, "a")
    pass_beam(factory)
    assert barrier.state.grant_id == "b" and factory.pin(RELAY).state is True
    pass_beam(factory)
    pass_beam(factory)  # forced: the handler raises, the barrier carries on
    assert [type(e) for e in seen] == [PassageConfirmed, PassageConfirmed, ForcedEntry]
    assert barrier.grant(1, "c") is True


def test_concurrent_grants_and_passages_keep_the_books(factory: Any, make_barrier: Callable[..., Barrier]) -> None:
    barrier = make_barrier(max_queued_grants=8, passage_timeout_s=0.3, open_per_person_s=0.3)
    barrier.start()
    accepted: list[str] = []
    lock = threading.Lock()

    stop = threading.Event()

    def visitor(i: int) -> None:
        if barrier.grant(1, f"v{i}"):
            with lock:
                accepted.append(f"v{i}")

    def watcher() -> None:  # status reads race the writers on purpose
        while not stop.is_set():
            _ = barrier.state

    reader = threading.Thread(target=watcher)
    reader.start()
    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(4):  # while the ticker and the reader run
        pass_beam(factory)
    deadline = time.monotonic() + 5
    while barrier.state.grant_id is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join()
    passed: dict[str, int] = {}
    unused: dict[str, int] = {}
    while not barrier.events.empty():
        event = barrier.events.get_nowait()
        if isinstance(event, PassageConfirmed):
            passed[event.grant_id] = passed.get(event.grant_id, 0) + 1
        elif isinstance(event, GrantExpired):
            unused[event.grant_id] = event.persons_unused
    assert len(accepted) == 9  # one open, eight queued, three busy
    assert all(passed.get(g, 0) + unused.get(g, 0) == 1 for g in accepted)
    assert sum(passed.values()) == 4
