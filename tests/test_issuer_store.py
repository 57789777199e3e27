"""The issuer's repository: SQLite schema versions and upgrades; on both backends the change log behind deltas,
booking under contention from two stores (two processes), tokens stored hashed; and the delta wire format."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlite_utils

from citypass.credential.cose import encode_cbor, sign1
from citypass.credential.delta import DeltaError, LedgerDelta, load_delta, parse_delta
from citypass.credential.keys import SigningKey
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.credential.trustlist import TrustedKey, TrustList
from citypass.issuer.backends import open_store
from citypass.issuer.deltas import SnapshotRequired, build_delta
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Conflict, NotFound, Slot, SlotFull
from citypass.issuer.repository import IssuerRepository
from citypass.issuer.service import Issuer
from citypass.issuer.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION, StoreSchemaError
from citypass.issuer.store import IssuerStore
from citypass.issuer.tokens import authenticate, create_token, hash_secret
from tests.helpers.databases import Databases

NOW = 1_800_000_000


def _v1_file(path: Path) -> None:
    """An issuer.db exactly as the first release wrote it, with some history."""
    db = sqlite_utils.Database(path)
    MIGRATIONS[0](db)
    db.table("meta").upsert({"key": "schema_version", "value": "1"}, pk="key")
    db.table("meta").upsert({"key": "ledger_seq", "value": "5"}, pk="key")
    db.table("revocations").insert({"id": "aa" * 8, "revoked_at": NOW, "reason": "old"})
    db.table("sites").insert({"number": 1, "name": "west-lake",
                              "settings": SiteSettings(number=1, name="west-lake").model_dump_json()})
    db.close()


def test_a_first_release_store_upgrades_in_place_and_deltas_start_at_its_sequence(tmp_path: Path) -> None:
    path = tmp_path / "issuer.db"
    _v1_file(path)
    store = IssuerStore(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 7
        assert store.ledger_seq() == 5 and store.changes_logged_from() == 5
        assert list(store.revoked_ids()) == [b"\xaa" * 8] and [s.name for s in store.sites()] == ["west-lake"]
        assert store.revoke(b"\xbb" * 8, NOW + 1) and store.ledger_seq() == 6
        delta = build_delta(store, 5, NOW + 2)
        assert delta is not None and delta.revoked == {b"\xbb" * 8} and (delta.base_seq, delta.seq) == (5, 6)
        with pytest.raises(SnapshotRequired):
            build_delta(store, 4, NOW + 2)  # before the log existed
    finally:
        store.close()
    again = IssuerStore(path)  # opening an up-to-date file changes nothing
    assert again.schema_version() == SCHEMA_VERSION and again.ledger_seq() == 6
    again.close()


def test_a_store_from_newer_software_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "issuer.db"
    IssuerStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreSchemaError, match="newer"):
        IssuerStore(path)


def test_an_issuer_home_from_init_serves_and_every_ledger_change_is_logged(tmp_path: Path,
                                                                         issuer_database: Databases) -> None:
    issuer = Issuer.init(IssuerHome(tmp_path / "home"), [("west-lake", "scenic")], now=NOW,
                         database=issuer_database())
    store = issuer.store
    kinds = [c.kind for c in store.changes_since(0, 100)]
    assert kinds == ["site", "trust", "trust"] and store.ledger_seq() == 3
    issuer.revoke("00112233", NOW)
    issuer.add_site(SiteSettings(number=2, name="lingyin"), NOW)
    issuer.rotate(NOW)
    assert [c.kind for c in store.changes_since(3, 100)] == ["revoke", "site", "trust"]
    assert [c.seq for c in store.changes_since(0, 100)] == list(range(1, 7))
    assert [c.ref for c in store.changes_since(0, 100, kinds=("site",))] == ["west-lake", "lingyin"]
    with pytest.raises(Conflict):
        store.add_site(SiteSettings(number=3, name="lingyin"), NOW)
    issuer.close()


def test_booking_from_two_stores_on_one_file_never_overbooks(tmp_path: Path, issuer_database: Databases) -> None:
    """Two stores are two sets of connections, like two server processes: BEGIN IMMEDIATE (SQLite), the slot's row
    lock (PostgreSQL) holds."""
    home = IssuerHome(tmp_path)
    url = issuer_database()
    stores = [open_store(home, url), open_store(home, url)]
    stores[0].add_slot(Slot("s_000000000001", 1, NOW, NOW + 3600, 10, 0, NOW))
    outcomes: list[str] = []
    lock = threading.Lock()

    def book(store: IssuerRepository, n: int) -> None:
        try:
            result = store.hold_places(f"r_{n:016x}", "s_000000000001", 1, NOW).id
        except SlotFull:
            result = "full"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=book, args=(stores[i % 2], i)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [o for o in outcomes if o != "full"]
    assert len(held) == 10 and outcomes.count("full") == 30
    assert stores[1].slot("s_000000000001").booked == 10
    stores[0].release_reservation(held[0])
    assert stores[1].slot("s_000000000001").booked == 9
    with pytest.raises(NotFound):
        stores[0].hold_places("r_x", "s_missing", 1, NOW)
    for store in stores:
        store.close()


def test_tokens_are_stored_hashed_and_compared_whole(tmp_path: Path, issuer_database: Databases) -> None:
    store = open_store(IssuerHome(tmp_path), issuer_database())
    issued = create_token(store, "operator", NOW, label="desk 3")
    record = store.token(issued.record.id)
    assert record is not None and record.secret_hash == hash_secret(issued.text) != issued.text.encode()
    assert authenticate(store, issued.text) == record
    assert authenticate(store, issued.text[:-1] + ("A" if issued.text[-1] != "A" else "B")) is None
    assert authenticate(store, "cpt_" + issued.record.id) is None and authenticate(store, "") is None
    with pytest.raises(ValueError, match="role"):
        create_token(store, "root", NOW)
    with pytest.raises(ValueError, match="device"):
        create_token(store, "device", NOW)
    store.revoke_token(issued.record.id, NOW)
    assert authenticate(store, issued.text) is None
    store.close()


# -- the delta wire format --------------------------------------------------------------------------
def _trust(ledger: SigningKey, valid_to: int | None = None) -> TrustList:
    return TrustList(1, 0, (TrustedKey(ledger.kid, ledger.public, "ledger", NOW - 10, valid_to),))


def test_delta_round_trip_and_gate_arguments() -> None:
    key = SigningKey.generate()
    sites = (SiteSettings(number=1, name="west-lake", kind=SiteKind.SCENIC),)
    delta = LedgerDelta(3, 7, NOW, revoked=frozenset({b"\x01" * 8}), unrevoked=frozenset({b"\x02"}),
                        revoked_holders=frozenset({b"\x03" * 16}), sites=sites)
    data = delta.sign(key)
    assert load_delta(data, _trust(key)) == delta
    assert parse_delta(data) == (delta, key.kid)
    assert delta.ledger_arguments() == {
        "base_seq": 3, "seq": 7, "issued_at": NOW, "revoked": [b"\x01" * 8], "unrevoked": [b"\x02"],
        "revoked_holders": [b"\x03" * 16], "unrevoked_holders": [], "sites": sites, "site_updates": ()}
    assert data == delta.sign(key) or key.public.alg != -8  # Ed25519 and canonical CBOR: deterministic
    updates = (sites[0], SiteSettings(number=9, name="stop-9", kind=SiteKind.BUS))
    incremental = LedgerDelta(7, 8, NOW, site_updates=updates)
    assert load_delta(incremental.sign(key), _trust(key)) == incremental and not incremental.empty
    assert incremental.ledger_arguments()["site_updates"] == updates and "sites" not in incremental.payload()


@pytest.mark.parametrize("payload, message", [
    ({"v": 2, "base_seq": 1, "seq": 2, "issued_at": NOW}, "version 1"),
    ({"v": 1, "base_seq": 2, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": []}, "greater"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [b"\x01"], "unrevoked": [b"\x01"],
      "revoked_holders": [], "unrevoked_holders": []}, "both"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [b"\x01", b"\x01"], "unrevoked": [],
      "revoked_holders": [], "unrevoked_holders": []}, "distinct"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": ["text"], "unrevoked": [],
      "revoked_holders": [], "unrevoked_holders": []}, "byte strings"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [b"\x00" * 17], "unrevoked": [],
      "revoked_holders": [], "unrevoked_holders": []}, "1..16"),
    ({"v": 1, "base_seq": -1, "seq": 2, "issued_at": NOW}, "non-negative"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": [], "keys": []}, "unknown"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": [], "sites": [{"number": 1}]}, "sites"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": [], "site_updates": {"number": 1}}, "lists"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": [], "site_updates": [{"number": 2, "name": "b"}, {"number": 1, "name": "a"}]}, "ascending"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": [], "site_updates": [{"number": 1, "name": "a"}, {"number": 1, "name": "a"}]}, "once"),
    ({"v": 1, "base_seq": 1, "seq": 2, "issued_at": NOW, "revoked": [], "unrevoked": [], "revoked_holders": [],
      "unrevoked_holders": [], "sites": [], "site_updates": [{"number": 1, "name": "a"}]}, "not both"),
])
def test_malformed_deltas_are_refused_with_a_reason(payload: dict[object, object], message: str) -> None:
    key = SigningKey.generate()
    with pytest.raises(DeltaError, match=message):
        load_delta(sign1(key, encode_cbor(payload)), _trust(key))


def test_a_delta_signed_outside_its_key_validity_is_refused() -> None:
    key = SigningKey.generate()
    with pytest.raises(DeltaError, match="validity"):
        load_delta(LedgerDelta(1, 2, NOW + 100).sign(key), _trust(key, valid_to=NOW + 100))
    with pytest.raises(DeltaError, match="validity"):
        load_delta(LedgerDelta(1, 2, NOW - 11).sign(key), _trust(key))
    for junk in (b"", b"\xff", encode_cbor([1, 2, 3])):
        with pytest.raises(DeltaError):
            load_delta(junk, _trust(key))
