"""Only deterministic CBOR (RFC 8949 §4.2) is accepted: a genuine code, snapshot or sync message re-encoded in
another valid CBOR form (indefinite lengths, long-form lengths, unsorted keys) is refused, never verified."""

from __future__ import annotations

import base45
import cbor2
import pytest

from citypass.credential import NO_REVOCATIONS, verify
from citypass.credential.codes import PREFIX, decode_text
from citypass.credential.cose import FormatError, decode_cbor
from citypass.credential.snapshot import LedgerSnapshot, SnapshotError, load_snapshot
from citypass.sync import codec
from tests.helpers.codes import NOW, World

WORLD = World()


def _indefinite_array(items: list[bytes]) -> bytes:
    """A CBOR array of already-encoded items, with indefinite length (0x9f … 0xff)."""
    return b"\x9f" + b"".join(items) + b"\xff"


def _reencoded_code(code: str) -> str:
    """The same COSE_Sign1 (same protected header, payload and signature) as an indefinite-length array."""
    protected, unprotected, payload, signature = cbor2.loads(decode_text(code))
    raw = _indefinite_array([cbor2.dumps(protected), cbor2.dumps(unprotected), cbor2.dumps(payload),
                             cbor2.dumps(signature)])
    assert cbor2.loads(raw) == [protected, unprotected, payload, signature]  # the same item, other bytes
    return PREFIX + base45.b45encode(raw).decode()


def test_a_genuine_code_reencoded_with_indefinite_length_is_refused() -> None:
    site = WORLD.sites["scenic"]
    code = WORLD.annual()
    assert verify(code, WORLD.trust(), NO_REVOCATIONS, site, NOW).allowed
    verdict = verify(_reencoded_code(code), WORLD.trust(), NO_REVOCATIONS, site, NOW)
    assert not verdict.allowed and verdict.reason is not None and verdict.reason.value == "malformed_code"
    assert "deterministic" in verdict.detail


@pytest.mark.parametrize("raw", [
    "1817",        # 23 in a one-byte-longer form than needed
    "5f4101ff",    # an indefinite-length byte string
    "a202010102",  # map keys out of order: {2: 1, 1: 2}
    "a201010102",  # a repeated map key
    "fb4000000000000000",  # 2.0 as a double: the half float f94000 is the shortest form
])
def test_non_shortest_or_unsorted_forms_are_refused(raw: str) -> None:
    data = bytes.fromhex(raw)
    with pytest.raises(FormatError, match="deterministic"):
        decode_cbor(data)
    assert decode_cbor(bytes.fromhex("f94000")) == 2.0 and decode_cbor(bytes.fromhex("17")) == 23


def test_a_snapshot_reencoded_non_canonically_is_refused() -> None:
    trust = WORLD.trust()
    snap = LedgerSnapshot(seq=1, issued_at=NOW, trust=trust, trust_signed=trust.sign(WORLD.root),
                          sites=tuple(WORLD.sites.values()), revoked=frozenset({b"\x01" * 8}),
                          revoked_holders=frozenset(), root=WORLD.root.public)
    signed = snap.sign(WORLD.ledger)
    assert load_snapshot(signed, WORLD.root.public).seq == 1
    outer = cbor2.loads(signed)
    assert isinstance(outer, dict)
    # the same map, with the signed snapshot as an indefinite-length byte string of two chunks
    key = "snapshot"
    chunks = [cbor2.dumps(outer[key][:5]), cbor2.dumps(outer[key][5:])]
    items = b"".join(cbor2.dumps(k) + (b"\x5f" + b"".join(chunks) + b"\xff" if k == key else cbor2.dumps(v))
                     for k, v in sorted(outer.items(), key=lambda kv: cbor2.dumps(kv[0])))
    raw = bytes([0xA0 + len(outer)]) + items
    assert cbor2.loads(raw) == outer
    with pytest.raises(SnapshotError, match="deterministic"):
        load_snapshot(raw, WORLD.root.public)


def test_a_sync_message_reencoded_non_canonically_is_refused() -> None:
    data = codec.encode_request(7)
    assert codec.decode_request(data) == 7
    with pytest.raises(codec.CodecError, match="deterministic"):
        codec.decode_request(_indefinite_array([cbor2.dumps(1), cbor2.dumps(7)]))
