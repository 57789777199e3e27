"""The benefit card (文旅惠民卡) at the centre: minting, the city-wide count, bookings, over-quota incidents.

Gates decide offline (:mod:`citypass.credential.benefit` states the rule and its bound); the issuer keeps
the count that makes the quota hold across the city:

* every admitted tap of a benefit card that reaches the issuer (:func:`count_taps`, called by ingest) and
  every benefit slot booked online (:func:`book`) is one row of ``benefit_uses``, counted once by its ref;
* when a card's count in a period reaches ``k`` the issuer revokes the mark ``used_mark(card, period, k)``
  for each ``k`` not yet marked, so the next signed ledger delta tells every gate the count;
* a use counted beyond the quota (gates offline, or racing within the sync lag) is an incident of kind
  ``benefit_over_quota`` (:func:`over_quota_incidents`), listed with the others in the incidents report.

Categories (resident, senior, student) are on the card and, optionally, on a transit credential; the fare
multiplier per category is :data:`citypass.issuer.journeys.CONCESSION` (concession fares).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from citypass.credential.benefit import period_start, remaining_text, used_mark
from citypass.credential.claims import Benefit, Category, Credential, Period, Product
from citypass.credential.codes import parse
from citypass.credential.keys import VerifyKey
from citypass.errors import Conflict, InvalidInput
from citypass.issuer.incidents import Incident
from citypass.issuer.records import BenefitUse
from citypass.issuer.tap_records import ENTRY, TapRecord

if TYPE_CHECKING:
    from citypass.issuer.repository import BenefitRepository, LedgerRepository
    from citypass.issuer.service import Issuer, Order

    class BenefitStore(BenefitRepository, LedgerRepository, Protocol):
        """What the count needs: the uses table, issued credentials' details, revocations (the marks)."""

#: Time zone of the quota periods: the city's (UTC+8), the same the gates use for their sites by default.
UTC_OFFSET_MINUTES = 480
BENEFIT = int(Product.BENEFIT)


class BenefitError(InvalidInput):
    """A benefit request the issuer refuses."""


class QuotaExhausted(Conflict):
    """No uses left on the card this period."""


def order(issuer: Issuer, sites: Sequence[str], quota: int, now: int, *, period: Period = Period.MONTH,
          category: Category = Category.RESIDENT, valid_to: int | None = None) -> Order:
    """A benefit card's terms and validity (default: a year), checked against the issuer's sites, not yet signed."""
    from citypass.issuer.service import Order  # the service's module imports ingest, which imports this one

    if not sites or not 1 <= quota <= 255:
        raise BenefitError("a benefit card needs at least one site and a quota of 1..255")
    terms = Benefit(frozenset(issuer.site_number(s) for s in sites), quota, period, category)
    return Order(terms, now, valid_to if valid_to is not None else now + 365 * 86_400)


def mint(issuer: Issuer, sites: Sequence[str], quota: int, holder: VerifyKey, now: int, *,
         period: Period = Period.MONTH, category: Category = Category.RESIDENT, valid_to: int | None = None) -> str:
    """Issue a benefit card (holder-bound: it is shown as a dynamic code from the holder's phone)."""
    return issuer.mint_order(order(issuer, sites, quota, now, period=period, category=category, valid_to=valid_to),
                             now, holder)


def terms_of(store: BenefitStore, credential_id: str) -> tuple[int, Period] | None:
    """``(quota, period)`` of a benefit card we issued, from its recorded details; None for anything else."""
    try:
        details = store.credential_details(bytes.fromhex(credential_id))
    except ValueError:
        return None
    if not details or details.get("product") != "benefit":
        return None
    return int(details["quota"]), Period[str(details["period"]).upper()]


def count_use(store: BenefitStore, credential_id: str, quota: int, period: Period, at: int, ref: str, source: str,
              gate_id: str | None = None, site: int | None = None) -> int | None:
    """Count one use centrally and set the ledger marks up to the new count; the count (None if counted before)."""
    start = period_start(at, period, UTC_OFFSET_MINUTES)
    count = store.add_benefit_use(BenefitUse(ref, credential_id, start, at, source, gate_id, site, quota))
    if count is not None:
        card = bytes.fromhex(credential_id)
        for k in range(1, min(count, quota) + 1):  # idempotent: a mark already set changes nothing
            store.revoke(used_mark(card, start, k), at, f"benefit card {credential_id}: {k} use(s) counted")
    return count


def count_taps(store: BenefitStore, taps: Iterable[TapRecord]) -> int:
    """Count the admitted benefit-card entries among ``taps`` (ingest calls this after storing a batch)."""
    counted = 0
    for tap in taps:
        if tap.product != BENEFIT or tap.decision != "allow" or tap.kind != ENTRY or tap.credential_id is None:
            continue
        terms = terms_of(store, tap.credential_id)
        if terms is not None and count_use(store, tap.credential_id, *terms, tap.at, f"tap:{tap.tap_id}", "tap",
                                           tap.gate_id, tap.site) is not None:
            counted += 1
    return counted


def remaining(store: BenefitStore, credential_id: str, now: int) -> tuple[int, int, Period] | None:
    """``(uses left, quota, period)`` of a card now, by the central count; None for a non-benefit credential."""
    terms = terms_of(store, credential_id)
    if terms is None:
        return None
    quota, period = terms
    used = store.benefit_use_count(credential_id, period_start(now, period, UTC_OFFSET_MINUTES))
    return max(0, quota - used), quota, period


def status_text(store: BenefitStore, credential_id: str, now: int) -> tuple[str, str] | None:
    """"惠民卡 · 本月剩余 2 次 / Benefit card · 2 uses left this month" for the wallet and the operator."""
    left = remaining(store, credential_id, now)
    return None if left is None else remaining_text(left[0], left[2])


def book(store: BenefitStore, code: str, site: int, booking_ref: str, now: int) -> int:
    """Consume one use online for a benefit slot booked at ``site`` with the card ``code`` (its static text);
    the uses left afterwards. :class:`QuotaExhausted` when none is left — checked against the central count, so
    online bookings never go beyond the quota."""
    cred: Credential = parse(code).credential
    if not isinstance(cred.terms, Benefit):
        raise BenefitError("not a benefit card")
    if site not in cred.terms.sites:
        raise BenefitError(f"this benefit card is not valid at site {site}")
    cid = cred.id.hex()
    if terms_of(store, cid) is None:
        raise BenefitError("this benefit card was not issued here")
    left = remaining(store, cid, now)
    assert left is not None
    if left[0] <= 0:
        raise QuotaExhausted("no benefit uses left this period")
    count = count_use(store, cid, cred.terms.quota, cred.terms.period, now, f"booking:{booking_ref}", "booking",
                      None, site)
    if count is None:
        raise BenefitError(f"booking {booking_ref} was already counted")
    if count > cred.terms.quota:  # another use raced this one in: give the booking back is the caller's choice
        raise QuotaExhausted("no benefit uses left this period")
    return cred.terms.quota - count


def over_quota_incidents(store: BenefitStore, since: int) -> list[Incident]:
    """One ``benefit_over_quota`` incident per card and period used more often than its quota."""
    found = []
    for credential_id, start in store.benefit_overuse(since):
        uses = store.benefit_uses(credential_id, start)
        quota = uses[0].quota
        beyond = uses[quota:]
        found.append(Incident(
            kind="benefit_over_quota", credential_id=credential_id,
            tap_ids=tuple(u.ref.split(":", 1)[1] if u.source == "tap" else u.ref for u in uses),
            gate_ids=tuple(sorted({u.gate_id for u in uses if u.gate_id})),
            sites=tuple(sorted({u.site for u in uses if u.site is not None})),
            first_at=uses[0].at, last_at=uses[-1].at,
            detail=f"benefit card used {len(uses)} times in the period from {start} (quota {quota}): "
                   f"{len(beyond)} beyond it, the first at {beyond[0].at}",
        ))
    return [i for i in found if i.last_at >= since]


__all__ = ["BenefitError", "QuotaExhausted", "book", "count_taps", "count_use", "mint", "order",
           "over_quota_incidents", "remaining", "status_text", "terms_of"]
