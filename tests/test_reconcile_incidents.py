"""Incidents: offline double use, anti-passback, refused codes, clock trouble and shared passes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from citypass.issuer.reconcile import Incident, TapRecord, find_incidents
from tests.helpers.reconcile import ANNUAL, GROUP, MINUTE, RESERVATION, TRANSIT, deny, hexid, local, tap

T = local(10)
PARTIES = {hexid("c1"): 1, hexid("p3"): 3}


def party_of(credential_id: str) -> int | None:
    return PARTIES.get(credential_id)


def kinds(taps: Sequence[TapRecord], **options: int) -> list[tuple[str, tuple[str, ...]]]:
    """(kind, tap ids) of every incident."""
    return [(i.kind, i.tap_ids) for i in find_incidents(taps, party_of, **options)]


# -- double use ---------------------------------------------------------------------------------------
def museum(tap_id: str, gate: str, persons: int, *, cred: str = "c1", annulled: int = 0, minutes: int = 0,
           product: int = RESERVATION) -> TapRecord:
    return tap(tap_id, gate=gate, site=7, cred=cred, product=product, persons=persons, annulled=annulled,
               at=T + minutes * MINUTE)


@pytest.mark.parametrize("taps, expected", [
    pytest.param([museum("a", "e1", 1), museum("b", "e2", 1, minutes=3)], [("double_use", ("a", "b"))],
                 id="party-1-at-two-offline-gates"),
    pytest.param([museum("a", "e1", 2, cred="p3"), museum("b", "e2", 2, cred="p3", minutes=1)],
                 [("double_use", ("a", "b"))], id="party-3-as-2+2"),
    pytest.param([museum("a", "e1", 2, cred="p3"), museum("b", "e2", 1, cred="p3", minutes=1)], [],
                 id="party-3-as-2+1-is-fine"),
    pytest.param([museum("a", "e1", 3, cred="p3", annulled=1), museum("b", "e2", 1, cred="p3")], [],
                 id="annulled-persons-are-given-back"),
    pytest.param([museum("a", "e1", 1), museum("b", "e2", 1, annulled=1, minutes=2)], [],
                 id="an-annulled-entry-does-not-count"),
    pytest.param([museum("a", "e1", 1), museum("a", "e1", 1)], [], id="the-same-tap-twice-counts-once"),
    pytest.param([museum("a", "e1", 1, product=GROUP), museum("b", "e2", 1, product=GROUP)],
                 [("double_use", ("a", "b"))], id="group-tickets-too"),
    pytest.param([museum("a", "e1", 1, product=ANNUAL), museum("b", "e2", 1, product=ANNUAL, minutes=40)], [],
                 id="annual-passes-are-not-single-use"),
    pytest.param([museum("a", "e1", 1), deny("b", "already_used", gate="e1", site=7, product=RESERVATION)], [],
                 id="a-refused-second-use-is-not-a-use"),
])
def test_double_use(taps: list[TapRecord], expected: list[tuple[str, tuple[str, ...]]]) -> None:
    assert kinds(taps) == expected


def test_double_use_names_both_gates_and_the_count() -> None:
    [incident] = find_incidents([museum("b", "e2", 1, minutes=3), museum("a", "e1", 1)], party_of)
    assert (incident.kind, incident.credential_id, incident.gate_ids, incident.sites) == (
        "double_use", hexid("c1"), ("e1", "e2"), (7,))
    assert (incident.first_at, incident.last_at) == (T, T + 3 * MINUTE)
    assert incident.detail == ("2 persons admitted on a party of 1: 1 at e1 + 1 at e2; lanes of one site 180 s "
                               "apart: a lane that could not hear its siblings (cut off from them, or lanes that do "
                               "not share)")


def test_a_double_use_inside_the_lanes_sharing_window_is_a_race() -> None:
    [incident] = find_incidents([museum("a", "e1", 1), tap("b", gate="e2", site=7, cred="c1", product=RESERVATION,
                                                           persons=1, at=T + 1)], party_of)
    assert incident.kind == "double_use" and incident.detail.endswith(
        "lanes of one site 1 s apart: lanes racing inside their sharing window")
    other_sites = find_incidents([museum("a", "e1", 1), tap("b", gate="e9", site=8, cred="c1", product=RESERVATION,
                                                             persons=1, at=T + 1)], party_of)
    assert "lanes of one site" not in other_sites[0].detail


@pytest.mark.parametrize("grants, expected", [
    ([(1, 0), (1, 0)], True), ([(2, 0), (2, 0)], True), ([(3, 0), (1, 0)], True), ([(3, 1), (1, 0)], False),
    ([(3, 0)], False),
])
def test_an_unknown_party_is_inferred_from_the_largest_single_grant(grants: list[tuple[int, int]],
                                                                     expected: bool) -> None:
    """A gate's first admission grants the whole party, so the largest grant is the party size."""
    taps = [museum(f"t{i}", f"e{i}", n, cred="zz", annulled=a, minutes=i) for i, (n, a) in enumerate(grants)]
    found = find_incidents(taps, lambda _: None)
    assert bool(found) is expected
    assert all("inferred" in i.detail for i in found)


def test_a_nonsense_party_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="party size"):
        find_incidents([museum("a", "e1", 1)], lambda _: 0)


# -- anti-passback ------------------------------------------------------------------------------------
def test_soft_passback_is_reported_with_the_entry_it_repeats() -> None:
    taps = [tap("first", gate="g1"), tap("again", gate="g2", at=T + 5 * MINUTE, flags=("passback",))]
    [incident] = find_incidents(taps, party_of)
    assert (incident.kind, incident.tap_ids, incident.gate_ids) == (
        "passback_flagged", ("first", "again"), ("g1", "g2"))
    assert "previous entry at g1, 300 s before" in incident.detail


@pytest.mark.parametrize("gap_minutes, incidents", [(10, 1), (59, 1), (61, 2)])
def test_hard_passback_denials_close_together_are_one_incident(gap_minutes: int, incidents: int) -> None:
    taps = [tap("in", at=T), deny("d1", "passback", at=T + MINUTE),
            deny("d2", "passback", at=T + MINUTE + gap_minutes * MINUTE)]
    found = find_incidents(taps, party_of)
    assert [i.kind for i in found] == ["passback_denied"] * incidents
    assert found[0].tap_ids[0] == "in"  # the entry the pass was handed back after
    assert "may be shared" in found[0].detail


def test_an_entry_older_than_any_passback_window_is_not_shown_as_context() -> None:
    taps = [tap("yesterday", at=T - 25 * 60 * MINUTE), deny("d1", "passback", at=T)]
    assert kinds(taps) == [("passback_denied", ("d1",))]


# -- refused codes and clock trouble -----------------------------------------------------------------
@pytest.mark.parametrize("reason, kind", [
    ("unknown_key", "forged_code"), ("bad_signature", "forged_code"), ("bad_holder_signature", "forged_code"),
    ("key_out_of_scope", "forged_code"), ("replayed_presentation", "replayed_code"),
    ("presentation_expired", "replayed_code"), ("revoked", "revoked_presented"),
    ("holder_revoked", "revoked_presented"),
])
def test_refused_codes_are_reported_by_kind(reason: str, kind: str) -> None:
    [incident] = find_incidents([deny("x", reason, gate="g9", site=4)], party_of)
    assert (incident.kind, incident.tap_ids, incident.gate_ids, incident.sites) == (kind, ("x",), ("g9",), (4,))
    assert reason in incident.detail


@pytest.mark.parametrize("reason", ["expired", "wrong_site", "site_full", "already_tapped_in"])
def test_ordinary_refusals_are_not_incidents(reason: str) -> None:
    assert kinds([deny("x", reason)]) == []


def test_repeated_attempts_with_one_credential_group_across_gates() -> None:
    taps = [deny("x1", "revoked", gate="g1"), deny("x2", "holder_revoked", gate="g2", at=T + 20 * MINUTE),
            deny("y", "revoked", cred="c2", at=T + 5 * MINUTE)]
    found = find_incidents(taps, party_of)
    assert [(i.credential_id, i.tap_ids, i.gate_ids) for i in found] == [
        (hexid("c1"), ("x1", "x2"), ("g1", "g2")), (hexid("c2"), ("y",), ("g1",))]


def test_unreadable_forgeries_group_by_gate() -> None:
    taps = [deny("f1", "bad_signature", cred=None, gate="g1"), deny("f2", "unknown_key", cred=None, gate="g2"),
            deny("f3", "bad_signature", cred=None, gate="g1", at=T + 1)]
    assert sorted((i.tap_ids, i.credential_id) for i in find_incidents(taps, party_of)) == [
        (("f1", "f3"), None), (("f2",), None)]


def test_untrusted_clock_is_a_gate_incident() -> None:
    taps = [tap("a", gate="bus-7", flags=("clock_untrusted",)),
            deny("b", "clock_untrusted", gate="bus-7", cred="c2", flags=("clock_untrusted",)), tap("c", at=T + 1)]
    [incident] = find_incidents(taps, party_of)
    assert (incident.kind, incident.tap_ids, incident.credential_id, incident.gate_ids) == (
        "clock_untrusted", ("a", "b"), None, ("bus-7",))


# -- shared passes ------------------------------------------------------------------------------------
def at_minute(tap_id: str, minute: int, site: int, kind: str = "entry", product: int = ANNUAL,
              flags: tuple[str, ...] = ()) -> TapRecord:
    return tap(tap_id, kind=kind, site=site, gate=f"s{site}", at=T + minute * MINUTE, product=product, flags=flags)


@pytest.mark.parametrize("taps, options, expected", [
    pytest.param([at_minute("a", 0, 1), at_minute("b", 3, 2)], {}, [("shared_pass", ("a", "b"))],
                 id="annual-at-two-sites-3-minutes-apart"),
    pytest.param([at_minute("a", 0, 1), at_minute("b", 11, 2)], {}, [], id="11-minutes-is-time-to-travel"),
    pytest.param([at_minute("a", 0, 1), at_minute("b", 11, 2)], {"shared_pass_window_s": 900},
                 [("shared_pass", ("a", "b"))], id="the-window-is-configurable"),
    pytest.param([at_minute("a", 0, 1), at_minute("b", 10, 2)], {}, [], id="exactly-the-window-is-fine"),
    pytest.param([at_minute("a", 0, 1), at_minute("b", 3, 1)], {}, [], id="same-site-is-not-travel"),
    pytest.param([at_minute("a", 0, 1), at_minute("b", 2, 2), at_minute("c", 4, 1)], {},
                 [("shared_pass", ("a", "b", "c"))], id="a-chain-is-one-incident"),
    pytest.param([at_minute("a", 0, 1), at_minute("x", 1, 1, "exit"), at_minute("b", 3, 2)], {}, [],
                 id="leaving-the-first-site-explains-the-move"),
    pytest.param([at_minute("a", 0, 5, "tap_in", TRANSIT), at_minute("b", 3, 6, "tap_in", TRANSIT)], {},
                 [("shared_pass", ("a", "b"))], id="two-metro-tap-ins-3-minutes-apart"),
    pytest.param([at_minute("a", 0, 5, "tap_in", TRANSIT), at_minute("o", 8, 6, "tap_out", TRANSIT),
                  at_minute("b", 9, 6, "tap_in", TRANSIT)], {}, [], id="a-metro-ride-explains-the-move"),
    pytest.param([at_minute("a", 0, 30, "tap", TRANSIT), at_minute("b", 3, 5, "tap_in", TRANSIT)], {}, [],
                 id="bus-readers-have-no-fixed-place"),
    pytest.param([at_minute("a", 0, 1, flags=("clock_untrusted",)), at_minute("b", 3, 2)], {},
                 [("clock_untrusted", ("a",))], id="untrusted-times-do-not-place-the-pass"),
    pytest.param([at_minute("a", 0, 1, product=RESERVATION), at_minute("b", 3, 2, product=RESERVATION)], {},
                 [("double_use", ("a", "b"))], id="only-annual-and-transit-passes-can-be-shared"),
])
def test_shared_pass(taps: list[TapRecord], options: dict[str, int],
                     expected: list[tuple[str, tuple[str, ...]]]) -> None:
    assert kinds(taps, **options) == expected


def test_a_shared_pass_names_sites_gates_and_gap() -> None:
    [incident] = find_incidents([at_minute("b", 3, 2), at_minute("a", 0, 1)], party_of)
    assert (incident.credential_id, incident.sites, incident.gate_ids) == (hexid("c1"), (1, 2), ("s1", "s2"))
    assert "as little as 180 s apart" in incident.detail


# -- ids and order ------------------------------------------------------------------------------------
def test_incident_ids_are_stable_and_depend_on_kind_and_taps() -> None:
    one = Incident("double_use", None, ("a", "b"), ("g",), (1,), 0, 1, "x")
    assert one.incident_id == Incident("double_use", "c", ("b", "a"), (), (), 5, 9, "y").incident_id
    assert one.incident_id != Incident("double_use", None, ("a", "c"), ("g",), (1,), 0, 1, "x").incident_id
    assert one.incident_id != Incident("shared_pass", None, ("a", "b"), ("g",), (1,), 0, 1, "x").incident_id
    assert one.incident_id.startswith("double_use-") and one.to_dict()["incident_id"] == one.incident_id


def test_incidents_come_sorted_by_first_time_and_reruns_give_the_same_ids() -> None:
    taps = [deny("late", "revoked", at=T + 2 * 3600), museum("m1", "e1", 1), museum("m2", "e2", 1, minutes=1),
            deny("early", "bad_signature", cred="c9", at=T - 3600)]
    found = find_incidents(taps, party_of)
    assert [i.kind for i in found] == ["forged_code", "double_use", "revoked_presented"]
    assert [i.incident_id for i in find_incidents(reversed(taps), party_of)] == [i.incident_id for i in found]


def test_negative_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="windows"):
        find_incidents([], party_of, shared_pass_window_s=-1)
