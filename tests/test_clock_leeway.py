"""Clocks that disagree: a gate behind the issuer admits what was issued a moment ago, visibly, within a leeway.

Real parts: an issuer that mints codes and rotates keys, its signed snapshot installed in a real SQLite ledger,
the gate's decision core with the policy its config builds. The issuer's clock reads ``T``; the gate's reads
``T - behind``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.credential import Mode, SigningKey, present
from citypass.credential.reasons import Reason
from citypass.gate.config import PolicyConfig
from citypass.gate.decision import Decision, GateContext, decide
from citypass.gate.ledger import GateLedger
from citypass.gate.policy import GatePolicy
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

T = 1_800_000_000
SITES = [("west-lake", "scenic"), ("station", "metro")]


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    iss = Issuer.init(IssuerHome(tmp_path / "issuer"), SITES, now=T - 86_400)
    yield iss
    iss.close()


def _gate(issuer: Issuer, tmp_path: Path, snapshot_at: int) -> GateLedger:
    ledger = GateLedger.open(tmp_path / "gate.sqlite3", root=issuer.root_key().public)
    ledger.load_snapshot(issuer.export(snapshot_at))
    return ledger


def _decide(ledger: GateLedger, site: str, text: str, now: int, policy: GatePolicy | None = None) -> Decision:
    settings = ledger.site(site)
    assert settings is not None
    return decide(text, ledger, GateContext("gate-1", settings), now, policy or PolicyConfig().to_policy())


@pytest.mark.parametrize("behind", [3, 59])
def test_a_pass_minted_a_moment_ago_is_admitted_and_flagged_by_a_gate_behind(issuer: Issuer, tmp_path: Path,
                                                                             behind: int) -> None:
    code = issuer.mint_annual(["west-lake"], now=T)  # valid from T, the issuer's now
    with _gate(issuer, tmp_path, T - 3600) as ledger:
        decision = _decide(ledger, "west-lake", code, T - behind)
        assert decision.allowed, decision.verdict.detail
        assert Reason.CLOCK_LEEWAY in decision.flags
        # the same pass a little later, once the gate's clock has passed its start, needs no leeway
        later = _decide(ledger, "west-lake", issuer.mint_annual(["west-lake"], now=T), T + 1)
        assert later.allowed and Reason.CLOCK_LEEWAY not in later.flags


def test_ten_minutes_behind_is_past_the_leeway(issuer: Issuer, tmp_path: Path) -> None:
    code = issuer.mint_annual(["west-lake"], now=T)
    with _gate(issuer, tmp_path, T - 3600) as ledger:
        decision = _decide(ledger, "west-lake", code, T - 600)
        assert not decision.allowed and decision.reason is Reason.NOT_YET_VALID


def test_without_leeway_three_seconds_behind_refuses_a_fresh_pass(issuer: Issuer, tmp_path: Path) -> None:
    """What happened before the leeway (and what a site that sets validity_leeway_s = 0 chooses)."""
    code = issuer.mint_annual(["west-lake"], now=T)
    strict = PolicyConfig(validity_leeway_s=0).to_policy()
    with _gate(issuer, tmp_path, T - 3600) as ledger:
        assert _decide(ledger, "west-lake", code, T - 3, strict).reason is Reason.NOT_YET_VALID


@pytest.mark.parametrize(("behind", "allowed"), [(3, True), (59, True), (600, False)])
def test_a_key_rotated_in_a_moment_ago(issuer: Issuer, tmp_path: Path, behind: int, allowed: bool) -> None:
    issuer.rotate(now=T)  # the new issuer key is valid from T
    code = issuer.mint_annual(["west-lake"], now=T, valid_from=T - 3600)  # only the key's start is at issue
    # a snapshot stamped before the rotation keeps the clock floor below the gate's clock: only the leeway decides
    with _gate(issuer, tmp_path, T - 3600) as ledger:
        decision = _decide(ledger, "west-lake", code, T - behind)
        assert decision.allowed is allowed, decision
        if allowed:
            assert decision.flags == (Reason.CLOCK_LEEWAY,)
        else:
            assert decision.reason is Reason.KEY_NOT_YET_VALID


def test_a_gate_within_the_skew_of_a_fresh_snapshot_keeps_its_clock(issuer: Issuer, tmp_path: Path) -> None:
    """A signed snapshot (or delta) issued at the issuer's ``T`` raises the floor to ``T``; a gate 3 s behind is
    within the freshness skew of it and still decides on its own clock, live codes included."""
    phone = SigningKey.generate()
    transit = issuer.mint_transit("13800000000", Mode.METRO, now=T - 3600, holder=phone.public)
    with _gate(issuer, tmp_path, T) as ledger:
        decision = _decide(ledger, "station", present(transit, phone, T - 3), T - 3)
        assert decision.allowed and decision.flags == () and decision.effective_now == T - 3
        far = _decide(ledger, "station", present(transit, phone, T - 30), T - 30)  # 30 s behind the floor
        assert far.reason is Reason.CLOCK_UNTRUSTED  # live codes cannot be judged on that clock


def test_dynamic_freshness_keeps_its_own_tighter_skew(issuer: Issuer, tmp_path: Path) -> None:
    phone = SigningKey.generate()
    transit = issuer.mint_transit("13800000000", Mode.METRO, now=T - 3600, holder=phone.public)
    with _gate(issuer, tmp_path, T - 3600) as ledger:
        ok = _decide(ledger, "station", present(transit, phone, T), T - 3)
        assert ok.allowed and Reason.CLOCK_LEEWAY not in ok.flags
        # 59 s behind: within the validity leeway, but a live code from 59 s in the gate's future is not fresh
        late = _decide(ledger, "station", present(transit, phone, T + 1), T - 59)
        assert late.reason is Reason.PRESENTATION_FROM_FUTURE


def test_a_signed_time_raises_the_floor_and_the_gate_judges_at_it(issuer: Issuer, tmp_path: Path) -> None:
    """A gate 10 minutes behind that has heard the issuer's tick (sync raises the floor to the tick's time less
    the alarm tolerance) judges static codes at that floor, flagged, instead of refusing them."""
    code = issuer.mint_annual(["west-lake"], now=T)
    with _gate(issuer, tmp_path, T - 3600) as ledger:
        assert ledger.raise_clock_floor(T - 10)
        assert not ledger.raise_clock_floor(T - 20)  # never lowered
        assert ledger.clock_floor == T - 10
        decision = _decide(ledger, "west-lake", code, T - 600)
        assert decision.allowed, decision.verdict.detail
        assert set(decision.flags) == {Reason.CLOCK_UNTRUSTED, Reason.CLOCK_LEEWAY}
        assert decision.effective_now == T - 10
