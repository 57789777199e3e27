"""The signed ledger over HTTP: a snapshot and deltas fetched from the served issuer, verified with the
credential package, and applied to a real gate ledger (GateLedger.apply_delta)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.credential.delta import DeltaError, LedgerDelta, load_delta, parse_delta
from citypass.credential.keys import SigningKey
from citypass.credential.snapshot import load_snapshot
from citypass.credential.trustlist import TrustList
from citypass.gate.ledger import GateLedger, SnapshotRefused
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.databases import Databases

NOW = 1_800_000_000


@pytest.fixture
def served(tmp_path: Path, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW, database=issuer_database()) as s:
        yield s


def _mint(served: ServedIssuer, n: int) -> list[str]:
    with served.client("issuer") as issuer:
        return [issuer.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}).json()["credential_id"]
                for _ in range(n)]


def _revoke(served: ServedIssuer, cred_id: str) -> None:
    with served.client("operator") as operator:
        assert operator.post("/v1/revocations", json={"credential_id": cred_id}).status_code == 201


def test_snapshot_then_deltas_bring_a_gate_ledger_up_to_date(served: ServedIssuer, tmp_path: Path) -> None:
    root = served.issuer.root_key().public
    ids = _mint(served, 4)
    holder = SigningKey.generate()
    with served.client(token=None) as anonymous:
        assert anonymous.get("/v1/ledger/snapshot").status_code == 401
    with served.client("technician") as client, GateLedger.open(tmp_path / "gate.sqlite3", root=root) as ledger:
        response = client.get("/v1/ledger/snapshot")
        assert response.status_code == 200 and response.headers["content-type"] == "application/cbor"
        snap = load_snapshot(response.content, root)
        assert snap.seq == int(response.headers["x-ledger-seq"]) and snap.root_pinned
        ledger.load_snapshot(response.content)
        assert ledger.seq == snap.seq
        assert client.get("/v1/ledger/deltas", params={"since": snap.seq}).status_code == 204

        _revoke(served, ids[0])
        _revoke(served, ids[1])
        with served.client("operator") as operator:
            operator.post("/v1/revocations", json={"holder_key": holder.public.pem().decode()})
        served.clock.now += 60
        response = client.get("/v1/ledger/deltas", params={"since": snap.seq})
        assert response.status_code == 200 and response.headers["content-type"] == "application/cbor"
        delta = load_delta(response.content, ledger.trust)
        assert (delta.base_seq, delta.seq, delta.issued_at) == (snap.seq, snap.seq + 3, served.clock.now)
        assert delta.revoked == {bytes.fromhex(ids[0]), bytes.fromhex(ids[1])} and len(delta.revoked_holders) == 1
        assert delta.sites is None
        ledger.apply_delta(**delta.ledger_arguments())
        assert ledger.seq == delta.seq and ledger.synced_at == served.clock.now
        assert ledger.is_revoked(bytes.fromhex(ids[0])) and not ledger.is_revoked(bytes.fromhex(ids[2]))
        assert ledger.is_holder_revoked(next(iter(delta.revoked_holders)))
        with pytest.raises(SnapshotRefused):  # the same delta again: the ledger is no longer at its base
            ledger.apply_delta(**delta.ledger_arguments())

        # A lifted revocation travels as "unrevoked"; revoked-then-lifted nets out the same way.
        with served.client("admin") as admin:
            assert admin.delete(f"/v1/revocations/{ids[0]}").status_code == 200
        _revoke(served, ids[3])
        with served.client("admin") as admin:
            admin.delete(f"/v1/revocations/{ids[3]}")
        delta = load_delta(client.get("/v1/ledger/deltas", params={"since": ledger.seq}).content, ledger.trust)
        assert delta.unrevoked == {bytes.fromhex(ids[0]), bytes.fromhex(ids[3])} and not delta.revoked
        ledger.apply_delta(**delta.ledger_arguments())
        assert not ledger.is_revoked(bytes.fromhex(ids[0])) and ledger.is_revoked(bytes.fromhex(ids[1]))
        assert client.get("/v1/ledger/deltas", params={"since": ledger.seq}).status_code == 204


def test_deltas_are_monotonic_pages_and_a_gate_catches_up_page_by_page(served: ServedIssuer, tmp_path: Path) -> None:
    root = served.issuer.root_key().public
    ids = _mint(served, 5)
    with served.client("auditor") as client, GateLedger.open(tmp_path / "gate.sqlite3", root=root) as ledger:
        ledger.load_snapshot(client.get("/v1/ledger/snapshot").content)
        for cred_id in ids:
            _revoke(served, cred_id)
        seqs = []
        while (response := client.get("/v1/ledger/deltas",
                                      params={"since": ledger.seq, "limit": 2})).status_code == 200:
            delta = load_delta(response.content, ledger.trust)
            assert delta.base_seq == ledger.seq and delta.seq - delta.base_seq <= 2
            ledger.apply_delta(**delta.ledger_arguments())
            seqs.append(delta.seq)
        assert response.status_code == 204
        assert seqs == sorted(seqs) and len(seqs) == 3 and all(ledger.is_revoked(bytes.fromhex(i)) for i in ids)


def test_a_snapshot_is_required_across_trust_changes_and_unknown_sequences(served: ServedIssuer) -> None:
    [cred] = _mint(served, 1)
    with served.client("issuer") as client, served.client("admin") as admin:
        seq = client.get("/v1/ledger").json()["seq"]
        _revoke(served, cred)
        admin.post("/v1/keys/rotate", json={})
        # The delta stops before the key change; from there on only a snapshot will do.
        delta, _ = parse_delta(client.get("/v1/ledger/deltas", params={"since": seq}).content)
        assert (delta.base_seq, delta.seq) == (seq, seq + 1)
        at_rotation = client.get("/v1/ledger/deltas", params={"since": seq + 1})
        assert at_rotation.status_code == 409 and "snapshot" in at_rotation.json()["detail"]
        ahead = client.get("/v1/ledger/deltas", params={"since": seq + 100})
        assert ahead.status_code == 409
        current = load_snapshot(client.get("/v1/ledger/snapshot").content, served.issuer.root_key().public)
        assert current.seq == seq + 2 and bytes.fromhex(cred) in current.revoked
        with served.client("issuer") as issuer:
            assert issuer.post("/v1/sites", json={"name": "xixi", "kind": "scenic"}).status_code == 201
        site_delta = load_delta(client.get("/v1/ledger/deltas", params={"since": current.seq}).content, current.trust)
        assert site_delta.sites is None and [s.name for s in site_delta.site_updates] == ["xixi"]


def test_deltas_refuse_tampering_and_foreign_keys(served: ServedIssuer) -> None:
    [cred] = _mint(served, 1)
    with served.client("issuer") as client:
        snap = load_snapshot(client.get("/v1/ledger/snapshot").content, served.issuer.root_key().public)
        _revoke(served, cred)
        data = client.get("/v1/ledger/deltas", params={"since": snap.seq}).content
    assert load_delta(data, snap.trust).revoked == {bytes.fromhex(cred)}
    for position in (len(data) - 1, len(data) // 2, 8):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises(DeltaError):
            load_delta(bytes(tampered), snap.trust)
    forged = LedgerDelta(snap.seq, snap.seq + 1, NOW, unrevoked=frozenset({bytes.fromhex(cred)}))
    with pytest.raises(DeltaError, match="ledger key"):
        load_delta(forged.sign(SigningKey.generate()), snap.trust)
    issuer_key = served.issuer.signing_key("issuer", next(k.entry.kid for k in served.issuer.store.keys()
                                                          if k.entry.role == "issuer"))
    with pytest.raises(DeltaError, match="ledger key"):  # right list, wrong role
        load_delta(forged.sign(issuer_key), snap.trust)
    stale = TrustList(1, 0, tuple(k for k in snap.trust.keys if k.role != "ledger"))
    with pytest.raises(DeltaError):
        load_delta(data, stale)
