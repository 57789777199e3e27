"""The benefit card (惠民卡): its claims, and its quota across two real gates and the served issuer — online (the
centre's count reaches gates in signed deltas), offline (each gate's stated bound), bookings, incidents."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from citypass.credential import qr as qrmod
from citypass.credential.benefit import OFFLINE_AFTER_S, OFFLINE_ALLOWANCE, period_end, period_start, used_mark
from citypass.credential.claims import Benefit, Category, Credential, HolderKey, Period
from citypass.credential.codes import issue, parse, present
from citypass.credential.cose import FormatError, decode_cbor, encode_cbor
from citypass.credential.delta import load_delta
from citypass.credential.keys import SigningKey
from citypass.credential.reasons import Reason
from citypass.gate.check import decision_fields
from citypass.gate.decision import Decision, decide
from citypass.gate.ledger import GateLedger
from citypass.gate.screen.texts import ScreenTexts
from citypass.issuer import benefits
from citypass.issuer.deltas import build_delta
from citypass.issuer.ingest import ingest
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.codes import NOW, World

MUSEUM, LINGYIN = 3, 2  # site numbers of the served issuer's zhejiang-museum and lingyin


def test_benefit_claims_round_trip_and_stay_small() -> None:
    world = World()
    terms = Benefit(frozenset({2, 3, 20}), 4, Period.MONTH, Category.SENIOR)
    cred = Credential(os.urandom(8), terms, NOW, NOW + 365 * 86_400, HolderKey(world.holder.public))
    assert Credential.from_claims(decode_cbor(encode_cbor(cred.to_claims()))) == cred
    code = issue(cred, world.issuer)
    assert parse(code).credential.describe()["category"] == "senior"
    assert qrmod.version(present(code, world.holder, NOW)) <= 11
    unbound = Credential(os.urandom(8), terms, NOW, NOW + 10).to_claims()
    with pytest.raises(FormatError, match="holder-bound"):
        Credential.from_claims(unbound)
    with pytest.raises(FormatError):
        Credential.from_claims(cred.to_claims() | {-11: 9})  # unknown category


def test_a_transit_credential_may_carry_a_concession_category() -> None:
    from citypass.credential.claims import Mode, Transit

    plain = Credential(os.urandom(8), Transit("13800000000", Mode.METRO), NOW, NOW + 86_400)
    assert -11 not in plain.to_claims()  # codes without a category encode exactly as before
    senior = Credential(os.urandom(8), Transit("13800000000", Mode.METRO, Category.SENIOR), NOW, NOW + 86_400)
    assert Credential.from_claims(decode_cbor(encode_cbor(senior.to_claims()))) == senior
    assert senior.describe()["category"] == "senior"
    with pytest.raises(FormatError):
        Credential.from_claims(senior.to_claims() | {-11: 7})


def test_periods_follow_local_calendar_months_and_weeks() -> None:
    start = period_start(NOW, Period.MONTH)
    assert period_end(start, Period.MONTH) - start == 31 * 86_400  # January
    feb = period_end(start, Period.MONTH)
    assert period_end(feb, Period.MONTH) - feb == 28 * 86_400
    week = period_start(NOW, Period.WEEK)
    assert week <= NOW < week + 7 * 86_400 and period_end(week, Period.WEEK) == week + 7 * 86_400
    assert period_start(feb - 1, Period.MONTH) == start and period_start(feb, Period.MONTH) == feb


@dataclass
class Gate:
    ledger: GateLedger
    site: int

    def use(self, code: str, holder: SigningKey, at: int) -> Decision:
        """Show the card as a fresh dynamic code and record what the gate decided."""
        ctx = self.ledger.context()
        decision = decide(present(code, holder, at), self.ledger, ctx, at)
        self.ledger.record(decision, ctx, {"decided": float(at)})
        return decision

    def upload(self, served: ServedIssuer) -> None:
        """What the sync module does: the outbox to the issuer's ingest, acknowledged."""
        result = ingest(served.issuer.store, self.ledger.pending(1000), None, served.clock())
        self.ledger.mark_uploaded(result.acknowledged)

    def catch_up(self, served: ServedIssuer, at: int) -> None:
        delta = build_delta(served.issuer.store, self.ledger.seq, at)
        if delta is not None:
            verified = load_delta(delta.sign(served.issuer.ledger_key()), self.ledger.trust)
            self.ledger.apply_delta(**verified.ledger_arguments())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW) as s:
        yield s


@pytest.fixture
def gates(served: ServedIssuer, tmp_path: Path) -> Iterator[tuple[Gate, Gate]]:
    snapshot = served.issuer.export(NOW)
    made = []
    for name, site in (("museum-in", MUSEUM), ("lingyin-in", LINGYIN)):
        ledger = GateLedger.open(tmp_path / f"{name}.sqlite3", root=served.issuer.root_key().public)
        ledger.load_snapshot(snapshot)
        ledger.set_identity(name, site)
        made.append(Gate(ledger, site))
    yield made[0], made[1]
    for gate in made:
        gate.ledger.close()


def card(served: ServedIssuer, holder: SigningKey, quota: int) -> str:
    return benefits.mint(served.issuer, ["lingyin", "zhejiang-museum"], quota, holder.public, NOW - 86_400)


def test_quota_holds_across_two_gates_online(served: ServedIssuer, gates: tuple[Gate, Gate]) -> None:
    museum, lingyin = gates
    holder = SigningKey.generate()
    code = card(served, holder, quota=2)
    cid = parse(code).credential.id.hex()

    first = museum.use(code, holder, NOW + 60)
    assert first.allowed and first.benefit_left == 1, decision_fields(first)
    museum.upload(served)
    assert benefits.remaining(served.issuer.store, cid, NOW + 61)[:2] == (1, 2)  # type: ignore[index]
    assert benefits.status_text(served.issuer.store, cid, NOW + 61) == \
        ("惠民卡 · 本月剩余 1 次", "Benefit card · 1 use left this month")
    for gate in gates:
        gate.catch_up(served, NOW + 90)

    second = lingyin.use(code, holder, NOW + 120)  # the other gate knows of the first use from the delta
    assert second.allowed and second.benefit_left == 0
    fields = decision_fields(second)
    assert fields["benefit_left"] == 0
    lingyin.upload(served)
    for gate in gates:
        gate.catch_up(served, NOW + 150)
    third = museum.use(code, holder, NOW + 180)
    assert third.reason == Reason.QUOTA_EXHAUSTED
    assert lingyin.use(code, holder, NOW + 185).reason == Reason.QUOTA_EXHAUSTED
    # an online booking checks the same central count
    with pytest.raises(benefits.QuotaExhausted):
        benefits.book(served.issuer.store, code, MUSEUM, "r-1", NOW + 200)
    # next month the card starts afresh
    march = period_end(period_start(NOW, Period.MONTH), Period.MONTH) + 3600
    museum.catch_up(served, march - 60)
    assert museum.use(code, holder, march).benefit_left == 1


def test_a_booking_consumes_the_quota_online(served: ServedIssuer, gates: tuple[Gate, Gate]) -> None:
    museum, _ = gates
    holder = SigningKey.generate()
    code = card(served, holder, quota=2)
    assert benefits.book(served.issuer.store, code, MUSEUM, "slot-1", NOW) == 1
    with pytest.raises(benefits.BenefitError, match="already counted"):
        benefits.book(served.issuer.store, code, MUSEUM, "slot-1", NOW)
    with pytest.raises(benefits.BenefitError, match="not valid at site"):
        benefits.book(served.issuer.store, code, 1, "slot-2", NOW)
    museum.catch_up(served, NOW + 30)
    assert museum.ledger.is_revoked(used_mark(parse(code).credential.id, period_start(NOW, Period.MONTH), 1))
    assert museum.use(code, holder, NOW + 60).benefit_left == 0  # the booking counted; one use was left


def test_offline_gates_admit_at_most_the_stated_bound_and_overuse_is_an_incident(
        served: ServedIssuer, gates: tuple[Gate, Gate]) -> None:
    museum, lingyin = gates
    holder = SigningKey.generate()
    code = card(served, holder, quota=1)
    for gate in gates:
        gate.catch_up(served, NOW)
    offline = NOW + OFFLINE_AFTER_S + 60  # neither gate has heard from the issuer for longer than the limit

    # each offline gate admits one use the centre has not counted, and no more
    assert museum.use(code, holder, offline).allowed
    again = museum.use(code, holder, offline + 30)
    assert again.reason == Reason.QUOTA_EXHAUSTED  # its own use already fills the quota of 1
    assert lingyin.use(code, holder, offline + 60).allowed  # it cannot know: one beyond the quota, the bound
    assert lingyin.use(code, holder, offline + 90).reason == Reason.QUOTA_EXHAUSTED
    admitted = 2
    assert admitted <= 1 + len(gates) * OFFLINE_ALLOWANCE  # quota + one per offline gate: the stated bound

    # back online: the centre counts both uses and reports the one beyond the quota
    for gate in gates:
        gate.upload(served)
    cid = parse(code).credential.id.hex()
    assert served.issuer.store.benefit_use_count(cid, period_start(offline, Period.MONTH)) == 2
    incidents = benefits.over_quota_incidents(served.issuer.store, NOW)
    assert [(i.kind, i.credential_id, i.gate_ids) for i in incidents] == \
        [("benefit_over_quota", cid, ("lingyin-in", "museum-in"))]
    with served.client("auditor") as auditor:
        window = {"kind": "benefit_over_quota", "since": NOW, "until": offline + 3600}
        listed = auditor.get("/v1/incidents", params=window).json()
    assert [i["credential_id"] for i in listed] == [cid]


def test_an_offline_gate_admits_one_uncounted_use_when_more_are_left(
        served: ServedIssuer, gates: tuple[Gate, Gate]) -> None:
    museum, _ = gates
    holder = SigningKey.generate()
    code = card(served, holder, quota=4)
    museum.catch_up(served, NOW)
    offline = NOW + OFFLINE_AFTER_S + 60
    assert museum.use(code, holder, offline).benefit_left == 3
    assert museum.use(code, holder, offline + 30).reason == Reason.QUOTA_UNCONFIRMED
    museum.upload(served)
    museum.catch_up(served, offline + 60)  # back in touch: the centre counted it, the gate may admit again
    assert museum.use(code, holder, offline + 90).benefit_left == 2


def test_the_screen_shows_the_uses_left() -> None:
    from citypass.credential.catalog import Catalogs

    texts = ScreenTexts(Catalogs(), ["zh", "en"], {"zh": "浙江省博物馆", "en": "Zhejiang Museum"})
    state = texts.allow(1, [], benefit=(2, "month"))
    details = [line["details"] for line in state["lines"]]
    assert details == [["惠民卡 · 本月剩余 2 次"], ["Benefit card · 2 uses left this month"]]


def test_the_api_signs_benefit_cards_bound_to_a_holder_and_the_wallet_shows_the_uses_left(
        served: ServedIssuer) -> None:
    from tests.helpers.wallet import claim_body

    holder = SigningKey.generate()
    body = {"product": "benefit", "sites": ["zhejiang-museum", "lingyin"], "quota": 4, "category": "student",
            "holder_key": holder.public.pem().decode()}
    with served.client("issuer") as issuer, served.client() as anonymous:
        made = issuer.post("/v1/passes", json=body)
        assert made.status_code == 201, made.text
        cred = parse(made.json()["code"]).credential
        assert made.json()["product"] == "benefit" and made.json()["holder_bound"]
        assert cred.terms == Benefit(frozenset({MUSEUM, LINGYIN}), 4, Period.MONTH, Category.STUDENT)
        unbound = issuer.post("/v1/passes", json={k: v for k, v in body.items() if k != "holder_key"})
        assert unbound.status_code == 422 and "holder-bound" in unbound.text
        assert issuer.post("/v1/passes", json=body | {"quota": 0}).status_code == 422
        offer = issuer.post("/v1/passes", json={k: v for k, v in body.items() if k != "holder_key"} |
                            {"holder": "wallet"}).json()
        token = offer["claim_url"].split("#claim=")[1]
        phone = SigningKey.generate()
        got = anonymous.post("/v1/wallet/claims", json=claim_body(token, phone))
    assert got.status_code == 201, got.text
    display = got.json()["display"]
    assert display["product"] == "benefit" and display["benefit_left"] == 4 and display["benefit_period"] == "month"


def test_booking_a_benefit_slot_over_the_api_uses_the_quota_online(served: ServedIssuer) -> None:
    holder = SigningKey.generate()
    code = card(served, holder, quota=1)
    with served.client("issuer") as issuer, served.client("auditor") as auditor:
        slot = issuer.post("/v1/venues/zhejiang-museum/slots",
                           json={"starts_at": NOW + 3600, "ends_at": NOW + 7200, "capacity": 5}).json()
        booked = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "benefit_code": code})
        assert booked.status_code == 201, booked.text
        assert booked.json()["benefit_left"] == 0
        again = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "benefit_code": code})
        assert again.status_code == 409 and "no benefit uses left" in again.text
        assert issuer.post("/v1/reservations", json={"slot_id": slot["id"], "benefit_code": code,
                                                     "party": 2}).status_code == 422
        assert issuer.post("/v1/reservations", json={"slot_id": slot["id"],
                                                     "benefit_code": "CP1:NOT A CODE"}).status_code == 422
        [listed] = auditor.get("/v1/venues/zhejiang-museum/slots").json()
        assert listed["booked"] == 1  # the refused bookings gave their places back
    cid = parse(code).credential.id.hex()
    assert benefits.status_text(served.issuer.store, cid, NOW) == \
        ("惠民卡 · 本月剩余 0 次", "Benefit card · 0 uses left this month")


def test_the_wallet_asks_for_the_uses_left_with_a_fresh_presentation(
        served: ServedIssuer, gates: tuple[Gate, Gate]) -> None:
    museum, _ = gates
    holder = SigningKey.generate()
    code = card(served, holder, quota=3)
    served.clock.now = NOW + 100
    museum.use(code, holder, NOW + 90)
    museum.upload(served)  # the centre counts the use
    with served.client() as phone:  # no bearer token: the presentation is the authority
        asked = phone.post("/v1/wallet/benefit", json={"presentation": present(code, holder, NOW + 95)})
        assert asked.status_code == 200, asked.text
        assert asked.json() == {"credential_id": parse(code).credential.id.hex(), "benefit_left": 2, "quota": 3,
                                "benefit_period": "month", "as_of": NOW + 100}
        refused = {
            "the card itself": code,
            "an old screenshot": present(code, holder, NOW + 100 - 60),
            "a tampered presentation": present(code, holder, NOW + 95)[:-20] + "0" * 20,
            "not a code": "CP1:NOT A CODE",
            "another issuer's card": present(issue(parse(code).credential, SigningKey.generate()), holder, NOW + 95),
        }
        for what, text in refused.items():
            answer = phone.post("/v1/wallet/benefit", json={"presentation": text})
            assert answer.status_code == 422, (what, answer.status_code, answer.text)
        texts = phone.get("/wallet/i18n.json").json()["texts"]
    assert texts["zh"]["benefit.left.month"] == "惠民卡 · 本月剩余 {n} 次" and "wallet.as_of" in texts["en"]
