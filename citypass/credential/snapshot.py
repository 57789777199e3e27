"""Signed ledger snapshots: everything a gate needs to decide offline, in one file.

``citypass issuer export`` writes one; a gate loads it (and later receives deltas over MQTT). The chain
of trust is root key → trust list → ledger key → snapshot: the snapshot is a COSE_Sign1 by a key whose
role in the root-signed trust list is ``ledger``. The file also carries the root public key for
convenience; a gate that has a root key pinned (the daemon always does) ignores that copy and uses
its own, and :func:`load_snapshot` says which one it used.

File layout (CBOR map)::

    {"v": 1, "root": {"alg": -8, "pub": h'…'}, "snapshot": h'<COSE_Sign1 by the ledger key>'}

Snapshot payload (CBOR map)::

    {"v": 1, "seq": 42, "issued_at": 1767225600, "trust_list": h'<COSE_Sign1 by root>',
     "sites": [{…SiteSettings…}], "revoked": [h'<credential id>', …], "revoked_holders": [h'…', …]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from citypass.credential.cose import FormatError, decode_cbor, encode_cbor, parse_sign1, sign1
from citypass.credential.keys import Alg, SigningKey, VerifyKey
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustError, TrustList
from citypass.errors import InvalidInput

FORMAT_VERSION = 1


class SnapshotError(InvalidInput):
    """A snapshot that is malformed or whose signatures do not check out."""


@dataclass(frozen=True)
class LedgerSnapshot:
    seq: int
    issued_at: int
    trust: TrustList
    trust_signed: bytes
    sites: tuple[SiteSettings, ...]
    revoked: frozenset[bytes]
    revoked_holders: frozenset[bytes]
    root: VerifyKey
    root_pinned: bool = False

    def site(self, ref: str | int) -> SiteSettings | None:
        """Find a site by slug or number (a numeric string counts as a number)."""
        for s in self.sites:
            if s.name == ref or str(s.number) == str(ref):
                return s
        return None

    def sign(self, ledger_key: SigningKey) -> bytes:
        payload = {
            "v": FORMAT_VERSION, "seq": self.seq, "issued_at": self.issued_at, "trust_list": self.trust_signed,
            "sites": [s.to_cbor() for s in self.sites],
            "revoked": sorted(self.revoked), "revoked_holders": sorted(self.revoked_holders),
        }
        return encode_cbor({
            "v": FORMAT_VERSION,
            "root": {"alg": int(self.root.alg), "pub": self.root.raw},
            "snapshot": sign1(ledger_key, encode_cbor(payload)),
        })


def load_snapshot(data: bytes, root: VerifyKey | None = None) -> LedgerSnapshot:
    """Verify and parse a snapshot file's bytes. Pass ``root`` to pin the root key (recommended)."""
    try:
        outer = decode_cbor(data)
        if not isinstance(outer, dict) or outer.get("v") != FORMAT_VERSION:
            raise FormatError("not a version 1 City Pass snapshot")
        pinned = root is not None
        if root is None:
            embedded = outer["root"]
            root = VerifyKey.from_raw(Alg(embedded["alg"]), embedded["pub"])
        msg = parse_sign1(decode_cbor(outer["snapshot"]))
        payload = decode_cbor(msg.payload)
        if not isinstance(payload, dict) or payload.get("v") != FORMAT_VERSION:
            raise FormatError("snapshot payload is not version 1")
        trust = TrustList.verify(payload["trust_list"], root)
        ledger_key = trust.find(msg.kid, role="ledger")
        if ledger_key is None:
            raise SnapshotError("snapshot is signed by a key the trust list does not name as a ledger key")
        if not msg.verify(ledger_key.key):
            raise SnapshotError("snapshot signature is invalid")
        issued_at = int(payload["issued_at"])
        if issued_at < ledger_key.valid_from or (ledger_key.valid_to is not None and issued_at >= ledger_key.valid_to):
            raise SnapshotError("snapshot was signed outside its ledger key's validity")
        return LedgerSnapshot(
            seq=int(payload["seq"]), issued_at=issued_at, trust=trust, trust_signed=payload["trust_list"],
            sites=tuple(SiteSettings.model_validate(s) for s in payload["sites"]),
            revoked=frozenset(_bytes_list(payload["revoked"])),
            revoked_holders=frozenset(_bytes_list(payload["revoked_holders"])),
            root=root, root_pinned=pinned,
        )
    except TrustError as exc:
        raise SnapshotError(str(exc)) from None
    except (FormatError, KeyError, TypeError, ValueError, ValidationError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from None


def read_snapshot(path: Path, root: VerifyKey | None = None) -> LedgerSnapshot:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None
    return load_snapshot(data, root)


def _bytes_list(obj: Any) -> list[bytes]:
    if not isinstance(obj, list) or not all(isinstance(b, bytes) for b in obj):
        raise FormatError("expected a list of byte strings")
    return obj
