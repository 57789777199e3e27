"""The event check-in product: one code (a badge), checked in once at each of its sessions, each session a site
with its own capacity and hours; issued over the API and decided by a real gate ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.credential.claims import Credential, Event
from citypass.credential.codes import parse
from citypass.credential.reasons import Reason
from citypass.gate.decision import GateContext, decide
from citypass.gate.ledger import GateLedger
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.codes import NOW, World
from tests.helpers.decisions import at, ledger_for


def test_one_badge_checks_in_once_per_session() -> None:
    w = World()
    badge = w.code(Event(frozenset({20, 2})))
    assert Credential.from_claims(parse(badge).credential.to_claims()).terms == Event(frozenset({20, 2}))
    ledger = ledger_for(w)
    assert at(ledger, w, "museum", badge).allowed
    assert at(ledger, w, "museum", badge, NOW + 3600).reason == Reason.ALREADY_USED  # that session: done
    assert at(ledger, w, "scenic2", badge, NOW + 60).allowed  # another session of the badge
    assert at(ledger, w, "scenic", badge, NOW + 90).reason == Reason.WRONG_SITE  # not one of its sessions


def test_a_session_has_its_own_capacity_and_hours() -> None:
    w = World()
    full = ledger_for(w, capacity=1)
    assert at(full, w, "museum", w.code(Event(frozenset({20})))).allowed
    assert at(full, w, "museum", w.code(Event(frozenset({20}))), NOW + 5).reason == Reason.SITE_FULL
    closed = ledger_for(w, opens="09:00", closes="10:00")  # NOW is 16:00 local
    assert at(closed, w, "museum", w.code(Event(frozenset({20})))).reason == Reason.SITE_CLOSED


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW) as s:
        yield s


def test_badges_are_issued_over_the_api_and_decided_by_a_gate_ledger(served: ServedIssuer, tmp_path: Path) -> None:
    with served.client("issuer") as issuer:
        made = issuer.post("/v1/passes", json={"product": "event", "sessions": ["zhejiang-museum", "lingyin"]})
    assert made.status_code == 201, made.text
    assert made.json()["product"] == "event"
    badge = made.json()["code"]
    ledger = GateLedger.open(tmp_path / "gate.sqlite3", root=served.issuer.root_key().public)
    ledger.load_snapshot(served.issuer.export(NOW))
    results = []
    for site, t in (("zhejiang-museum", NOW + 10), ("zhejiang-museum", NOW + 20), ("lingyin", NOW + 30)):
        settings = ledger.site(site)
        assert settings is not None
        ctx = GateContext("session-gate", settings)
        decision = decide(badge, ledger, ctx, t)
        ledger.record(decision, ctx)
        results.append(decision.reason)
    ledger.close()
    assert results == [None, Reason.ALREADY_USED, None]
