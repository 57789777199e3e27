"""The City Pass credential format, shared by the issuer, the gates and the holder tools.

Nothing in this package does I/O beyond reading and writing key files on request: it encodes, signs,
parses and verifies. See docs/credential-format.md for the wire format.

Example — issue a static annual pass and verify it offline::

    >>> from citypass.credential import *
    >>> issuer = SigningKey.generate()
    >>> cred = Credential(id=bytes(8), terms=Annual(sites=frozenset({1, 2})), valid_from=0, valid_to=2**31)
    >>> code = issue(cred, issuer)
    >>> trust = TrustList(1, 0, (TrustedKey(issuer.kid, issuer.public, "issuer", 0),))
    >>> verify(code, trust, NO_REVOCATIONS, SiteSettings(number=1, name="west-lake"), now=1_800_000_000).allowed
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citypass.lazy import lazy_exports

if TYPE_CHECKING:
    from citypass.credential.claims import (
        Annual,
        Benefit,
        Category,
        Credential,
        Group,
        HolderKey,
        Mode,
        Period,
        Product,
        Reservation,
        Terms,
        Transit,
        UnknownTerms,
    )
    from citypass.credential.codes import PREFIX, CodeError, ParsedCode, issue, parse, present
    from citypass.credential.keys import Alg, SigningKey, VerifyKey
    from citypass.credential.policy import VerifyPolicy
    from citypass.credential.reasons import Reason
    from citypass.credential.revocations import NO_REVOCATIONS, RevocationSet
    from citypass.credential.sites import SiteKind, SiteSettings
    from citypass.credential.snapshot import LedgerSnapshot, SnapshotError, load_snapshot, read_snapshot
    from citypass.credential.trustlist import TrustedKey, TrustError, TrustList
    from citypass.credential.verifier import RevocationView, Verdict, verify
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "claims": [
            "Annual", "Benefit", "Category", "Credential", "Group", "HolderKey", "Mode", "Period", "Product",
            "Reservation", "Terms", "Transit", "UnknownTerms",
        ],
        "codes": ["PREFIX", "CodeError", "ParsedCode", "issue", "parse", "present"],
        "keys": ["Alg", "SigningKey", "VerifyKey"],
        "reasons": ["Reason"],
        "revocations": ["NO_REVOCATIONS", "RevocationSet"],
        "sites": ["SiteKind", "SiteSettings"],
        "snapshot": ["LedgerSnapshot", "SnapshotError", "load_snapshot", "read_snapshot"],
        "trustlist": ["TrustedKey", "TrustError", "TrustList"],
        "policy": ["VerifyPolicy"],
        "verifier": ["RevocationView", "Verdict", "verify"],
    })

__all__ = [
    "NO_REVOCATIONS", "PREFIX", "Alg", "Annual", "Benefit", "Category", "CodeError", "Credential", "Group",
    "HolderKey", "LedgerSnapshot", "Mode", "ParsedCode", "Period", "Product", "Reason", "Reservation",
    "RevocationSet", "RevocationView", "SigningKey", "SiteKind", "SiteSettings", "SnapshotError", "Terms", "Transit",
    "TrustError", "TrustList", "TrustedKey", "UnknownTerms", "Verdict", "VerifyKey", "VerifyPolicy", "issue",
    "load_snapshot", "parse", "present", "read_snapshot", "verify",
]
