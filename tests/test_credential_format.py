"""The wire format: round trips, size goals, strict parsing."""

from __future__ import annotations

import os

import pytest
import segno

from citypass.credential import (
    Alg,
    Annual,
    CodeError,
    Credential,
    Group,
    HolderKey,
    Mode,
    Reason,
    Reservation,
    SigningKey,
    Transit,
    UnknownTerms,
    issue,
    parse,
    present,
)
from citypass.credential import qr as qrmod
from citypass.credential.codes import encode_text
from citypass.credential.cose import decode_cbor, encode_cbor, sign1
from tests.helpers.codes import ANNUAL_SITES, NOW, QR_TEXT_RE, World


@pytest.mark.parametrize("terms", [
    Annual(ANNUAL_SITES, 30),
    Annual(frozenset({0, 7, 8, 1023}), None),
    Reservation(20, 3, 15),
    Transit("13800000000", Mode.METRO | Mode.WATER_BUS),
    Group(5, 40),
])
def test_claims_round_trip(terms: object, world: World) -> None:
    cred = Credential(os.urandom(8), terms, NOW, NOW + 3600, HolderKey(world.holder.public))  # type: ignore[arg-type]
    assert Credential.from_claims(decode_cbor(encode_cbor(cred.to_claims()))) == cred
    parsed = parse(issue(cred, world.issuer))
    assert parsed.credential == cred
    assert parsed.sign1.kid == world.issuer.kid


def test_code_text_uses_only_the_qr_alphanumeric_alphabet(world: World) -> None:
    for code in (world.annual(), world.reservation(), world.transit(), world.group()):
        assert code.startswith("CP1:")
        assert QR_TEXT_RE.match(code)
        assert segno.make(code, error="m", boost_error=False).mode == "alphanumeric"


def test_static_annual_pass_for_18_sites_fits_qr_version_7_at_ecc_m(world: World) -> None:
    for key in (world.issuer, SigningKey.generate(Alg.ES256)):
        code = world.annual(key=key)
        assert qrmod.version(code) <= 7, (len(code), qrmod.version(code))
    # and segno's own reading of the symbol agrees on the error level
    assert segno.make(world.annual(), error="m", boost_error=False).error == "M"


@pytest.mark.parametrize("holder_alg", [Alg.EDDSA, Alg.ES256])
def test_holder_bound_dynamic_code_fits_qr_version_11(holder_alg: Alg) -> None:
    world = World(holder=SigningKey.generate(holder_alg))
    credential = world.annual(holder=True)
    presentation = present(credential, world.holder, NOW)
    assert qrmod.version(presentation) <= 11, (len(presentation), qrmod.version(presentation))
    for other in (world.transit(holder=True), world.reservation(holder=True)):
        assert qrmod.version(present(other, world.holder, NOW)) <= 11


def test_presentation_carries_the_exact_credential_and_time(world: World) -> None:
    credential = world.transit(holder=True)
    p = parse(present(credential, world.holder, NOW + 5))
    assert p.dynamic and p.generated_at == NOW + 5
    assert p.credential == parse(credential).credential
    assert p.holder_signature_valid()


def test_present_refuses_the_wrong_holder_key_and_unbound_credentials(world: World) -> None:
    with pytest.raises(ValueError, match="not the one"):
        present(world.annual(holder=True), SigningKey.generate(), NOW)
    with pytest.raises(ValueError, match="not bound"):
        present(world.annual(), world.holder, NOW)


def test_unknown_product_parses_as_unknown_terms(world: World) -> None:
    claims = {7: os.urandom(8), -1: 99, -20: "hotel-room-1208"}
    code = encode_text(sign1(world.issuer, encode_cbor(claims)))
    assert parse(code).credential.terms == UnknownTerms(99)


@pytest.mark.parametrize("mangle, why", [
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b"\x84" + b[1:2] + b"\xa1\x01\x27" + b[3:] if b[2] == 0xA0 else b"", "unprotected"),
])
def test_strict_cose_profile(world: World, mangle: object, why: str) -> None:
    import base45

    raw = bytes(base45.b45decode(world.annual()[4:]))
    bad = mangle(raw)  # type: ignore[operator]
    with pytest.raises(CodeError) as info:
        parse(encode_text(bad))
    assert info.value.reason is Reason.MALFORMED_CODE, why


def test_other_versions_and_foreign_codes_are_named() -> None:
    with pytest.raises(CodeError) as info:
        parse("CP2:ABC")
    assert info.value.reason is Reason.UNSUPPORTED_VERSION
    with pytest.raises(CodeError) as info:
        parse("https://example.org/pay?id=1")
    assert info.value.reason is Reason.NOT_CITYPASS
    with pytest.raises(CodeError) as info:
        parse("CP1:" + "A" * 2000)
    assert info.value.reason is Reason.MALFORMED_CODE


def test_every_reason_has_both_messages() -> None:
    for reason in Reason:
        assert reason.value == reason.value.lower() and " " not in reason.value
        assert reason.zh and reason.en and reason.zh != reason.en
        assert reason.message("zh") == reason.zh and reason.message("en") == reason.en
