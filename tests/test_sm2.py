"""SM2/SM3 through Tongsuo, checked against the standards' sample values and an independent implementation."""

from __future__ import annotations

import os

import pytest

from citypass.credential import sm2
from tests.helpers import sm2ref

if not sm2.available():  # pragma: no cover - the project installs tongsuopy on x86_64
    pytest.skip("tongsuopy has no wheel for this machine; SM2 codes are answered unsupported_format here",
                allow_module_level=True)

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


@pytest.mark.parametrize(("message", "digest"), [(b"abc", SM3_ABC), (b"abcd" * 16, SM3_ABCD16)])
def test_sm3_matches_the_standard_samples_in_both_implementations(message: bytes, digest: str) -> None:
    assert sm2.sm3(message).hex() == digest
    assert sm2ref.sm3(message).hex() == digest


def test_sm3_implementations_agree_on_every_length_around_the_block_boundaries() -> None:
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000):
        data = os.urandom(n)
        assert sm2.sm3(data) == sm2ref.sm3(data), n


def test_the_reference_reproduces_the_standards_worked_signature() -> None:
    """GM/T 0003.2-2012 Annex A.2: every intermediate value the standard prints."""
    c = sm2ref.TEST_CURVE
    d = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
    pub = c.mul(d, c.g)
    assert pub == (0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A,
                   0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857)
    ident = b"ALICE123@YAHOO.COM"
    assert c.z(ident, pub).hex().upper() == "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    assert c.digest(ident, pub, b"message digest") == \
        0xB524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76
    r, s = c.sign(d, b"message digest", 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F, ident)
    assert r == 0x40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1
    assert s == 0x6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7
    assert c.verify(pub, b"message digest", r, s, ident)
    assert not c.verify(pub, b"message digesT", r, s, ident)
    assert not c.verify(pub, b"message digest", r, s, b"1234567812345678")  # the ID is part of what is signed


def test_the_prehashed_paths_z_and_e_match_the_standards_worked_example() -> None:
    """The gate's own Z_A (computed once per key, then e = SM3(Z_A || M) per code) on the Annex A.2 values."""
    c = sm2ref.TEST_CURVE
    pub = sm2ref.point_to_raw((0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A,
                               0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857))
    z = sm2.z_value(pub, b"ALICE123@YAHOO.COM", sm2.CurveParams(c.a, c.b, c.gx, c.gy))
    assert z.hex().upper() == "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    assert sm2.sm3(z + b"message digest").hex().upper() == \
        "B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76"
    ref = sm2ref.SM2P256V1
    assert (ref.a, ref.b, ref.gx, ref.gy) == (sm2.SM2P256V1.a, sm2.SM2P256V1.b, sm2.SM2P256V1.gx, sm2.SM2P256V1.gy)
    for _ in range(3):
        raw = sm2.SM2SigningKey.generate().public.raw
        assert sm2.z_value(raw) == ref.z(sm2.DEFAULT_ID, sm2ref.point_from_raw(raw))


def test_prehashed_and_tongsuo_one_call_verification_agree() -> None:
    key = sm2.SM2SigningKey.generate()
    loaded = sm2.SM2VerifyKey.from_raw(key.public.raw)
    for n in (0, 1, 63, 64, 65, 200):
        message = os.urandom(n)
        sig = key.sign(message)
        for k in (key.public, loaded):
            assert k.verify(sig, message) and k.verify_unprepared(sig, message)
            assert not k.verify(sig, message + b"x") and not k.verify_unprepared(sig, message + b"x")


def test_prehashed_verification_is_right_from_many_threads_at_once() -> None:
    """Each thread has its own native context: concurrent good and bad signatures never mix up."""
    from concurrent.futures import ThreadPoolExecutor

    key = sm2.SM2SigningKey.generate()
    pub = sm2.SM2VerifyKey.from_raw(key.public.raw)
    good = [(os.urandom(40), i % 2 == 0) for i in range(64)]
    cases = [(m, key.sign(m) if ok else key.sign(m + b"!"), ok) for m, ok in good]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: pub.verify(c[1], c[0]) == c[2], cases * 2))
    assert all(results)


def test_native_signatures_verify_in_the_reference_and_back() -> None:
    c = sm2ref.SM2P256V1
    for _ in range(3):
        key = sm2.SM2SigningKey.generate()
        message = os.urandom(77)
        pub = sm2ref.point_from_raw(key.public.raw)
        assert c.mul(key.private_value, c.g) == pub
        native = key.sign(message)
        r, s = int.from_bytes(native[:32], "big"), int.from_bytes(native[32:], "big")
        assert c.verify(pub, message, r, s)  # Tongsuo signs under Z_A of the default ID
        assert not c.verify(pub, message + b"x", r, s)
        ref_r, ref_s = c.sign(key.private_value, message, int.from_bytes(os.urandom(31), "big") + 1)
        reference = ref_r.to_bytes(32, "big") + ref_s.to_bytes(32, "big")
        assert key.public.verify(reference, message)
        assert not key.public.verify(reference, message[:-1])


def test_native_verify_refuses_tampering_and_never_raises() -> None:
    key = sm2.SM2SigningKey.generate()
    message = b"GM1 test"
    sig = key.sign(message)
    assert key.public.verify(sig, message)
    for i in range(len(sig)):
        flipped = bytearray(sig)
        flipped[i] ^= 0x01
        assert not key.public.verify(bytes(flipped), message), i
        assert not key.public.verify_unprepared(bytes(flipped), message), i
    other = sm2.SM2SigningKey.generate().public
    n = sm2ref.SM2P256V1.n
    for bad in (b"", sig[:63], sig + b"\0", bytes(64), b"\xff" * 64, n.to_bytes(32, "big") + sig[32:]):
        assert not key.public.verify(bad, message)
    assert not other.verify(sig, message)
    # (r, n - s) is a different signature, not a malleated valid one: SM2 has no such symmetry
    s = int.from_bytes(sig[32:], "big")
    assert not key.public.verify(sig[:32] + (n - s).to_bytes(32, "big"), message)


def test_public_keys_load_only_from_curve_points() -> None:
    key = sm2.SM2SigningKey.generate()
    raw = key.public.raw
    assert sm2.SM2VerifyKey.from_raw(raw).raw == raw
    with pytest.raises(ValueError):
        sm2.SM2VerifyKey.from_raw(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ValueError):
        sm2.SM2VerifyKey.from_raw(b"\x04" + bytes(64))
    assert sm2.SM2SigningKey.from_pem(key.pem()).public.raw == raw
