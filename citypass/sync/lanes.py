"""Sibling taps on the wire: what one lane of a site tells the others, signed by its device key.

A lane publishes its admissions (and their annulments) on ``citypass/v1/site/N/lanes/D`` (QoS 1, not
retained; :func:`citypass.sync.topics.site_lanes`), and every lane of site N reads ``site/N/#``. The broker's
ACL lets only gate D, enrolled at site N, publish there; the payload is signed end to end with D's own device
key, so a compromised broker, bridge or service account cannot inject a sibling tap either (it could deny
visitors with one). The signer's certificate travels in the message (COSE ``x5chain``, RFC 9360) and is
verified against the device CA that every gate already holds for TLS.

One message, as CBOR (RFC 8949)::

    COSE_Sign1 = [ protected: bstr {1: -7 (ES256), 33: cert_der},  ; x5chain: the signer's certificate
                   unprotected: {},
                   payload: bstr,
                   signature: bstr (64: r || s) ]
    payload    = [ 1, "lanes", device: tstr, site: uint, sent_ms: uint, [ event, … ] ]
    event      = [ what: 0 tap | 1 annul, tap_id: tstr, credential_id: bstr, kind: 0 entry | 1 exit |
                   2 tap_in | 3 tap_out, persons: uint, at: uint, committed_ms: uint,
                   party: uint / null, product: uint / null, presentation_id: bstr / null ]

An annulment repeats its tap's id and kind; its ``persons`` are those given back and ``at`` is when.

>>> from pathlib import Path
>>> from citypass.sync.home import BrokerHome
>>> home = BrokerHome(Path("lanes-doc")).init()
>>> files = home.add_device_with_key("gate-m1", 3, Path("lanes-doc/keys"))
>>> tap = LaneTap("tap", "t-1", b"\\x01" * 8, "entry", 2, 1_800_000_000, 1_800_000_000_250, party=2, product=2)
>>> data = LaneSigner.from_files(files.key, files.cert).sign(LaneBatch("gate-m1", 3, 1_800_000_000_300, (tap,)))
>>> batch = LaneVerifier.from_file(files.ca).verify(data, device="gate-m1", site=3, now=1_800_000_001)
>>> batch.events == (tap,)
True
>>> LaneVerifier.from_file(files.ca).verify(data, device="gate-m2", site=3, now=1_800_000_001)
Traceback (most recent call last):
...
citypass.sync.lanes.LaneRefused: wrong_device: the message is gate-m1's, on gate-m2's topic
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from citypass.credential.claims import MAX_SITE_NUMBER
from citypass.credential.cose import FormatError, decode_cbor, encode_cbor, sig_structure
from citypass.credential.keys import Alg, SigningKey, VerifyKey
from citypass.errors import InvalidInput

VERSION = 1
LANES_TYPE = "lanes"
KINDS = ("entry", "exit", "tap_in", "tap_out")
WHAT = ("tap", "annul")
HEADER_ALG, HEADER_X5CHAIN = 1, 33
#: Most events in one message (a lane sends up to 50; a lane back from isolation sends its backlog in many).
MAX_EVENTS = 200
MAX_MESSAGE = 64 * 1024
_LIMITS = {"persons": 1000, "party": 1000, "product": 65_535, "at": 2**40, "committed_ms": 2**50, "sent_ms": 2**50,
           "site": MAX_SITE_NUMBER}


class LaneRefused(InvalidInput):
    """A sibling message that is refused. ``reason`` (the text before the colon) is what the gate counts:
    ``malformed``, ``bad_certificate``, ``bad_signature``, ``wrong_device`` or ``wrong_site``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class LaneTap:
    """One event a lane shares (see the module's layout)."""

    what: str
    tap_id: str
    credential_id: bytes
    kind: str
    persons: int
    at: int
    committed_ms: int
    party: int | None = None
    product: int | None = None
    presentation_id: bytes | None = None


@dataclass(frozen=True)
class LaneBatch:
    device: str
    site: int
    sent_ms: int
    events: tuple[LaneTap, ...]


def encode_payload(batch: LaneBatch) -> bytes:
    events = [[WHAT.index(e.what), e.tap_id, e.credential_id, KINDS.index(e.kind), e.persons, e.at, e.committed_ms,
               e.party, e.product, e.presentation_id] for e in batch.events]
    return encode_cbor([VERSION, LANES_TYPE, batch.device, batch.site, batch.sent_ms, events])


def _uint(value: Any, name: str, *, optional: bool = False, low: int = 0) -> Any:
    if optional and value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < _LIMITS.get(name, 2**63):
        raise LaneRefused("malformed", f"{name} is not an integer in range")
    return value


def _bytes(value: Any, name: str, *, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    if not isinstance(value, bytes) or not 0 < len(value) <= 64:
        raise LaneRefused("malformed", f"{name} must be 1..64 bytes")
    return value


def decode_payload(data: bytes) -> LaneBatch:
    try:
        obj = decode_cbor(data)
    except FormatError as exc:
        raise LaneRefused("malformed", str(exc)) from None
    if not isinstance(obj, list) or len(obj) != 6 or obj[0] != VERSION or obj[1] != LANES_TYPE:
        raise LaneRefused("malformed", f"not a version {VERSION} lanes payload")
    _, _, device, site, sent_ms, rows = obj
    if not isinstance(device, str) or not 0 < len(device) <= 64:
        raise LaneRefused("malformed", "device must be a short text")
    if not isinstance(rows, list) or len(rows) > MAX_EVENTS:
        raise LaneRefused("malformed", f"at most {MAX_EVENTS} events")
    events = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 10:
            raise LaneRefused("malformed", "an event has 10 fields")
        what, tap_id, cred, kind, persons, at, committed, party, product, pid = row
        if not isinstance(tap_id, str) or not 0 < len(tap_id) <= 64:
            raise LaneRefused("malformed", "tap_id must be a short text")
        events.append(LaneTap(
            WHAT[_index(what, WHAT)], tap_id, _bytes(cred, "credential_id"), KINDS[_index(kind, KINDS)],
            _uint(persons, "persons", low=1), _uint(at, "at"), _uint(committed, "committed_ms"),
            _uint(party, "party", optional=True, low=1), _uint(product, "product", optional=True, low=1),
            _bytes(pid, "presentation_id", optional=True)))
    return LaneBatch(device, _uint(site, "site"), _uint(sent_ms, "sent_ms"), tuple(events))


def _index(value: Any, names: tuple[str, ...]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(names):
        raise LaneRefused("malformed", f"{value!r} is not an index into {names}")
    return value


class LaneSigner:
    """Signs this lane's messages with its device key (EC P-256, the key its TLS certificate is for)."""

    def __init__(self, key: SigningKey, cert_der: bytes) -> None:
        if key.alg is not Alg.ES256:
            raise InvalidInput("a lane signs with its P-256 device key")
        self.key, self.cert_der = key, cert_der
        self.protected = encode_cbor({HEADER_ALG: int(Alg.ES256), HEADER_X5CHAIN: cert_der})

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path) -> LaneSigner:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return cls(SigningKey.from_pem(key_path.read_bytes()), cert.public_bytes(Encoding.DER))

    def sign(self, batch: LaneBatch) -> bytes:
        payload = encode_payload(batch)
        signature = self.key.sign(sig_structure(self.protected, payload))
        return encode_cbor([self.protected, {}, payload, signature])


class LaneVerifier:
    """Verifies siblings' messages against the device CA. Certificates that verified are remembered (by their
    bytes) until they expire, so a steady stream of messages costs one signature check each."""

    def __init__(self, ca: x509.Certificate, cache_size: int = 256) -> None:
        self.ca = ca
        self.store = Store([ca])
        self.cache_size = cache_size
        self._known: OrderedDict[bytes, tuple[str, VerifyKey, float]] = OrderedDict()

    @classmethod
    def from_file(cls, ca_path: Path) -> LaneVerifier:
        return cls(x509.load_pem_x509_certificate(ca_path.read_bytes()))

    def verify(self, data: bytes, *, device: str, site: int, now: float) -> LaneBatch:
        """The batch in ``data`` if it is signed by ``device``'s certificate from our CA and is for ``site``
        (the topic's device and site); :class:`LaneRefused` otherwise."""
        if len(data) > MAX_MESSAGE:
            raise LaneRefused("malformed", "message too large")
        try:
            obj = decode_cbor(data)
            if not isinstance(obj, list) or len(obj) != 4 or obj[1] != {}:
                raise LaneRefused("malformed", "not a COSE_Sign1 with an empty unprotected header")
            protected, _, payload, signature = obj
            header = decode_cbor(protected) if isinstance(protected, bytes) else None
        except FormatError as exc:
            raise LaneRefused("malformed", str(exc)) from None
        if (not isinstance(header, dict) or set(header) != {HEADER_ALG, HEADER_X5CHAIN}
                or header[HEADER_ALG] != int(Alg.ES256) or not isinstance(header[HEADER_X5CHAIN], bytes)
                or not isinstance(payload, bytes) or not isinstance(signature, bytes)):
            raise LaneRefused("malformed", "the protected header must hold exactly alg ES256 and x5chain")
        signer, key = self._certificate(header[HEADER_X5CHAIN], now)
        if not key.verify(signature, sig_structure(protected, payload)):
            raise LaneRefused("bad_signature", f"not signed by the key of {signer}'s certificate")
        batch = decode_payload(payload)
        if signer != device or batch.device != device:
            raise LaneRefused("wrong_device", f"the message is {signer}'s, on {device}'s topic")
        if batch.site != site:
            raise LaneRefused("wrong_site", f"{device} speaks for site {batch.site}, not {site}")
        return batch

    def _certificate(self, der: bytes, now: float) -> tuple[str, VerifyKey]:
        digest = hashlib.sha256(der).digest()
        known = self._known.get(digest)
        if known is not None and now < known[2]:
            self._known.move_to_end(digest)
            return known[0], known[1]
        try:
            cert = x509.load_der_x509_certificate(der)
            at = dt.datetime.fromtimestamp(now, dt.UTC)
            PolicyBuilder().store(self.store).time(at).build_client_verifier().verify(cert, [])
        except (ValueError, VerificationError) as exc:
            raise LaneRefused("bad_certificate", f"not a valid certificate from the device CA: {exc}") from None
        units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        public = cert.public_key()
        if units != ["device"] or len(names) != 1 or not isinstance(public, ec.EllipticCurvePublicKey) \
                or not isinstance(public.curve, ec.SECP256R1):
            raise LaneRefused("bad_certificate", "not a gate's P-256 device certificate")
        entry = (str(names[0]), VerifyKey(Alg.ES256, public), cert.not_valid_after_utc.timestamp())
        self._known[digest] = entry
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)
        return entry[0], entry[1]
