"""Room for every stop: site numbers beyond 1,023, and what that does (not) cost the QR codes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from citypass.credential import Annual, Credential, Group, HolderKey, Reservation, SiteKind, SiteSettings, issue, parse
from citypass.credential import qr as qrmod
from citypass.credential.claims import BITMAP_SITES, MAX_SITE_NUMBER, decode_sites, encode_sites
from citypass.credential.codes import present
from citypass.credential.cose import FormatError, decode_cbor, encode_cbor
from citypass.credential.revocations import NO_REVOCATIONS
from citypass.credential.verifier import verify
from tests.helpers.codes import ANNUAL_SITES, NOW, World

KINDS = (SiteKind.SCENIC, SiteKind.MUSEUM, SiteKind.METRO, SiteKind.BUS, SiteKind.WATER_BUS)


def city_of_70000() -> list[SiteSettings]:
    """70,000 sites numbered the way the issuer numbers them: the 18 scenic spots first (1..18), then
    museums, then thousands of stations and bus routes of every kind."""
    sites = [SiteSettings(number=n, name=f"spot-{n}", kind=SiteKind.SCENIC, title=f"景点{n}", title_en=f"Spot {n}")
             for n in range(1, 19)]
    for n in range(19, 70_001):
        sites.append(SiteSettings(number=n, name=f"site-{n}", kind=KINDS[n % len(KINDS)]))
    return sites


def test_70000_sites_are_numbered_and_the_qr_goals_still_hold() -> None:
    world = World()
    sites = city_of_70000()
    assert len({s.number for s in sites}) == 70_000 and max(s.number for s in sites) == 70_000
    # the 18-site static annual pass of the scenic spots: still ≤ version 7
    static = world.annual()
    assert parse(static).credential.terms == Annual(ANNUAL_SITES, 30)
    assert qrmod.version(static) <= 7
    # dynamic codes for the far end of the numbering: ≤ version 11
    far = sites[-1].number
    for terms in (Reservation(far, 2, 15), Group(far, 3), Annual(ANNUAL_SITES | {far}, 30)):
        cred = Credential(os.urandom(8), terms, NOW - 600, NOW + 3000, HolderKey(world.holder.public))
        code = issue(cred, world.issuer)
        assert parse(code).credential == cred
        shown = present(code, world.holder, NOW)
        assert qrmod.version(shown) <= 11, (terms, qrmod.version(shown))
    # and a gate at site 70,000 admits its own code and refuses one for site 69,999
    here = sites[-1]
    assert verify(world.code(Group(far, 3)), world.trust(), NO_REVOCATIONS, here, NOW).allowed
    wrong = verify(world.code(Group(far - 1, 3)), world.trust(), NO_REVOCATIONS, here, NOW)
    assert not wrong.allowed and wrong.reason == "wrong_site"


def test_65536_of_each_kind_fit_the_number_space() -> None:
    assert 65_536 * len(KINDS) <= MAX_SITE_NUMBER
    SiteSettings(number=MAX_SITE_NUMBER, name="last", kind=SiteKind.BUS)
    with pytest.raises(ValueError):
        SiteSettings(number=MAX_SITE_NUMBER + 1, name="beyond", kind=SiteKind.BUS)


def test_annual_sites_keep_the_old_bitmap_and_list_the_rest() -> None:
    # every pass whose sites are below 1,024 encodes exactly as before (old codes verify unchanged)
    assert encode_sites(frozenset({0, 7, 8, 1023})) == bytes([0x81, 0x01]) + bytes(125) + bytes([0x80])
    both = frozenset({1, 2, 1024, 70_000, MAX_SITE_NUMBER})
    assert encode_sites(both) == [b"\x06", [1024, 70_000, MAX_SITE_NUMBER]]
    assert decode_sites(encode_sites(both)) == both
    assert decode_sites([b"", [5000]]) == {5000}


@pytest.mark.parametrize("bad", [
    [b"\x02", []],                      # array form with nothing above the bitmap: the bitmap form is the one
    [b"\x02", [1023]],                  # a small site listed instead of set in the bitmap
    [b"\x02", [2000, 1500]],            # not ascending
    [b"\x02", [2000, 2000]],            # repeated
    [b"\x02", [MAX_SITE_NUMBER + 1]],   # beyond the number space
    [b"\x02", [True]],
    [b"\x02"],
    b"",
    bytes(129),
    "sites",
])
def test_malformed_site_sets_are_refused(bad: object) -> None:
    with pytest.raises(FormatError):
        decode_sites(bad)


def test_a_code_with_a_large_site_survives_the_cbor_round_trip() -> None:
    cred = Credential(bytes(8), Annual(frozenset({3, 123_456})), NOW, NOW + 10)
    assert Credential.from_claims(decode_cbor(encode_cbor(cred.to_claims()))) == cred
    assert BITMAP_SITES == 1024


def test_a_gate_ledger_installs_a_70000_site_snapshot_and_finds_its_site(tmp_path: Path) -> None:
    from citypass.credential.snapshot import LedgerSnapshot
    from citypass.gate.decision import GateContext, decide
    from citypass.gate.ledger import GateLedger

    world = World()
    sites = tuple(city_of_70000())
    trust = world.trust()
    data = LedgerSnapshot(1, NOW - 60, trust, trust.sign(world.root), sites, frozenset(), frozenset(),
                          world.root.public).sign(world.ledger)
    with GateLedger.open(tmp_path / "gate.sqlite3", root=world.root.public) as ledger:
        ledger.load_snapshot(data)
        here = ledger.site(70_000)
        assert here is not None and here.name == "site-70000" and ledger.site("site-69999").number == 69_999
        assert ledger.site("spot-3").title_en == "Spot 3" and ledger.site(70_001) is None
        decision = decide(world.code(Group(70_000, 2)), ledger, GateContext("g", here), NOW)
        assert decision.allowed and decision.persons == 2


@pytest.mark.slow
def test_a_one_site_change_in_a_70000_site_city_travels_as_a_small_delta(tmp_path: Path) -> None:
    """Deltas carry only the sites that changed: one edit is a few hundred bytes, not the 2.5 MB table (over the
    broker's 1 MiB packet), a burst of edits pages under the budget, and a gate that applies them ends with the
    site table a fresh snapshot has."""
    from citypass.credential.cose import encode_cbor
    from citypass.credential.delta import load_delta
    from citypass.gate.ledger import GateLedger
    from citypass.issuer.deltas import SITE_UPDATE_BYTES, build_delta
    from citypass.issuer.home import IssuerHome
    from citypass.issuer.service import Issuer
    from citypass.sync.brokerconf import BrokerSettings

    def table(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:  # both sides store model_dump_json()
        return conn.execute("SELECT number, name, settings FROM sites ORDER BY number").fetchall()

    packet = BrokerSettings(port=1883).max_packet_size
    issuer = Issuer.init(IssuerHome(tmp_path / "issuer"), (), now=NOW)
    try:
        sites = city_of_70000()
        with issuer.store.write() as conn:  # the city's table in one statement (add_site is ~0.2 ms a site)
            conn.executemany("INSERT INTO sites (number, name, settings) VALUES (?, ?, ?)",
                             [(s.number, s.name, s.model_dump_json()) for s in sites])
        assert len(encode_cbor([s.to_cbor() for s in sites])) > packet
        with GateLedger.open(tmp_path / "gate.sqlite3", root=issuer.root_key().public) as gate:
            gate.load_snapshot(issuer.export(NOW))
            since = gate.seq
            assert since is not None
            # one site edited, one added: the delta names those two and nothing else
            edited = sites[41].model_copy(update={"capacity": 250, "title": "新标题"})
            issuer.store.update_site(edited, NOW + 1)
            issuer.add_site(SiteSettings(number=70_001, name="new-stop", kind=SiteKind.BUS), NOW + 1)
            delta = build_delta(issuer.store, since, NOW + 2)
            assert delta is not None and delta.sites is None
            assert [s.number for s in delta.site_updates] == [42, 70_001]
            signed = delta.sign(issuer.ledger_key())
            assert len(signed) < 1024, len(signed)
            gate.apply_delta(**load_delta(signed, gate.trust).ledger_arguments())
            assert gate.site(42) == edited and gate.site("new-stop") is not None
            assert table(gate.db.conn) == table(issuer.store.conn)  # what a fresh snapshot would install

            # 1,200 sites given long titles at once (~560 KB): more than one delta's budget, so the gate pages
            with issuer.store.exclusive():
                for s in sites[100:1300]:
                    issuer.store.update_site(s.model_copy(update={"title": "长" * 100, "title_en": "L" * 100}), NOW + 3)
            pages = 0
            while (page := build_delta(issuer.store, gate.seq or 0, NOW + 4, limit=20_000)) is not None:
                data = page.sign(issuer.ledger_key())
                assert len(data) < packet
                assert len(encode_cbor([s.to_cbor() for s in page.site_updates])) <= SITE_UPDATE_BYTES
                gate.apply_delta(**load_delta(data, gate.trust).ledger_arguments())
                pages += 1
            assert pages >= 2
            assert table(gate.db.conn) == table(issuer.store.conn)
            assert len(gate.sites()) == 70_001
    finally:
        issuer.close()
