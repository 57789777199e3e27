"""Trust lists, key rotation and retirement, snapshots, through the issuer's own operations."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from citypass.credential import (
    Reason,
    RevocationSet,
    SigningKey,
    SnapshotError,
    TrustError,
    TrustList,
    load_snapshot,
    parse,
    verify,
)
from citypass.issuer.home import HomeError, IssuerHome
from citypass.issuer.service import DAY, IssueError, Issuer
from tests.helpers.codes import NOW

SITES = [("west-lake", "scenic"), ("lingyin", "scenic"), ("zhejiang-museum", "museum"), ("longxiangqiao", "metro")]


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer.init(IssuerHome(tmp_path / "issuer"), SITES, now=NOW - DAY)


def check(issuer: Issuer, code: str, site: str = "west-lake", now: int = NOW) -> Reason | None:
    snap = load_snapshot(issuer.export(now), issuer.root_key().public)
    settings = snap.site(site)
    assert settings is not None
    view = RevocationSet(snap.revoked, snap.revoked_holders)
    return verify(code, snap.trust, view, settings, now).reason


def test_private_keys_are_0600_and_the_root_public_key_is_published(issuer: Issuer) -> None:
    keys = list(issuer.home.keys_dir.glob("*.key"))
    assert len(keys) == 3  # root, issuer, ledger
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert issuer.home.root_pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_init_refuses_to_overwrite_an_existing_home(issuer: Issuer) -> None:
    with pytest.raises(HomeError, match="already holds"):
        Issuer.init(issuer.home, SITES, NOW)


def test_rotation_two_keys_valid_then_old_retired(issuer: Issuer) -> None:
    old_code = issuer.mint_annual(["west-lake"], NOW - DAY)
    issuer.rotate(NOW, retire_old_at=NOW + 10 * DAY)
    new_code = issuer.mint_annual(["west-lake"], NOW)
    assert parse(new_code).sign1.kid != parse(old_code).sign1.kid
    # both verify during the overlap
    assert check(issuer, old_code, now=NOW + DAY) is None
    assert check(issuer, new_code, now=NOW + DAY) is None
    # after the retirement date only the new one does
    assert check(issuer, old_code, now=NOW + 10 * DAY) is Reason.KEY_RETIRED
    assert check(issuer, new_code, now=NOW + 10 * DAY) is None


def test_rotation_cannot_retire_in_the_past(issuer: Issuer) -> None:
    with pytest.raises(IssueError):
        issuer.rotate(NOW, retire_old_at=NOW - 1)


def test_revocation_by_id_reaches_the_snapshot(issuer: Issuer) -> None:
    code = issuer.mint_annual(["west-lake"], NOW - 10)
    assert check(issuer, code) is None
    cred_id = issuer.revoke(parse(code).credential.id.hex(), NOW)
    snap = load_snapshot(issuer.export(NOW), issuer.root_key().public)
    assert cred_id in snap.revoked
    assert check(issuer, code) is Reason.REVOKED


def test_revocation_by_holder_key_reaches_the_snapshot(issuer: Issuer) -> None:
    phone = SigningKey.generate()
    holder_id = issuer.revoke_holder(phone.public, NOW)
    snap = load_snapshot(issuer.export(NOW), issuer.root_key().public)
    assert holder_id in snap.revoked_holders


def test_require_dynamic_refuses_static_minting_and_is_signed_into_the_trust_list(issuer: Issuer) -> None:
    from citypass.credential import Mode, Product

    issuer.set_require_dynamic([Product.TRANSIT])
    with pytest.raises(IssueError, match="holder key"):
        issuer.mint_transit("acct", Mode.METRO, NOW)
    snap = load_snapshot(issuer.export(NOW), issuer.root_key().public)
    assert snap.trust.require_dynamic == {int(Product.TRANSIT)}


def test_snapshot_signed_by_another_root_is_refused_when_the_root_is_pinned(issuer: Issuer, tmp_path: Path) -> None:
    other = Issuer.init(IssuerHome(tmp_path / "other"), SITES, NOW)
    with pytest.raises(SnapshotError, match="root"):
        load_snapshot(other.export(NOW), issuer.root_key().public)
    # without pinning, the embedded root is used and the snapshot says so
    assert load_snapshot(other.export(NOW)).root_pinned is False


def test_every_byte_flip_of_a_snapshot_is_refused_or_harmless(issuer: Issuer) -> None:
    data = issuer.export(NOW)
    root = issuer.root_key().public
    good = load_snapshot(data, root)
    for i in range(0, len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        try:
            snap = load_snapshot(bytes(tampered), root)
        except SnapshotError:
            continue
        # the only bytes that may change without detection are the unsigned convenience copy of the root
        assert (snap.trust, snap.sites, snap.revoked, snap.seq) == (good.trust, good.sites, good.revoked, good.seq)


def test_trust_list_signed_by_the_wrong_root_is_refused(issuer: Issuer) -> None:
    signed = issuer.trust_list(NOW).sign(SigningKey.generate())
    with pytest.raises(TrustError):
        TrustList.verify(signed, issuer.root_key().public)


def test_snapshot_seq_increases_with_every_change(issuer: Issuer) -> None:
    root = issuer.root_key().public
    seqs = [load_snapshot(issuer.export(NOW), root).seq]
    issuer.revoke("00" * 8, NOW)
    seqs.append(load_snapshot(issuer.export(NOW), root).seq)
    issuer.rotate(NOW)
    seqs.append(load_snapshot(issuer.export(NOW), root).seq)
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


def test_encrypted_keys_need_the_passphrase(tmp_path: Path) -> None:
    home = IssuerHome(tmp_path / "enc", passphrase=b"correct horse")
    Issuer.init(home, SITES, NOW)
    assert b"ENCRYPTED" in home.key_path("root", b"").read_bytes()
    with pytest.raises(HomeError, match="passphrase"):
        Issuer.open(IssuerHome(home.path, passphrase=b"wrong")).export(NOW)
    assert Issuer.open(home).export(NOW)
