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

Codes of other formats (text that does not start ``CP1:``) go to the format that claims their prefix
(:mod:`citypass.credential.formats`, the ``citypass.formats`` entry-point group), which reads and
authenticates them and then hands the credential to the same checks (:func:`check_partner`,
:func:`finish`). A code signed by a partner platform admitted in the trust list
(:mod:`citypass.credential.partners`) is judged under that partner's scope; the verdict names the format
and the partner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from citypass.credential.claims import (
    Annual,
    Benefit,
    Credential,
    Event,
    Group,
    Reservation,
    Transit,
    UnknownTerms,
)
from citypass.credential.codes import CodeError, ParsedCode, parse
from citypass.credential.partners import MAX_PARTNER_CTI, Partner, PartnerKey, credential_id, revocation_id
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
    #: the credential format the code was read as (``cp1``, ``gm1``, …; see :mod:`citypass.credential.formats`)
    format: str = "cp1"
    #: the partner platform that signed it, when it is not our own issuer
    partner: Partner | None = None

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
    from citypass.credential.formats import format_for  # formats import this module

    fmt = format_for(text) if isinstance(text, str) else None
    if fmt is None or fmt.name == "cp1":
        return verify_cp1(text, trust, view, site, now, policy)
    try:
        return fmt.verify(text, trust, view, site, now, policy)
    except Exception as exc:  # a plug-in's bug must not stop the lane: the code is simply not admitted
        return Verdict(False, Reason.MALFORMED_CODE, f"{fmt.name}: {type(exc).__name__}", format=fmt.name)


def verify_cp1(
    text: str,
    trust: TrustList,
    view: RevocationView,
    site: SiteSettings,
    now: int,
    policy: VerifyPolicy = VerifyPolicy(),
) -> Verdict:
    """Verify a ``CP1:`` code (ours, or a partner's in our format). Never raises."""
    try:
        parsed = parse(text)
    except CodeError as exc:
        return _deny(exc.reason, exc.detail)
    cred = parsed.credential

    key = trust.find(parsed.sign1.kid, role="issuer")
    if key is None:
        found = trust.find_partner_key(parsed.sign1.kid)
        if found is not None:
            return _verify_partner_cp1(parsed, *found, view=view, trust=trust, site=site, now=now, policy=policy)
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

    return finish(parsed, trust, view, site, now, policy, key=key, leeway=leeway)


def finish(parsed: ParsedCode, trust: TrustList, view: RevocationView, site: SiteSettings, now: int,
           policy: VerifyPolicy, *, key: TrustedKey | None = None, leeway: bool = False, fmt: str = "cp1",
           partner: Partner | None = None) -> Verdict:
    """The checks every authenticated credential goes through, whatever its format: revocation, holder
    binding, site and validity. ``parsed`` is already authenticated and within its signer's scope."""
    cred = parsed.credential

    def deny(reason: Reason, detail: str) -> Verdict:
        return Verdict(False, reason, detail, parsed, key, format=fmt, partner=partner)

    if view.is_revoked(cred.id):
        return deny(Reason.REVOKED, "credential id is revoked")
    if cred.holder is not None and view.is_holder_revoked(cred.holder.holder_id):
        return deny(Reason.HOLDER_REVOKED, "holder key is revoked")

    holder_denial = _check_holder(parsed, trust, view, now, policy)
    if holder_denial is not None:
        return deny(*holder_denial)

    place_denial = _check_place(cred, site) or _check_time(cred, now, policy.leeway_s)
    if place_denial is not None:
        return deny(*place_denial)
    leeway = leeway or (cred.valid_from is not None and not isinstance(cred.terms, Reservation)
                        and now < cred.valid_from)
    return Verdict(True, None, "", parsed, key, leeway, fmt, partner)


def claim_names(cred: Credential) -> frozenset[str]:
    """The names (:data:`~citypass.credential.partners.CLAIM_NAMES`) of the claims ``cred`` asserts."""
    names = {n for n, v in (("nbf", cred.valid_from), ("exp", cred.valid_to), ("cnf", cred.holder)) if v is not None}
    t = cred.terms
    if isinstance(t, Annual):
        names |= {"sites"} | ({"passback"} if t.passback_minutes is not None else set())
    elif isinstance(t, Reservation):
        names |= {"site", "party", "grace"}
    elif isinstance(t, Transit):
        names |= {"account", "modes"}
    elif isinstance(t, Group):
        names |= {"site", "party"}
    elif isinstance(t, Benefit):
        names |= {"sites", "quota", "period", "category"}
    elif isinstance(t, Event):
        names |= {"sites"}
    return frozenset(names)


def check_partner(partner: Partner, cred: Credential, site: SiteSettings, view: RevocationView, now: int,
                  policy: VerifyPolicy) -> tuple[Reason, str] | None:
    """Whether ``partner`` (its signature already checked) may vouch for ``cred`` at ``site`` now."""
    if now + policy.leeway_s < partner.valid_from:
        return Reason.KEY_NOT_YET_VALID, f"partner {partner.id} is admitted only from {partner.valid_from}"
    if partner.valid_to is not None and now >= partner.valid_to:
        return Reason.KEY_RETIRED, f"partner {partner.id} was admitted until {partner.valid_to}"
    if view.is_revoked(revocation_id(partner.id)):
        return Reason.PARTNER_REVOKED, f"partner {partner.id} is revoked"
    if isinstance(cred.terms, UnknownTerms):
        return Reason.UNKNOWN_PRODUCT, f"product kind {cred.product} is not supported"
    if cred.product not in partner.products:
        return Reason.WRONG_PRODUCT, f"partner {partner.id} may not issue {cred.product_name}"
    if partner.sites is not None and site.number not in partner.sites:
        return Reason.WRONG_SITE, f"partner {partner.id}'s codes are not accepted at site {site.number}"
    named = cred.sites()
    if partner.sites is not None and named is not None and not named <= partner.sites:
        return Reason.KEY_OUT_OF_SCOPE, f"partner {partner.id} names sites outside its scope"
    extra = claim_names(cred) - partner.claims
    if extra:
        return Reason.KEY_OUT_OF_SCOPE, f"partner {partner.id} may not assert {sorted(extra)}"
    return None


def as_partner_credential(parsed: ParsedCode, partner: Partner) -> ParsedCode:
    """``parsed`` with its credential id put in the partner's namespace (:func:`partners.credential_id`)."""
    cred = replace(parsed.credential, id=credential_id(partner, parsed.credential.id))
    return replace(parsed, credential=cred)


def _verify_partner_cp1(parsed: ParsedCode, partner: Partner, pkey: PartnerKey, *, trust: TrustList,
                        view: RevocationView, site: SiteSettings, now: int, policy: VerifyPolicy) -> Verdict:
    def deny(reason: Reason, detail: str) -> Verdict:
        return Verdict(False, reason, detail, parsed, format="cp1", partner=partner)

    if "cp1" not in partner.formats:
        return deny(Reason.KEY_OUT_OF_SCOPE, f"partner {partner.id} may not issue CP1 codes")
    try:
        key = pkey.verify_key()
    except ValueError:
        return deny(Reason.UNKNOWN_KEY, f"partner {partner.id}'s key cannot be loaded")
    if not parsed.sign1.verify(key):
        return deny(Reason.BAD_SIGNATURE, f"partner {partner.id}'s signature does not verify")
    if len(parsed.credential.id) > MAX_PARTNER_CTI:
        return deny(Reason.MALFORMED_CODE, f"a partner's credential id is at most {MAX_PARTNER_CTI} bytes")
    denial = check_partner(partner, parsed.credential, site, view, now, policy)
    if denial is not None:
        return deny(*denial)
    return finish(as_partner_credential(parsed, partner), trust, view, site, now, policy, fmt="cp1",
                  partner=partner)


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


__all__ = ["Annual", "Group", "RevocationView", "Verdict", "VerifyPolicy", "check_partner", "claim_names", "finish",
           "presentation_id", "verify", "verify_cp1"]
