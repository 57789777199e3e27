"""Every reason the decision core can give, each reached by a real code (verify + decide)."""

from __future__ import annotations

import os
from collections.abc import Callable
from unittest import mock

import pytest

from citypass.credential import (
    Annual,
    HolderKey,
    Mode,
    Product,
    Reason,
    SigningKey,
    TrustedKey,
    TrustList,
    gm1,
    parse,
    present,
)
from citypass.credential.benefit import period_start, used_mark
from citypass.credential.claims import Benefit, Period
from citypass.credential.codes import encode_text, holder_message
from citypass.credential.cose import encode_cbor, sign1
from citypass.credential.partners import revocation_id
from citypass.gate.decision import Decision
from citypass.gate.policy import Direction, GatePolicy
from tests.helpers import partners
from tests.helpers.codes import DAY, NOW, World
from tests.helpers.decisions import at, ledger_for

#: Reasons that only the running daemon gives (camera down, decision deadline, unconfigured site);
#: they are exercised by the daemon's tests.
DAEMON_REASONS = {Reason.OUT_OF_ORDER, Reason.DECISION_TIMEOUT, Reason.SITE_NOT_CONFIGURED}
#: Reasons that are only ever flags on an allowed decision, never why one is denied (tests/test_clock_leeway.py).
FLAG_REASONS = {Reason.CLOCK_LEEWAY}


def foreign_holder_presentation(world: World, credential: str, t: int) -> str:
    cred_bytes = parse(credential).credential_bytes
    signature = SigningKey.generate().sign(holder_message(cred_bytes, t))
    return encode_text(encode_cbor([cred_bytes, t, signature]))


Scenario = Callable[[World], Decision]


def _unknown_product(w: World) -> Decision:
    code = encode_text(sign1(w.issuer, encode_cbor({7: os.urandom(8), -1: 77})))
    return at(ledger_for(w), w, "scenic", code)


def _bad_signature(w: World) -> Decision:
    payload = encode_cbor(parse(w.annual()).credential.to_claims())
    return at(ledger_for(w), w, "scenic", encode_text(sign1(SigningKey.generate(), payload, kid=w.issuer.kid)))


def _scoped(products: frozenset[int] | None, sites: frozenset[int] | None) -> Scenario:
    def run(w: World) -> Decision:
        scoped = TrustedKey(w.issuer.kid, w.issuer.public, "issuer", 0, None, products, sites)
        trust = TrustList(1, NOW, (scoped,))
        return at(ledger_for(w, trust), w, "scenic", w.annual())
    return run


def _key_window(valid_from: int, valid_to: int | None) -> Scenario:
    def run(w: World) -> Decision:
        trust = TrustList(1, NOW, (TrustedKey(w.issuer.kid, w.issuer.public, "issuer", valid_from, valid_to),))
        return at(ledger_for(w, trust), w, "scenic", w.annual())
    return run


def _twice(site: str, make: Callable[[World], str], policy: GatePolicy | None = None, **changes: object) -> Scenario:
    def run(w: World) -> Decision:
        ledger, code = ledger_for(w, **changes), make(w)
        first = at(ledger, w, site, code, policy=policy)
        assert first.allowed, first
        return at(ledger, w, site, code, NOW + 60, policy=policy)
    return run


def _replayed(w: World) -> Decision:
    ledger, p = ledger_for(w), present(w.annual(holder=True), w.holder, NOW)
    assert at(ledger, w, "scenic", p).allowed
    return at(ledger, w, "scenic2", p, NOW + 5)


def _holder_revoked(w: World) -> Decision:
    ledger = ledger_for(w, revoked_holders=frozenset({HolderKey(w.holder.public).holder_id}))
    return at(ledger, w, "scenic", present(w.annual(holder=True), w.holder, NOW))


def _revoked(w: World) -> Decision:
    code = w.annual()
    return at(ledger_for(w, revoked=frozenset({parse(code).credential.id})), w, "scenic", code)


def _site_full(w: World) -> Decision:
    ledger = ledger_for(w, capacity=3)
    assert at(ledger, w, "scenic", w.group(party=3)).persons == 3
    return at(ledger, w, "scenic", w.annual())


def _partner(reason: Reason) -> Scenario:
    """A partner platform's code (tests/helpers/partners.py): GM1 rides of 杭州地铁, CP1 passes of 浙里游."""
    def run(w: World) -> Decision:
        tourism_key = SigningKey.generate()
        trust = partners.trust_with(w, partners.metro(), partners.tourism(tourism_key))
        if reason is Reason.UNKNOWN_PARTNER:
            return at(ledger_for(w, trust), w, "metro", partners.ride(platform=12))
        if reason is Reason.PARTNER_REVOKED:
            ledger = ledger_for(w, trust, revoked=frozenset({revocation_id("hz-metro")}))
            return at(ledger, w, "metro", partners.ride())
        if reason is Reason.WRONG_PRODUCT:
            return at(ledger_for(w, trust), w, "scenic", w.group(key=tourism_key))
        with mock.patch.object(gm1, "available", lambda: False):  # a gate without the native SM2 library
            return at(ledger_for(w, trust), w, "metro", partners.ride())
    return run


def _benefit(quota: int, marks: int) -> Scenario:
    """A benefit card (quota per month) shown twice at a gate whose ledger is an hour old (offline for it)."""
    def run(w: World) -> Decision:
        code = w.code(Benefit(frozenset({1}), quota), holder=True)
        start = period_start(NOW, Period.MONTH)
        cid = parse(code).credential.id
        ledger = ledger_for(w, revoked=frozenset(used_mark(cid, start, k) for k in range(1, marks + 1)))
        first = at(ledger, w, "scenic", present(code, w.holder, NOW - 3000), now=NOW - 3000)
        if marks >= quota:
            return first
        assert first.allowed, first
        return at(ledger, w, "scenic", present(code, w.holder, NOW), now=NOW)
    return run


def _clock_untrusted(w: World) -> Decision:
    ledger = ledger_for(w)  # floor = snapshot time NOW-3600; the device thinks it is 1970
    return at(ledger, w, "scenic", present(w.annual(holder=True), w.holder, 5), now=5)


SCENARIOS: dict[Reason, Scenario] = {
    Reason.NOT_CITYPASS: lambda w: at(ledger_for(w), w, "scenic", "WIFI:S:museum;T:WPA;P:secret;;"),
    Reason.UNSUPPORTED_VERSION: lambda w: at(ledger_for(w), w, "scenic", "CP9:ABCDEF"),
    Reason.MALFORMED_CODE: lambda w: at(ledger_for(w), w, "scenic", w.annual()[:-6]),
    Reason.UNKNOWN_KEY: lambda w: at(ledger_for(w), w, "scenic", w.annual(key=SigningKey.generate())),
    Reason.BAD_SIGNATURE: _bad_signature,
    Reason.KEY_NOT_YET_VALID: _key_window(NOW + 121, None),  # past the default 120 s clock leeway
    Reason.KEY_RETIRED: _key_window(0, NOW),
    Reason.KEY_OUT_OF_SCOPE: _scoped(frozenset({int(Product.RESERVATION)}), None),
    Reason.UNKNOWN_PRODUCT: _unknown_product,
    Reason.REVOKED: _revoked,
    Reason.HOLDER_REVOKED: _holder_revoked,
    Reason.DYNAMIC_REQUIRED: lambda w: at(ledger_for(w), w, "scenic", w.annual(holder=True)),
    Reason.BAD_HOLDER_SIGNATURE: lambda w: at(ledger_for(w), w, "scenic",
                                              foreign_holder_presentation(w, w.annual(holder=True), NOW)),
    Reason.PRESENTATION_EXPIRED: lambda w: at(ledger_for(w), w, "scenic", present(w.annual(holder=True), w.holder,
                                                                                   NOW - 41)),
    Reason.PRESENTATION_FROM_FUTURE: lambda w: at(ledger_for(w), w, "scenic",
                                                  present(w.annual(holder=True), w.holder, NOW + 11)),
    Reason.REPLAYED_PRESENTATION: _replayed,
    Reason.WRONG_SITE: lambda w: at(ledger_for(w), w, "museum", w.annual()),
    Reason.MODE_NOT_ALLOWED: lambda w: at(ledger_for(w), w, "metro", w.transit(Mode.BUS)),
    Reason.NOT_YET_VALID: lambda w: at(ledger_for(w), w, "scenic", w.annual(valid_from=NOW + 121)),
    Reason.EXPIRED: lambda w: at(ledger_for(w), w, "scenic", w.annual(valid_to=NOW)),
    Reason.SLOT_NOT_STARTED: lambda w: at(ledger_for(w), w, "museum", w.reservation(start=NOW + 15 * 60 + 1)),
    Reason.SLOT_ENDED: lambda w: at(ledger_for(w), w, "museum", w.reservation(start=NOW - 7200,
                                                                              end=NOW - 15 * 60 - 1)),
    Reason.ALREADY_USED: _twice("museum", lambda w: w.reservation(party=2)),
    Reason.PASSBACK: _twice("scenic", World.annual),
    Reason.NOT_TAPPED_IN: lambda w: at(ledger_for(w), w, "metro", w.transit(), direction=Direction.EXIT,
                                       policy=GatePolicy(exit_requires_tap_in=True)),
    Reason.ALREADY_TAPPED_IN: _twice("metro", World.transit),
    Reason.SITE_FULL: _site_full,
    Reason.SITE_CLOSED: lambda w: at(ledger_for(w, opens="09:00", closes="16:00"), w, "scenic", w.annual()),
    Reason.LEDGER_STALE: lambda w: at(ledger_for(w, issued_at=NOW - 4 * DAY), w, "scenic", w.annual(),
                                      policy=GatePolicy(stale_ledger="deny")),
    Reason.CLOCK_UNTRUSTED: _clock_untrusted,
    Reason.UNKNOWN_PARTNER: _partner(Reason.UNKNOWN_PARTNER),
    Reason.PARTNER_REVOKED: _partner(Reason.PARTNER_REVOKED),
    Reason.WRONG_PRODUCT: _partner(Reason.WRONG_PRODUCT),
    Reason.UNSUPPORTED_FORMAT: _partner(Reason.UNSUPPORTED_FORMAT),
    Reason.QUOTA_EXHAUSTED: _benefit(quota=2, marks=2),
    Reason.QUOTA_UNCONFIRMED: _benefit(quota=3, marks=0),
}


@pytest.mark.parametrize("reason", list(SCENARIOS), ids=lambda r: r.value)
def test_reason_is_reached(reason: Reason, fresh_world: World) -> None:
    decision = SCENARIOS[reason](fresh_world)
    assert not decision.allowed
    assert decision.reason is reason, decision.verdict.detail


def test_every_reason_has_a_scenario_or_is_a_daemon_reason() -> None:
    assert set(SCENARIOS) | DAEMON_REASONS | FLAG_REASONS == set(Reason)


def test_site_scope_of_a_key_is_enforced(fresh_world: World) -> None:
    w = fresh_world
    only_museum = _scoped(None, frozenset({20}))(w)
    assert only_museum.reason is Reason.KEY_OUT_OF_SCOPE
    # a key scoped to every annual site may sign an annual pass for them
    ok = _scoped(frozenset({int(Product.ANNUAL)}), frozenset(range(1, 19)))(w)
    assert ok.allowed


def test_sites_named_outside_the_keys_scope_are_refused_even_at_an_in_scope_site(fresh_world: World) -> None:
    w = fresh_world
    scoped = TrustedKey(w.issuer.kid, w.issuer.public, "issuer", 0, None, None, frozenset({1}))
    code = w.code(Annual(frozenset({1, 2}), None))
    assert at(ledger_for(w, TrustList(1, NOW, (scoped,))), w, "scenic", code).reason is Reason.KEY_OUT_OF_SCOPE
