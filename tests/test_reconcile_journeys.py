"""Journeys and fares: pairing across stations and midnight, incomplete and in-progress rides, fare tables."""

from __future__ import annotations

from typing import Any

import pytest

from citypass.issuer.reconcile import FareTable, Journey, TapRecord, journeys
from tests.helpers.reconcile import MINUTE, TRANSIT, hexid, local, tap

FARES = FareTable(default_fare=300, pairs={(5, 6): 400}, zones={5: 1, 7: 3, 30: 2}, base=200, per_zone=100)
C1 = hexid("c1")


def ride(tap_id: str, kind: str, at: int, site: int = 5, cred: str = "c1", annulled: int = 0,
         flags: tuple[str, ...] = ()) -> TapRecord:
    return tap(tap_id, kind=kind, at=at, site=site, gate=f"st{site}", cred=cred, product=TRANSIT, annulled=annulled,
               flags=flags)


def run(taps: list[TapRecord], now: int = local(23, day=2), **options: int) -> list[Journey]:
    return journeys(taps, FARES, now=now, **options)


def test_a_journey_across_midnight_is_one_journey() -> None:
    taps = [ride("out", "tap_out", local(0, 20, day=1), site=6), ride("in", "tap_in", local(23, 50))]
    assert run(taps) == [Journey(C1, "in", "out", 5, 6, local(23, 50), local(0, 20, day=1), 400, True, None)]


@pytest.mark.parametrize("from_site, to_site, fare", [
    pytest.param(5, 6, 400, id="from-the-pair-table"),
    pytest.param(6, 5, 400, id="pairs-are-symmetric-when-one-direction-is-given"),
    pytest.param(5, 7, 400, id="from-zones-1-to-3"),
    pytest.param(7, 7, 200, id="zones-same-zone-is-the-base"),
    pytest.param(6, 7, 300, id="default-when-a-zone-is-unknown"),
])
def test_fares_of_a_journey_between_two_stations(from_site: int, to_site: int, fare: int) -> None:
    taps = [ride("in", "tap_in", local(9), site=from_site), ride("out", "tap_out", local(9, 25), site=to_site)]
    [journey] = run(taps)
    assert (journey.from_site, journey.to_site, journey.fare, journey.complete) == (from_site, to_site, fare, True)


def test_the_gates_not_tapped_in_flag_does_not_stop_pairing_across_stations() -> None:
    taps = [ride("in", "tap_in", local(9)), ride("out", "tap_out", local(9, 20), site=6, flags=("not_tapped_in",))]
    assert [(j.tap_in_id, j.tap_out_id, j.flag) for j in run(taps)] == [("in", "out", None)]


@pytest.mark.parametrize("taps, now, expected", [
    pytest.param([ride("in", "tap_in", local(9))], local(9, 30), [("in", None, False, None)],
                 id="in-progress-is-not-flagged"),
    pytest.param([ride("in", "tap_in", local(9))], local(13), [("in", None, False, "no_tap_out")],
                 id="exactly-the-limit-is-no-longer-in-progress"),
    pytest.param([ride("in", "tap_in", local(9))], local(12, 59), [("in", None, False, None)],
                 id="just-inside-the-limit"),
    pytest.param([ride("in1", "tap_in", local(9)), ride("in2", "tap_in", local(10), site=6)], local(10, 5),
                 [("in1", None, False, "no_tap_out"), ("in2", None, False, None)], id="a-second-tap-in"),
    pytest.param([ride("out", "tap_out", local(9), site=6)], local(10), [(None, "out", False, "no_tap_in")],
                 id="a-lone-tap-out"),
    pytest.param([ride("in", "tap_in", local(9)), ride("out", "tap_out", local(13), site=6)], local(14),
                 [("in", None, False, "no_tap_out"), (None, "out", False, "no_tap_in")],
                 id="a-tap-out-too-late-to-pair"),
    pytest.param([ride("in", "tap_in", local(9)), ride("out", "tap_out", local(12, 59), site=6)], local(14),
                 [("in", "out", True, None)], id="a-long-ride-inside-the-limit"),
    pytest.param([ride("in", "tap_in", local(9), annulled=1), ride("out", "tap_out", local(9, 20), site=6)],
                 local(14), [(None, "out", False, "no_tap_in")], id="an-annulled-tap-in-started-nothing"),
])
def test_incomplete_and_in_progress_journeys(taps: list[TapRecord], now: int,
                                             expected: list[tuple[str | None, str | None, bool, str | None]]) -> None:
    found = run(taps, now=now)
    assert [(j.tap_in_id, j.tap_out_id, j.complete, j.flag) for j in found] == expected
    assert all(j.fare is None for j in found if not j.complete)


def test_the_limit_is_configurable() -> None:
    taps = [ride("in", "tap_in", local(9)), ride("out", "tap_out", local(9, 45), site=6)]
    assert [j.flag for j in run(taps, max_journey_s=30 * MINUTE)] == ["no_tap_out", "no_tap_in"]
    with pytest.raises(ValueError, match="max_journey_s"):
        run(taps, max_journey_s=0)


def test_bus_and_water_bus_taps_are_single_tap_journeys() -> None:
    [journey] = run([ride("bus", "tap", local(8), site=30)])
    assert journey == Journey(C1, "bus", None, 30, 30, local(8), local(8), 200, True, None, single_tap=True)
    [unzoned] = run([ride("boat", "tap", local(8), site=40)])
    assert unzoned.fare == 300


def test_each_credential_is_paired_on_its_own_and_output_is_ordered() -> None:
    taps = [ride("b-out", "tap_out", local(9, 30), site=6, cred="c2"), ride("a-in", "tap_in", local(9, 10)),
            ride("b-in", "tap_in", local(9, 5), site=7, cred="c2"), ride("a-out", "tap_out", local(9, 40), site=7)]
    assert [(j.credential_id, j.tap_in_id, j.tap_out_id, j.fare) for j in run(taps)] == [
        (hexid("c2"), "b-in", "b-out", 300), (C1, "a-in", "a-out", 400)]


def test_a_day_of_rides_in_any_order_and_duplicated() -> None:
    day = [ride("1", "tap_in", local(8)), ride("2", "tap_out", local(8, 30), site=6),
           ride("3", "tap", local(12), site=30), ride("4", "tap_in", local(18), site=6),
           ride("5", "tap_out", local(18, 40), site=7)]
    expected = run(day)
    assert [j.fare for j in expected] == [400, 200, 300]
    assert run(list(reversed(day)) + day[1:3]) == expected


# -- fare tables --------------------------------------------------------------------------------------
def test_fare_table_round_trips_through_its_dict_form() -> None:
    data = {"default_fare": 300, "pairs": [[1, 2, 400], [2, 1, 450]], "zones": {"1": 1, "12": 3},
            "base": 200, "per_zone": 100}
    table = FareTable.from_dict(data)
    assert (table.fare(1, 2), table.fare(2, 1), table.fare(1, 12), table.fare(3, 4)) == (400, 450, 400, 300)
    assert table.to_dict() == data
    assert FareTable.from_dict(table.to_dict()) == table
    assert FareTable.from_dict(FARES.to_dict()) == FARES
    assert FareTable.from_dict({"default_fare": 0}) == FareTable(default_fare=0)


@pytest.mark.parametrize("data, message", [
    ({}, "needs default_fare"),
    ({"default_fare": -1}, "default_fare must be a whole, non-negative"),
    ({"default_fare": 2.5}, "default_fare must be a whole"),
    ({"default_fare": True}, "default_fare must be a whole"),
    ({"default_fare": 300, "surcharge": 5}, "unknown fare table key"),
    ({"default_fare": 300, 7: 5, "x": 1}, "unknown fare table key\\(s\\): 7, x"),
    ({"default_fare": 300, "pairs": {"1": 2}}, "pairs must be a list"),
    ({"default_fare": 300, "pairs": [[1, 2]]}, "must be \\[from_site, to_site, fare\\]"),
    ({"default_fare": 300, "pairs": [[1, "2", 400]]}, "must be \\[from_site, to_site, fare\\]"),
    ({"default_fare": 300, "pairs": [[1, 2, -400]]}, "fare 1->2 must be a whole"),
    ({"default_fare": 300, "pairs": [[-1, 2, 400]]}, "must be two site numbers"),
    ({"default_fare": 300, "pairs": [[1, 2, 400], [1, 2, 500]]}, "given twice"),
    ({"default_fare": 300, "zones": [[1, 1]]}, "zones must be an object"),
    ({"default_fare": 300, "zones": {"west": 1}}, "must be a site number"),
    ({"default_fare": 300, "zones": {"-1": 1}}, "must be a site number"),
    ({"default_fare": 300, "zones": {"1": "a"}}, "must map a site number to a zone"),
    ({"default_fare": 300, "zones": {"1": 1, 1: 2}}, "two zones"),
    ({"default_fare": 300, "per_zone": -5}, "per_zone must be"),
    ([300], "must be an object"),
])
def test_bad_fare_tables_are_refused(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FareTable.from_dict(data)


def test_journeys_serialise() -> None:
    [journey] = run([ride("in", "tap_in", local(9)), ride("out", "tap_out", local(9, 10), site=6)])
    assert journey.to_dict() == {
        "credential_id": C1, "tap_in_id": "in", "tap_out_id": "out", "from_site": 5, "to_site": 6,
        "started_at": local(9), "ended_at": local(9, 10), "fare": 400, "complete": True, "flag": None,
        "single_tap": False, "category": None,
    }


def test_concession_riders_pay_the_concession_fare() -> None:
    taps = [ride("in", "tap_in", local(9)), ride("out", "tap_out", local(9, 10), site=6)]
    categories = {C1: "student"}
    [half] = journeys(taps, FareTable(default_fare=400), now=local(12), category_of=categories.get)
    assert (half.fare, half.category) == (200, "student")
    categories[C1] = "senior"
    [free] = journeys(taps, FareTable(default_fare=400), now=local(12), category_of=categories.get)
    assert (free.fare, free.category) == (0, "senior")
    categories[C1] = "resident"
    [full] = journeys(taps, FareTable(default_fare=400), now=local(12), category_of=categories.get)
    assert (full.fare, full.category) == (400, None)
