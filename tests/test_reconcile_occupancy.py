"""Occupancy: people inside, never negative, annulments excluded, local hours and local midnight."""

from __future__ import annotations

import pytest

from citypass.issuer.reconcile import OccupancyPoint, TapRecord, local_hour_start, local_midnight, occupancy
from tests.helpers.reconcile import HOUR, MIDNIGHT, MINUTE, deny, local, tap

IST_MIDNIGHT = 1_799_951_400  # 2027-01-15 00:00 at UTC+05:30: local hours start at :30 UTC


def entry(tap_id: str, at: int, persons: int = 1, annulled: int = 0, site: int = 1) -> TapRecord:
    return tap(tap_id, at=at, persons=persons, annulled=annulled, site=site, product=4, cred=tap_id)


def exit_(tap_id: str, at: int, annulled: int = 0) -> TapRecord:
    return tap(tap_id, kind="exit", at=at, annulled=annulled, cred=tap_id)


DAY_AT_THE_SITE = [
    entry("e0", local(9, 50), persons=2),  # before the series: counts inside, not in any point
    entry("e1", local(10, 15), persons=3),
    exit_("x1", local(10, 45)),
    entry("e2", local(11, 5), persons=2, annulled=2),  # the barrier opened, nobody passed
    entry("e3", local(11, 20), persons=4, annulled=1),
    exit_("x2", local(12, 10)),
    exit_("x3", local(12, 15), annulled=1),  # an exit nobody used
    exit_("later", local(12, 40)),  # after now
    entry("elsewhere", local(10, 30), persons=9, site=2),
    deny("refused", "expired", at=local(10, 31)),
    tap("metro", kind="tap_in", at=local(10, 32), product=3),
]


def test_inside_entries_today_and_hourly_series() -> None:
    occ = occupancy(DAY_AT_THE_SITE, site=1, now=local(12, 30), hours=3)
    assert (occ.site, occ.at, occ.inside, occ.entries_today) == (1, local(12, 30), 6, 8)
    assert occ.series == (
        OccupancyPoint(local(10), entries=3, exits=1, inside_at_end=4),
        OccupancyPoint(local(11), entries=3, exits=0, inside_at_end=7),
        OccupancyPoint(local(12), entries=0, exits=1, inside_at_end=6),
    )
    assert occ.to_dict()["series"][0] == {"hour_start": local(10), "entries": 3, "exits": 1, "inside_at_end": 4}


def test_duplicates_and_arrival_order_do_not_change_occupancy() -> None:
    once = occupancy(DAY_AT_THE_SITE, site=1, now=local(12, 30), hours=3)
    assert occupancy(list(reversed(DAY_AT_THE_SITE)) * 3, site=1, now=local(12, 30), hours=3) == once


@pytest.mark.parametrize("taps, inside", [
    pytest.param([exit_("x1", local(9)), exit_("x2", local(9, 5))], 0, id="exits-alone-are-zero"),
    pytest.param([exit_("x1", local(9)), exit_("x2", local(9, 5)), entry("e", local(9, 10), 2)], 2,
                 id="earlier-unmatched-exits-do-not-cancel-later-entries"),
    pytest.param([entry("e", local(9), 1), exit_("x1", local(9, 5)), exit_("x2", local(9, 6)),
                  exit_("x3", local(9, 7))], 0, id="more-exits-than-entries"),
    pytest.param([entry("e", local(9), 3, annulled=3)], 0, id="fully-annulled-entry"),
    pytest.param([entry("e", local(9), 3, annulled=1)], 2, id="partly-annulled-entry"),
])
def test_inside_is_never_negative(taps: list[TapRecord], inside: int) -> None:
    occ = occupancy(taps, site=1, now=local(12))
    assert occ.inside == inside
    assert all(p.inside_at_end >= 0 for p in occ.series)


@pytest.mark.parametrize("now, entries_today, inside", [
    (local(23, 55), 2, 2),  # the evening's visitors count today
    (local(0, 30, day=1), 1, 3),  # after local midnight only the new day's entries; people inside stay
])
def test_entries_today_reset_at_local_midnight(now: int, entries_today: int, inside: int) -> None:
    taps = [entry("late", local(23, 50), persons=2), entry("early", local(0, 10, day=1))]
    occ = occupancy(taps, site=1, now=now)
    assert (occ.entries_today, occ.inside) == (entries_today, inside)


def test_hour_boundaries_follow_local_time_not_utc() -> None:
    taps = [entry("before", IST_MIDNIGHT - 10 * MINUTE), entry("a", IST_MIDNIGHT + 5 * MINUTE),
            entry("b", IST_MIDNIGHT + 35 * MINUTE), entry("c", IST_MIDNIGHT + 65 * MINUTE)]
    occ = occupancy(taps, site=1, now=IST_MIDNIGHT + 70 * MINUTE, hours=2, utc_offset_minutes=330)
    assert [(p.hour_start, p.entries) for p in occ.series] == [(IST_MIDNIGHT, 2), (IST_MIDNIGHT + HOUR, 1)]
    assert (occ.entries_today, occ.inside) == (3, 4)


def test_the_series_has_one_point_per_hour_ending_now() -> None:
    occ = occupancy([entry("e", local(3))], site=1, now=local(12, 59))
    assert len(occ.series) == 24
    assert [p.hour_start for p in occ.series] == [local(12) - HOUR * i for i in range(23, -1, -1)]
    assert occ.series[-1].inside_at_end == occ.inside == 1
    assert [p.entries for p in occ.series].index(1) == 14  # the series starts 13:00 yesterday; 03:00 is 14 later


@pytest.mark.parametrize("at, offset, hour, midnight", [
    (local(10, 15), 480, local(10), MIDNIGHT),
    (IST_MIDNIGHT + 95 * MINUTE, 330, IST_MIDNIGHT + HOUR, IST_MIDNIGHT),
    (MIDNIGHT - 1, 480, MIDNIGHT - HOUR, MIDNIGHT - 24 * HOUR),
])
def test_local_boundaries(at: int, offset: int, hour: int, midnight: int) -> None:
    assert (local_hour_start(at, offset), local_midnight(at, offset)) == (hour, midnight)


@pytest.mark.parametrize("options", [{"hours": 0}, {"hours": 745}, {"utc_offset_minutes": 900}])
def test_bad_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        occupancy([], site=1, now=local(12), **options)
