"""GM1, the SM2/SM3-signed partner format: layout, every byte flip refused, scope, the plug-in registry."""

from __future__ import annotations

import importlib.metadata

import base45
import pytest

from citypass.credential import gm1, sm2
from citypass.credential import qr as qrmod
from citypass.credential.formats import GROUP, format_for, registry
from citypass.credential.partners import revocation_id
from citypass.credential.reasons import Reason
from citypass.credential.revocations import RevocationSet
from citypass.credential.trustlist import TrustList
from citypass.credential.verifier import verify
from tests.helpers import partners
from tests.helpers.codes import NOW, World

if not sm2.available():  # pragma: no cover
    pytest.skip("tongsuopy has no wheel for this machine", allow_module_level=True)


@pytest.fixture
def metro_key() -> sm2.SM2SigningKey:
    return partners.metro_key()


@pytest.fixture
def world() -> World:
    return World()


metro, ride, trust_with = partners.metro, partners.ride, partners.trust_with


def test_a_gm1_ride_code_is_admitted_in_scope_and_named(world: World, metro_key: sm2.SM2SigningKey) -> None:
    code = ride(metro_key)
    assert code.startswith("GM1:") and qrmod.version(code) <= 11
    v = verify(code, trust_with(world, metro(metro_key)), RevocationSet(), world.sites["metro"], NOW)
    assert v.allowed, v
    assert v.format == "gm1" and v.partner is not None and v.partner.name_zh == "杭州地铁"
    assert v.credential is not None and v.credential.id[:4] == (7).to_bytes(4, "big")  # the partner's namespace


def test_gm1_scope_and_partner_reasons(world: World, metro_key: sm2.SM2SigningKey) -> None:
    trust = trust_with(world, metro(metro_key))
    scenic = world.sites["scenic"]

    def reason(code: str, site: str = "metro", trust: TrustList = trust,
               view: RevocationSet | None = None) -> str | None:
        return verify(code, trust, view or RevocationSet(), world.sites[site], NOW).reason

    assert reason(ride(metro_key), "metro2") == Reason.WRONG_SITE  # site 31 is outside the partner's sites
    assert reason(ride(metro_key), "water_bus") == Reason.WRONG_SITE
    annual = ride(metro_key, product=1, sites=(1,), account="", modes=0)
    assert verify(annual, trust, RevocationSet(), scenic, NOW).reason == Reason.WRONG_PRODUCT
    assert reason(ride(metro_key, platform=8)) == Reason.UNKNOWN_PARTNER
    stranger = sm2.SM2SigningKey.generate()
    assert reason(ride(stranger)) == Reason.UNKNOWN_KEY  # platform 7's number, another key
    assert reason(ride(metro_key), trust=trust_with(world)) == Reason.UNKNOWN_PARTNER
    revoked = RevocationSet(revoked=frozenset({revocation_id("hz-metro")}))
    assert reason(ride(metro_key), view=revoked) == Reason.PARTNER_REVOKED
    no_gm1 = trust_with(world, metro(metro_key, formats=frozenset({"cp1"})))
    assert reason(ride(metro_key), trust=no_gm1) == Reason.KEY_OUT_OF_SCOPE
    later = trust_with(world, metro(metro_key, valid_from=NOW + 86_400))
    assert reason(ride(metro_key), trust=later) == Reason.KEY_NOT_YET_VALID
    ended = trust_with(world, metro(metro_key, valid_to=NOW - 1))
    assert reason(ride(metro_key), trust=ended) == Reason.KEY_RETIRED
    group = ride(metro_key, product=4, sites=(30,), party=3, account="", modes=0)
    assert reason(group) is None
    wide = ride(metro_key, product=4, sites=(31,), party=3, account="", modes=0)
    assert reason(wide, "metro2") == Reason.WRONG_SITE


def test_every_byte_flip_of_a_gm1_code_is_refused(world: World, metro_key: sm2.SM2SigningKey) -> None:
    trust = trust_with(world, metro(metro_key))
    site = world.sites["metro"]
    code = ride(metro_key)
    assert verify(code, trust, RevocationSet(), site, NOW).allowed
    data = bytes(base45.b45decode(code[4:]))
    reasons = set()
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(data)
            flipped[i] ^= mask
            text = gm1.PREFIX + bytes(base45.b45encode(bytes(flipped))).decode()
            v = verify(text, trust, RevocationSet(), site, NOW)
            assert not v.allowed, (i, mask)
            reasons.add(v.reason)
    assert Reason.BAD_SIGNATURE in reasons and Reason.MALFORMED_CODE in reasons
    for extra in (data + b"\0", data[:-1], b"", data[:27]):
        text = gm1.PREFIX + bytes(base45.b45encode(extra)).decode()
        assert verify(text, trust, RevocationSet(), site, NOW).reason == Reason.MALFORMED_CODE
    for text in ("GM1:", "GM1:!!!", "GM1:" + "A" * 2000):
        assert verify(text, trust, RevocationSet(), site, NOW).reason == Reason.MALFORMED_CODE


def test_a_tampered_gm1_code_is_refused_even_when_it_still_parses(world: World, metro_key: sm2.SM2SigningKey) -> None:
    trust = trust_with(world, metro(metro_key))
    code = gm1.decode(ride(metro_key))
    # the same fields with a longer validity, re-encoded with the old signature: a valid layout, a bad signature
    forged = gm1.GM1Code(**{**code.__dict__, "valid_to": code.valid_to + 86_400})
    data = forged.body() + code.signature
    text = gm1.PREFIX + bytes(base45.b45encode(data)).decode()
    v = verify(text, trust, RevocationSet(), world.sites["metro"], NOW)
    assert v.reason == Reason.BAD_SIGNATURE and v.format == "gm1"


def test_layout_rules_are_checked_when_minting(metro_key: sm2.SM2SigningKey) -> None:
    with pytest.raises(gm1.GM1Error):
        ride(metro_key, sites=(30,))  # transit names no sites
    with pytest.raises(gm1.GM1Error):
        ride(metro_key, product=1, sites=(2, 1), account="", modes=0)  # not ascending
    with pytest.raises(gm1.GM1Error):
        ride(metro_key, account="138-0000")


def test_without_the_native_library_a_gate_answers_unsupported_format(
        world: World, metro_key: sm2.SM2SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    code = ride(metro_key)
    monkeypatch.setattr(gm1, "available", lambda: False)
    v = verify(code, trust_with(world, metro(metro_key)), RevocationSet(), world.sites["metro"], NOW)
    assert v.reason == Reason.UNSUPPORTED_FORMAT


def test_formats_come_from_the_entry_point_group() -> None:
    declared = {ep.name for ep in importlib.metadata.entry_points(group=GROUP)}
    assert {"cp1", "gm1"} <= declared, "reinstall the package (./scripts/bootstrap.sh) to register entry points"
    assert [f.name for f in registry()][:2] in (["cp1", "gm1"], ["gm1", "cp1"])
    assert format_for("GM1:xyz") is not None and format_for("XX1:abc") is None
    # text of no format is judged by CP1's rules, as before
    assert verify("hello", World().trust(), RevocationSet(), World().sites["scenic"], NOW).reason == Reason.NOT_CITYPASS
    assert verify("CP2:ABC", World().trust(), RevocationSet(), World().sites["scenic"], NOW).reason == \
        Reason.UNSUPPORTED_VERSION


def test_code_inspect_reads_gm1_codes() -> None:
    import json

    from click.testing import CliRunner

    from citypass.cli import cli

    result = CliRunner().invoke(cli, ["code", "inspect", partners.ride()])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["format"], shown["platform"], shown["product"], shown["verified"]) == ("gm1", 7, "transit", False)
    assert CliRunner().invoke(cli, ["code", "inspect", "GM1:AAAA"]).exit_code != 0
