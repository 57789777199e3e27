"""The lanes of one site as one gate, at the ledger: what one lane shares, another applies and decides on.

Two real SQLite ledgers with the issuer's signed snapshot, the decision core deciding real codes; what MQTT
carries in between is tested in tests/test_site_lanes.py. ``share(a, b)`` moves lane a's new events to b.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.credential import Mode, SigningKey, SiteKind, SiteSettings, parse, present
from citypass.credential.reasons import Reason
from citypass.gate.decision import Decision, GateContext, decide
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.siblings import Applied, SiteLedger
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

NOW = 1_800_000_000
MS = NOW * 1000


class Lane:
    def __init__(self, path: Path, issuer: Issuer, gate: str, site: str,
                 direction: Direction = Direction.ENTRY) -> None:
        self.ledger = GateLedger.open(path, root=issuer.root_key().public)
        self.ledger.load_snapshot(issuer.export(NOW - 60))
        settings = self.ledger.site(site)
        assert settings is not None
        self.ledger.set_identity(gate, settings.number, direction)
        self.ctx = GateContext(gate, settings, direction)
        self.site = SiteLedger(self.ledger)

    def show(self, code: str, now: int = NOW) -> Decision:
        decision = decide(code, self.ledger, self.ctx, now)
        self.ledger.record(decision, self.ctx, {"decided": float(now)})
        return decision


def share(a: Lane, b: Lane, now_ms: int = MS) -> Applied:
    events, upto = a.site.own_events(a.site.shared_seq(), 500)
    applied = b.site.apply(a.ctx.gate_id, a.ctx.site.number, events, now_ms,
                           passback_s=b.ctx.site.passback_minutes * 60 if b.ctx.site.passback_hard else None)
    a.site.set_shared(upto)
    return applied


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    iss = Issuer.init(IssuerHome(tmp_path / "issuer"), [("west-lake", "scenic"), ("museum", "museum"),
                                                        ("station", "metro")], now=NOW - 86_400)
    iss.add_site(SiteSettings(number=iss.store.next_site_number(), name="small-hall", kind=SiteKind.MUSEUM,
                              capacity=1))
    yield iss
    iss.close()


def lanes(tmp_path: Path, issuer: Issuer, site: str, n: int = 2,
          directions: tuple[Direction, ...] = ()) -> list[Lane]:
    return [Lane(tmp_path / f"lane{i}.sqlite3", issuer, f"lane-{i}", site,
                 directions[i - 1] if directions else Direction.ENTRY) for i in range(1, n + 1)]


def test_a_screenshot_of_a_used_reservation_is_refused_at_the_next_lane(issuer: Issuer, tmp_path: Path) -> None:
    one, two = lanes(tmp_path, issuer, "museum")
    code = issuer.mint_reservation("museum", NOW - 600, NOW + 3600, 1, NOW - 700)
    assert one.show(code).allowed
    backlog = two.ledger.backlog()
    applied = share(one, two)
    assert (applied.taps, applied.duplicates, applied.races) == (1, 0, ())
    denied = two.show(code, NOW + 5)
    assert denied.reason is Reason.ALREADY_USED
    assert two.ledger.backlog() == backlog + 1  # its own denial only: the sibling's tap is not re-uploaded
    assert share(one, two).taps == 0  # nothing new
    again = one.site.own_events(0, 500)[0]
    assert two.site.apply("lane-1", one.ctx.site.number, again, MS).duplicates == 1  # idempotent by tap id


def test_a_party_of_three_split_over_two_lanes(issuer: Issuer, tmp_path: Path) -> None:
    """Two walk through lane 1 (the third turns back: annulled), then two try lane 2: one admitted, one refused."""
    one, two = lanes(tmp_path, issuer, "museum")
    group = issuer.mint_reservation("museum", NOW - 600, NOW + 3600, 3, NOW - 700)
    first = one.show(group)
    assert first.persons == 3
    tap_id = one.ledger.pending(10)[-1].tap_id
    one.ledger.annul(tap_id, 1, NOW + 10)
    applied = share(one, two)
    assert (applied.taps, applied.annulled) == (1, 1)
    cred = parse(group).credential.id
    assert two.ledger.usage(cred, two.ctx.site.number).persons_used == 2
    third = two.show(group, NOW + 20)
    assert third.allowed and third.persons == 1
    assert two.show(group, NOW + 21).reason is Reason.ALREADY_USED
    # and lane 1 learns of lane 2's admission: the ticket is used up everywhere
    share(two, one)
    assert one.show(group, NOW + 30).reason is Reason.ALREADY_USED


def test_anti_passback_spans_the_lanes(issuer: Issuer, tmp_path: Path) -> None:
    one, two = lanes(tmp_path, issuer, "west-lake")
    annual = issuer.mint_annual(["west-lake"], now=NOW - 3600)
    assert one.show(annual).allowed
    share(one, two)
    assert two.show(annual, NOW + 60).reason is Reason.PASSBACK
    assert two.show(annual, NOW + 31 * 60).allowed  # after the window


def test_a_visit_given_back_at_one_lane_is_given_back_at_all(issuer: Issuer, tmp_path: Path) -> None:
    one, two = lanes(tmp_path, issuer, "west-lake")
    annual = issuer.mint_annual(["west-lake"], now=NOW - 3600)
    assert one.show(annual).allowed
    share(one, two)
    one.ledger.annul(one.ledger.pending(10)[-1].tap_id, 1, NOW + 5)  # nobody passed: no visit happened
    share(one, two)
    assert two.show(annual, NOW + 60).allowed
    assert two.ledger.occupancy(two.ctx.site.number) == 1


def test_capacity_counts_the_whole_site(issuer: Issuer, tmp_path: Path) -> None:
    one, two = lanes(tmp_path, issuer, "small-hall")
    first = issuer.mint_reservation("small-hall", NOW - 600, NOW + 3600, 1, NOW - 700)
    second = issuer.mint_reservation("small-hall", NOW - 600, NOW + 3600, 1, NOW - 700)
    assert one.show(first).allowed
    share(one, two)
    assert two.ledger.occupancy(two.ctx.site.number) == 1
    assert two.show(second).reason is Reason.SITE_FULL


def test_metro_tap_in_state_is_the_stations(issuer: Issuer, tmp_path: Path) -> None:
    entry, other, exit_ = lanes(tmp_path, issuer, "station", 3, (Direction.ENTRY, Direction.ENTRY, Direction.EXIT))
    phone = SigningKey.generate()
    transit = issuer.mint_transit("13800000001", Mode.METRO, now=NOW - 3600, holder=phone.public)
    shown = present(transit, phone, NOW)
    assert entry.show(shown).kind is not None
    for sibling in (other, exit_):
        share_all = entry.site.own_events(0, 500)[0]
        sibling.site.apply("lane-1", entry.ctx.site.number, share_all, MS)
    # the same live code shown at the next lane is a replay; a fresh one is a second tap-in
    assert other.show(shown, NOW + 2).reason is Reason.REPLAYED_PRESENTATION
    assert other.show(present(transit, phone, NOW + 3), NOW + 3).reason is Reason.ALREADY_TAPPED_IN
    out = exit_.show(present(transit, phone, NOW + 600), NOW + 600)
    assert out.allowed and Reason.NOT_TAPPED_IN not in out.flags  # the exit gate knew of the tap-in
    other.site.apply("lane-3", exit_.ctx.site.number, exit_.site.own_events(0, 500)[0], MS + 600_000)
    assert other.show(present(transit, phone, NOW + 900), NOW + 900).allowed  # the journey is closed


def test_a_race_is_found_at_both_lanes(issuer: Issuer, tmp_path: Path) -> None:
    """Both lanes admit the same single-use reservation before either heard of the other."""
    one, two = lanes(tmp_path, issuer, "museum")
    code = issuer.mint_reservation("museum", NOW - 600, NOW + 3600, 2, NOW - 700)
    assert one.show(code).persons == 2 and two.show(code, NOW + 1).persons == 2
    at_two, at_one = share(one, two, MS + 2000), share(two, one, MS + 2000)
    for applied, sibling in ((at_two, "lane-1"), (at_one, "lane-2")):
        assert len(applied.races) == 1
        race = applied.races[0]
        assert (race.kind, race.gate_id, race.apart_s) == ("double_use", sibling, 1)
    assert [r.sibling_tap_id for r in one.site.races()] == [at_one.races[0].sibling_tap_id]
    # an annual pass admitted at both lanes of a hard anti-passback site inside its window
    annual = issuer.mint_annual(["museum"], now=NOW - 3600)
    assert one.show(annual, NOW + 100).allowed and two.show(annual, NOW + 101).allowed
    assert [r.kind for r in share(one, two, MS + 200_000).races] == ["passback"]


def test_a_sibling_clock_ahead_cannot_hold_a_pass_here(issuer: Issuer, tmp_path: Path) -> None:
    one, two = lanes(tmp_path, issuer, "west-lake")
    annual = issuer.mint_annual(["west-lake"], now=NOW - 3600)
    assert one.show(annual, NOW + 3600).allowed  # lane 1's clock is an hour ahead
    share(one, two, now_ms=MS)  # arrives at lane 2 at NOW: its time is clamped to NOW
    assert two.show(annual, NOW + 60).reason is Reason.PASSBACK
    assert two.show(annual, NOW + 31 * 60).allowed  # not held until an hour and a half from now
    assert two.ledger.clock_floor < NOW + 3600  # nor does it move this lane's clock floor


def test_a_sibling_can_annul_only_its_own_taps(issuer: Issuer, tmp_path: Path) -> None:
    one, two, three = lanes(tmp_path, issuer, "museum", 3)
    code = issuer.mint_reservation("museum", NOW - 600, NOW + 3600, 2, NOW - 700)
    assert one.show(code).allowed
    share(one, three)
    shared = one.site.own_events(0, 500)[0]
    one.ledger.annul(one.ledger.pending(10)[-1].tap_id, 2, NOW + 5)
    annul = [e for e in one.site.own_events(shared[-1].seq, 500)[0] if e.event == "annul"]
    assert three.site.apply("lane-2", two.ctx.site.number, annul, MS).annulled == 0  # lane 2 names lane 1's tap
    assert three.site.apply("lane-1", one.ctx.site.number, annul, MS).annulled == 1


def test_old_sibling_taps_are_forgotten_but_their_effect_stays(issuer: Issuer, tmp_path: Path) -> None:
    one, two = lanes(tmp_path, issuer, "museum")
    code = issuer.mint_reservation("museum", NOW - 600, NOW + 3600, 1, NOW - 700)
    assert one.show(code).allowed
    share(one, two)
    assert two.site.prune(NOW) == 0 and len(two.site.sibling_tap_ids()) == 1  # decided at NOW: not before it
    assert two.site.prune(NOW + 1) == 1 and two.site.sibling_tap_ids() == set()
    assert two.show(code, NOW + 5).reason is Reason.ALREADY_USED  # the ticket stays used
