"""The gate's SQLite ledger: signed snapshots and deltas from a real issuer, and the trust list they pin."""

from __future__ import annotations

from pathlib import Path

import pytest

from citypass.credential.codes import parse
from citypass.credential.keys import SigningKey
from citypass.credential.reasons import Reason
from citypass.gate.decision import decide
from citypass.gate.ledger import GateLedger, LedgerError, SnapshotRefused
from citypass.gate.ledger.installer import install_in_child
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from tests.helpers.ledger import NOW, SITES, Issued, ctx_for, dump
from tests.helpers.ledger import issued as issued


# -- snapshots ----------------------------------------------------------------------------------------
def test_snapshot_from_a_real_issuer_loads(issued: Issued) -> None:
    data = issued.export()
    with issued.ledger() as ledger:
        snap = ledger.load_snapshot(data)
        assert ledger.seq == snap.seq and ledger.synced_at == NOW and ledger.clock_floor == NOW
        assert ledger.trust == snap.trust and ledger.trust_error is None
        assert [s.name for s in ledger.sites()] == [name for name, _ in SITES]
        assert all(ledger.is_revoked(i) for i in snap.revoked) and len(snap.revoked) == 1
        assert all(ledger.is_holder_revoked(h) for h in snap.revoked_holders)
        assert not ledger.is_revoked(b"\x00" * 8) and not ledger.is_holder_revoked(b"\x00" * 16)


def test_tampered_or_foreign_snapshots_are_refused_and_change_nothing(issued: Issued, tmp_path: Path) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        before = dump(ledger)
        issued.issuer.revoke(issued.codes["annual"], now=NOW + 10)
        newer = issued.export(NOW + 10)
        for position in (len(newer) - 1, len(newer) // 2, 200):  # signature, payload, trust list
            tampered = bytearray(newer)
            tampered[position] ^= 0x01
            with pytest.raises(SnapshotRefused):
                ledger.load_snapshot(bytes(tampered))
            assert dump(ledger) == before
        other = Issuer.init(IssuerHome(tmp_path / "other"), SITES, now=NOW)
        with pytest.raises(SnapshotRefused):
            ledger.load_snapshot(other.export(NOW + 20))  # signed by another root
        with pytest.raises(SnapshotRefused):
            ledger.load_snapshot(newer, other.root_key().public)  # not the root the ledger pinned
        assert dump(ledger) == before
        ledger.load_snapshot(newer)  # the genuine one still goes in
        assert ledger.is_revoked(parse(issued.codes["annual"]).credential.id)


def test_older_seq_is_refused_unless_forced_and_same_seq_refreshes(issued: Issued) -> None:
    old = issued.export(NOW)
    issued.issuer.revoke(issued.codes["group"], now=NOW + 5)
    new = issued.export(NOW + 5)
    with issued.ledger() as ledger:
        ledger.load_snapshot(new)
        seq = ledger.seq
        assert seq is not None
        with pytest.raises(SnapshotRefused, match="older"):
            ledger.load_snapshot(old)
        assert ledger.seq == seq
        ledger.load_snapshot(issued.export(NOW + 3600))  # nothing changed, but known fresh as of then
        assert ledger.seq == seq and ledger.synced_at == NOW + 3600
        ledger.load_snapshot(old, force=True)
        assert ledger.seq == seq - 1 and ledger.clock_floor == NOW + 3600  # the floor never goes back


def test_a_child_process_installs_the_snapshot_the_open_ledger_then_reads(issued: Issued) -> None:
    """The running gate's catch-up path: bytes streamed to a file beside the ledger, installed by
    ``python -m citypass.gate.ledger.installer``; this process's open connection sees the result."""
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        issued.issuer.revoke(issued.codes["annual"], now=NOW + 10)
        data = issued.export(NOW + 10)
        chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
        done = install_in_child(ledger.config, iter(chunks), issued.root)
        assert done.seq == ledger.seq and done.issued_at == NOW + 10 and done.revocations >= 2
        assert ledger.is_revoked(parse(issued.codes["annual"]).credential.id)  # data_version noticed it
        assert [p.name for p in ledger.config.path.parent.iterdir() if p.name.startswith(".snapshot-")] == []


def test_the_child_refuses_what_the_ledger_refuses_and_changes_nothing(issued: Issued, tmp_path: Path) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export(NOW + 5))
        before = dump(ledger)
        tampered = bytearray(issued.export(NOW + 9))
        tampered[-1] ^= 0x01
        with pytest.raises(SnapshotRefused, match="signature"):
            install_in_child(ledger.config, [bytes(tampered)], issued.root)
        with pytest.raises(SnapshotRefused, match="older"):
            install_in_child(ledger.config, [issued.export(NOW)], issued.root)
        other = Issuer.init(IssuerHome(tmp_path / "other"), SITES, now=NOW)
        with pytest.raises(SnapshotRefused):  # the pinned root travels to the child
            install_in_child(ledger.config, [other.export(NOW + 20)], issued.root)
        assert dump(ledger) == before
    broken = tmp_path / "broken" / "ledger.sqlite3"
    broken.parent.mkdir()
    broken.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(LedgerError, match=r"installer failed: .*not a database"):  # quoted from the child
        install_in_child(ledger.config.model_copy(update={"path": broken}), [issued.export(NOW + 30)], issued.root)


def test_apply_delta_needs_its_base(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        seq = ledger.seq
        assert seq is not None
        with pytest.raises(SnapshotRefused):
            ledger.apply_delta(base_seq=seq - 1, seq=seq + 1, issued_at=NOW + 1, revoked=[b"\x01" * 8])
        extra = [bytes([i]) * 8 for i in range(2, 50)] + [b"\x09" * 16]
        assert ledger.apply_delta(base_seq=seq, seq=seq + 1, issued_at=NOW + 9, revoked=extra,
                                  revoked_holders=[b"\x07" * 16]) == len(extra) + 1
        assert all(ledger.is_revoked(i) for i in extra) and ledger.is_holder_revoked(b"\x07" * 16)
        ledger.apply_delta(base_seq=seq + 1, seq=seq + 2, issued_at=NOW + 8, unrevoked=extra[:3])
        assert not ledger.is_revoked(extra[0]) and ledger.is_revoked(extra[3])
        assert ledger.seq == seq + 2 and ledger.synced_at == NOW + 9 and ledger.clock_floor == NOW + 9


def test_site_updates_are_upserted_and_an_older_issuers_full_list_replaces(issued: Issued) -> None:
    from citypass.credential.sites import SiteKind, SiteSettings

    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        seq, before = ledger.seq or 0, ledger.sites()
        first = before[0].model_copy(update={"capacity": 7})
        added = SiteSettings(number=500, name="stop-500", kind=SiteKind.BUS)
        assert ledger.apply_delta(base_seq=seq, seq=seq + 1, issued_at=NOW, site_updates=[first, added]) == 2
        assert ledger.sites() == [first, *before[1:], added]
        ledger.apply_delta(base_seq=seq + 1, seq=seq + 2, issued_at=NOW, sites=[added])  # the complete list
        assert ledger.sites() == [added]


def test_a_stored_trust_list_is_rechecked_against_the_pinned_root(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
    with GateLedger.open(issued.tmp / "ledger.sqlite3", root=SigningKey.generate().public) as ledger:
        assert ledger.trust.keys == () and ledger.trust_error is not None
        ctx = ctx_for(ledger, "west-lake")
        assert decide(issued.codes["annual"], ledger, ctx, NOW + 1).reason is Reason.UNKNOWN_KEY
