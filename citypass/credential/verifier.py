"""Offline verification of a code: a pure function of (text, trust list, revocation view, site, now).

:func:`verify` answers whether a code is *authentic and applicable here and now*: well formed, signed by
a trusted key within its validity and scope, not revoked, presented correctly (dynamic when it must
be, fresh, not replayed), for this site, inside its validity. It never raises on any input and never
touches a clock, a file or a network: ``now`` is an argument and the revocation view is whatever the
caller gives (a snapshot in memory, the gate's SQLite ledger).

Usage rules that need history — party sizes consumed, anti-passback, metro tap-in/tap-out, capacity,
opening hours — and the gate's own degraded conditions live in the gate's decision core, which calls
this first.

Checks run in a fixed order, so a code gets the most fundamental reason that applies: form, key,
signature, key validity, product, scope, revocation, holder binding, site, validity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from citypass.credential.claims import Annual, Credential, Group, Reservation, Transit, UnknownTerms
from citypass.credential.codes import CodeError, ParsedCode, parse
from citypass.credential.policy import VerifyPolicy
from citypass.credential.reasons import Reason
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustedKey, TrustList


class RevocationView(Protocol):
    """What verification needs to know beyond the code: revocations and seen presentations."""

    def is_revoked(self, credential_id: bytes) -> bool: ...

    def is_holder_revoked(self, holder_id: bytes) -> bool: ...

    def presentation_seen(self, presentation_id: bytes) -> bool: ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`verify`."""

    allowed: bool
    reason: Reason | None
    detail: str = ""
    parsed: ParsedCode | None = None
    key: TrustedKey | None = None
    #: the credential's or its key's validity start was judged with the clock leeway (``VerifyPolicy.leeway_s``)
    leeway: bool = False

    @property
    def credential(self) -> Credential | None:
        return self.parsed.credential if self.parsed else None

    @property
    def presentation_id(self) -> bytes | None:
        """Replay-cache key of a dynamic presentation: credential id and generation time. Deliberately
        not a hash of the bytes: an ECDSA signature can be re-encoded as (r, n-s) without the key,
        which would make a copied presentation look new."""
        if self.parsed is None or self.parsed.generated_at is None:
            return None
        return presentation_id(self.parsed.credential.id, self.parsed.generated_at)


def presentation_id(credential_id: bytes, generated_at: int) -> bytes:
    return credential_id + generated_at.to_bytes(4, "big")


def _deny(reason: Reason, detail: str, parsed: ParsedCode | None = None, key: TrustedKey | None = None) -> Verdict:
    return Verdict(False, reason, detail, parsed, key)


def verify(
    text: str,
    trust: TrustList,
    view: RevocationView,
    site: SiteSettings,
    now: int,
    policy: VerifyPolicy = VerifyPolicy(),
) -> Verdict:
    """Verify ``text`` for presentation at ``site`` at Unix time ``now``. Never raises."""
    try:
        parsed = parse(text)
    except CodeError as exc:
        return _deny(exc.reason, exc.detail)
    cred = parsed.credential

    key = trust.find(parsed.sign1.kid, role="issuer")
    if key is None:
        return _deny(Reason.UNKNOWN_KEY, f"no issuer key with kid {parsed.sign1.kid.hex()}", parsed)
    if not parsed.sign1.verify(key.key):
        return _deny(Reason.BAD_SIGNATURE, "issuer signature does not verify", parsed, key)
    if now + policy.leeway_s < key.valid_from:
        return _deny(Reason.KEY_NOT_YET_VALID, "issuer key is not valid yet", parsed, key)
    leeway = now < key.valid_from
    if key.valid_to is not None and now >= key.valid_to:
        return _deny(Reason.KEY_RETIRED, "issuer key was retired", parsed, key)
    if isinstance(cred.terms, UnknownTerms):
        return _deny(Reason.UNKNOWN_PRODUCT, f"product kind {cred.product} is not supported", parsed, key)
    if not key.in_scope(cred.product, site.number) or not _sites_in_scope(cred, key):
        return _deny(Reason.KEY_OUT_OF_SCOPE, "issuer key may not sign this product or site", parsed, key)

    if view.is_revoked(cred.id):
        return _deny(Reason.REVOKED, "credential id is revoked", parsed, key)
    if cred.holder is not None and view.is_holder_revoked(cred.holder.holder_id):
        return _deny(Reason.HOLDER_REVOKED, "holder key is revoked", parsed, key)

    holder_denial = _check_holder(parsed, trust, view, now, policy)
    if holder_denial is not None:
        return _deny(holder_denial[0], holder_denial[1], parsed, key)

    place_denial = _check_place(cred, site) or _check_time(cred, now, policy.leeway_s)
    if place_denial is not None:
        return _deny(place_denial[0], place_denial[1], parsed, key)
    leeway = leeway or (cred.valid_from is not None and not isinstance(cred.terms, Reservation)
                        and now < cred.valid_from)
    return Verdict(True, None, "", parsed, key, leeway)


def _sites_in_scope(cred: Credential, key: TrustedKey) -> bool:
    named = cred.sites()
    return key.sites is None or named is None or named <= key.sites


def _check_holder(
    parsed: ParsedCode, trust: TrustList, view: RevocationView, now: int, policy: VerifyPolicy
) -> tuple[Reason, str] | None:
    cred = parsed.credential
    if not parsed.dynamic:
        if cred.holder is not None:
            return Reason.DYNAMIC_REQUIRED, "holder-bound credential shown as a static code"
        if cred.product in trust.require_dynamic:
            return Reason.DYNAMIC_REQUIRED, "this product must be shown as a dynamic code"
        return None
    if cred.holder is None:
        return Reason.MALFORMED_CODE, "dynamic presentation of a credential without a holder key"
    if not parsed.holder_signature_valid():
        return Reason.BAD_HOLDER_SIGNATURE, "holder signature does not verify"
    assert parsed.generated_at is not None
    if parsed.generated_at > now + policy.skew_s:
        return Reason.PRESENTATION_FROM_FUTURE, f"generated {parsed.generated_at - now}s in the future"
    if parsed.generated_at < now - policy.window_s - policy.skew_s:
        return Reason.PRESENTATION_EXPIRED, f"generated {now - parsed.generated_at}s ago"
    if view.presentation_seen(presentation_id(cred.id, parsed.generated_at)):
        return Reason.REPLAYED_PRESENTATION, "this presentation was already used"
    return None


def _check_place(cred: Credential, site: SiteSettings) -> tuple[Reason, str] | None:
    t = cred.terms
    if isinstance(t, Transit):
        mode = site.kind.transit_mode
        if mode is None:
            return Reason.WRONG_SITE, f"transit credential at a {site.kind} site"
        if mode not in t.modes:
            return Reason.MODE_NOT_ALLOWED, f"{site.kind} is not among {t.modes.names()}"
        return None
    named = cred.sites()
    if named is None or site.number not in named:
        return Reason.WRONG_SITE, f"site {site.number} is not named by this credential"
    return None


def _check_time(cred: Credential, now: int, leeway_s: int) -> tuple[Reason, str] | None:
    t = cred.terms
    if isinstance(t, Reservation):
        grace = t.grace_minutes * 60
        assert cred.valid_from is not None and cred.valid_to is not None
        if now < cred.valid_from - grace:
            return Reason.SLOT_NOT_STARTED, "before the reservation's entry window"
        if now > cred.valid_to + grace:
            return Reason.SLOT_ENDED, "after the reservation's entry window"
        return None
    if cred.valid_from is not None and now + leeway_s < cred.valid_from:
        return Reason.NOT_YET_VALID, "before the credential's validity (beyond the clock leeway)"
    if cred.valid_to is not None and now >= cred.valid_to:
        return Reason.EXPIRED, "after the credential's validity"
    return None


__all__ = ["Annual", "Group", "RevocationView", "Verdict", "VerifyPolicy", "presentation_id", "verify"]
