"""The fuzz targets: each takes arbitrary bytes and must either accept them or refuse them with the project's
own error — any other exception (or a hang, or a crash) is a bug that a crafted code, snapshot, delta, MQTT
message or tap upload could trigger at a gate or at the issuer.

=============  ===============================================================================================
``code``       a code's text (``citypass.credential.codes.parse``) and its verification against a trust list
``snapshot``   a signed ledger snapshot (``load_snapshot``) and a signed delta (``load_delta``)
``codec``      every sync message decoder (tap batch, ack, request, status, snapshot notice, time tick)
``tapbody``    an uploaded tap event's body, parsed and validated as ingest does (``parse_body``, ``prepare``)
=============  ===============================================================================================

Keys are derived from fixed seeds (:func:`fixed_world`), so seed inputs signed with them reach the code
behind the signature checks, and a corpus stays valid from run to run.

    >>> run("code", b"CP1:NOT A CODE")
    >>> sorted(TARGETS)
    ['code', 'codec', 'snapshot', 'tapbody']
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from citypass.credential import NO_REVOCATIONS, verify
from citypass.credential.claims import Annual, Credential
from citypass.credential.codes import issue, parse
from citypass.credential.delta import LedgerDelta, load_delta
from citypass.credential.keys import Alg, SigningKey
from citypass.credential.sites import SiteSettings
from citypass.credential.snapshot import LedgerSnapshot, load_snapshot
from citypass.credential.trustlist import TrustedKey, TrustList
from citypass.errors import CityPassError
from citypass.issuer.ingest import Uploader, parse_body, prepare
from citypass.issuer.records import TapEvent
from citypass.sync import codec

NOW = 1_800_000_000


@dataclass(frozen=True)
class FixedWorld:
    root: SigningKey
    issuer: SigningKey
    ledger: SigningKey
    trust: TrustList
    site: SiteSettings


@functools.cache
def fixed_world() -> FixedWorld:
    """Keys from fixed seeds (for fuzzing only: never use them for anything real)."""
    root, issuer, ledger = (SigningKey(Alg.EDDSA, Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32))
                            for n in (1, 2, 3))
    trust = TrustList(1, NOW, (TrustedKey(issuer.kid, issuer.public, "issuer", NOW - 86_400),
                               TrustedKey(ledger.kid, ledger.public, "ledger", NOW - 86_400)))
    return FixedWorld(root, issuer, ledger, trust, SiteSettings(number=1, name="west-lake"))


def _code(data: bytes) -> None:
    world = fixed_world()
    text = data.decode("utf-8", "replace")
    try:
        parse(text)
    except CityPassError:
        pass
    verdict = verify(text, world.trust, NO_REVOCATIONS, world.site, NOW)
    assert verdict.allowed or verdict.reason is not None  # a verdict always says why it denies


def _snapshot(data: bytes) -> None:
    world = fixed_world()
    try:
        load_snapshot(data, world.root.public)
    except CityPassError:
        pass
    try:
        load_delta(data, world.trust)
    except CityPassError:
        pass


def _codec(data: bytes) -> None:
    for decode in (codec.decode_taps, codec.decode_ack, codec.decode_request, codec.decode_status,
                   codec.decode_snapshot_notice):
        try:
            decoded = decode(data)
        except CityPassError:
            continue
        if isinstance(decoded, codec.TapBatch):  # what decodes must encode back to the same batch
            assert codec.decode_taps(codec.encode_taps(decoded.batch_id, decoded.events)) == decoded
    try:
        codec.verify_time(data, fixed_world().trust)
    except CityPassError:
        pass


def _tapbody(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    body, problem = parse_body(text)
    batch = prepare([TapEvent("e-1", "t-1", kind, body, 0) for kind in ("tap", "annul", "passage", "stage")],
                    Uploader("gate-a", 1, "entry"), {} if problem is None else {"e-1": problem},
                    party_of=lambda _: 3)
    for prepared in batch.events:
        assert (prepared.error is None) or prepared.tap is None
        json.loads(prepared.stored_body())  # whatever is stored is JSON


TARGETS: dict[str, Callable[[bytes], None]] = {"code": _code, "snapshot": _snapshot, "codec": _codec,
                                               "tapbody": _tapbody}


def run(name: str, data: bytes) -> None:
    """Feed ``data`` to target ``name``; returns, or raises the bug it found."""
    TARGETS[name](data)


def seeds() -> dict[str, dict[str, bytes]]:
    """Valid inputs for every target, signed with :func:`fixed_world`'s keys: the committed seed corpora."""
    world = fixed_world()
    code = issue(Credential(b"\x11" * 8, Annual(frozenset({1})), NOW - 86_400, NOW + 86_400), world.issuer)
    snapshot = LedgerSnapshot(seq=3, issued_at=NOW, trust=world.trust, trust_signed=world.trust.sign(world.root),
                              sites=(world.site,), revoked=frozenset({b"\x22" * 8}),
                              revoked_holders=frozenset({b"\x33" * 16}), root=world.root.public).sign(world.ledger)
    delta = LedgerDelta(base_seq=3, seq=4, issued_at=NOW, revoked=frozenset({b"\x44" * 8})).sign(world.ledger)
    body = {"gate_id": "gate-a", "site": 1, "direction": "entry", "decision": "allow", "reason": None, "flags": [],
            "credential_id": "1111111111111111", "product": 1, "persons": 1, "kind": "entry",
            "presentation_id": None, "at": NOW, "stages": {"decided": float(NOW)}}
    event = codec.Event("0190f1c2-7a3b-7c4d-8e5f-60718293a4b5", "t-1", "tap", json.dumps(body), NOW)
    return {
        "code": {"annual": code.encode()},
        "snapshot": {"snapshot": snapshot, "delta": delta},
        "codec": {"taps": codec.encode_taps(7, [event]), "ack": codec.encode_ack(7, [event.event_id], 1, 0, 0),
                  "request": codec.encode_request(3), "status": codec.encode_status(codec.Status(True, NOW, 3, 0)),
                  "notice": codec.encode_snapshot_notice(9), "time": codec.sign_time(world.ledger, NOW * 1000, 3)},
        "tapbody": {"tap": json.dumps(body).encode(), "annul": b'{"persons_unused": 1, "at": 1800000000}'},
    }
