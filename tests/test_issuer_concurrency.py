"""Reservations never overbook, also under concurrent requests against the served app."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from citypass.credential.codes import parse
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.databases import Databases

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path_factory.mktemp("concurrency") / "issuer", now=NOW, database=issuer_database()) as s:
        yield s


def _slot(served: ServedIssuer, capacity: int) -> str:
    with served.client("issuer") as issuer:
        response = issuer.post("/v1/venues/zhejiang-museum/slots",
                               json={"starts_at": NOW + 3600, "ends_at": NOW + 7200, "capacity": capacity})
        slot_id: str = response.json()["id"]
        return slot_id


def _storm(served: ServedIssuer, slot_id: str, requests: int, party: int) -> list[httpx.Response]:
    """``requests`` reservation requests released at the same instant, one connection each."""
    start = threading.Barrier(requests)
    clients = [served.client("issuer") for _ in range(requests)]

    def reserve(client: httpx.Client) -> httpx.Response:
        start.wait()
        return client.post("/v1/reservations", json={"slot_id": slot_id, "party": party})

    try:
        with ThreadPoolExecutor(requests) as pool:
            return list(pool.map(reserve, clients))
    finally:
        for client in clients:
            client.close()


def test_fifty_parallel_requests_for_five_places_give_exactly_five(served: ServedIssuer) -> None:
    slot_id = _slot(served, capacity=5)
    responses = _storm(served, slot_id, 50, party=1)
    assert Counter(r.status_code for r in responses) == {201: 5, 409: 45}
    for refused in (r for r in responses if r.status_code == 409):
        assert "place(s) left" in refused.json()["detail"]
    made = [r.json() for r in responses if r.status_code == 201]
    assert len({m["credential_id"] for m in made}) == 5
    assert all(parse(m["code"]).credential.id.hex() == m["credential_id"] for m in made)
    with served.client("auditor") as auditor:
        [slot] = [s for s in auditor.get("/v1/venues/zhejiang-museum/slots").json() if s["id"] == slot_id]
        assert (slot["booked"], slot["available"]) == (5, 0)
    made_ids = {m["id"] for m in made}
    assert {r.id for r in served.issuer.store.reservations(status="active", limit=10_000)} >= made_ids
    assert not [r for r in served.issuer.store.reservations(status="held", limit=10_000) if r.slot_id == slot_id]


def test_parties_racing_for_the_last_places_never_exceed_capacity(served: ServedIssuer, tmp_path: Path) -> None:
    slot_id = _slot(served, capacity=7)
    responses = _storm(served, slot_id, 20, party=3)
    assert Counter(r.status_code for r in responses) == {201: 2, 409: 18}  # 6 of 7 places: a party of 3 won't fit
    with served.client("issuer") as issuer:
        assert issuer.post("/v1/reservations", json={"slot_id": slot_id, "party": 1}).status_code == 201
        assert issuer.post("/v1/reservations", json={"slot_id": slot_id, "party": 1}).status_code == 409
        cancelled = next(r.json() for r in responses if r.status_code == 201)
        assert issuer.delete(f"/v1/reservations/{cancelled['id']}").status_code == 200
        again = _storm(served, slot_id, 10, party=3)
        assert Counter(r.status_code for r in again) == {201: 1, 409: 9}
