"""The benefit card's quota (文旅惠民卡): periods, the centre's counts as ledger marks, and the offline bound.

A benefit card (:class:`~citypass.credential.claims.Benefit`) gives its holder ``quota`` uses per period
(a calendar month by default, in the site's local time) at a set of sites. The quota holds across the
city, so uses are **counted centrally** by the issuer (every admitted tap it receives, and every benefit
slot booked online) — and a gate, which must decide offline, learns the centre's count through the signed
ledger it already has, with no new table or message:

* when the centre has counted ``k`` uses of a card in a period it revokes the id :func:`used_mark` ``(card,
  period, k)`` (16 bytes beginning ``ff 51``, which no credential id of ours has). The next ledger delta
  carries the marks like any revocation; :func:`central_count` reads them back (at most ``quota`` lookups
  in the revocation table, each a primary-key probe);
* the gate adds the uses **it** admitted since its ledger was last brought up to date (those the centre
  cannot have counted yet): ``known = central + local_since_sync``; a use is admitted only while
  ``known < quota``.

**The offline bound.** A gate whose ledger has not been brought up to date for :data:`OFFLINE_AFTER_S`
(10 minutes) is *offline*: it cannot learn of uses at other gates, so it admits at most
:data:`OFFLINE_ALLOWANCE` (= 1) use of a card per period beyond what the centre had counted at its last
sync. Each offline gate therefore adds at most **one** use beyond the quota per card and period; an online
gate can overshoot only by uses made elsewhere within the seconds of sync lag. The issuer turns every use
it counts beyond the quota into an incident (``benefit_over_quota``). Sibling lanes of one site share their
taps (issue 13), so one site counts as one gate.

    >>> from citypass.credential.claims import Period
    >>> start = period_start(1_800_000_000, Period.MONTH, 480)   # 2027-01-15 16:00 in UTC+8
    >>> start, period_end(start, Period.MONTH, 480)              # 2027-01-01 00:00 .. 2027-02-01 00:00 (UTC+8)
    (1798732800, 1801411200)
    >>> remaining_text(2, Period.MONTH)
    ('惠民卡 · 本月剩余 2 次', 'Benefit card · 2 uses left this month')
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from citypass.credential.claims import Period

#: A gate whose ledger is older than this is offline for the benefit rule.
OFFLINE_AFTER_S = 600
#: Uses of one card per period an offline gate may admit beyond what the centre had counted at its last sync.
OFFLINE_ALLOWANCE = 1

_PERIOD_WORDS = {Period.MONTH: ("本月", "this month"), Period.WEEK: ("本周", "this week"),
                 Period.YEAR: ("本年", "this year")}


def period_start(now: int, period: Period, utc_offset_minutes: int = 480) -> int:
    """Unix time of the start of the period containing ``now`` (local midnight of the 1st, of Monday, of 1 Jan)."""
    offset = timedelta(minutes=utc_offset_minutes)
    local = datetime.fromtimestamp(now, UTC) + offset
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.MONTH:
        start = midnight.replace(day=1)
    elif period is Period.WEEK:
        start = midnight - timedelta(days=midnight.weekday())
    else:
        start = midnight.replace(month=1, day=1)
    return int((start - offset).timestamp())


def period_end(start: int, period: Period, utc_offset_minutes: int = 480) -> int:
    """Unix time the period beginning at ``start`` ends (exclusive)."""
    offset = timedelta(minutes=utc_offset_minutes)
    local = datetime.fromtimestamp(start, UTC) + offset
    if period is Period.MONTH:
        days = calendar.monthrange(local.year, local.month)[1]
        end = local + timedelta(days=days)
    elif period is Period.WEEK:
        end = local + timedelta(days=7)
    else:
        end = local.replace(year=local.year + 1)
    return int((end - offset).timestamp())


def used_mark(credential_id: bytes, start: int, k: int) -> bytes:
    """The ledger id that says "the centre has counted at least ``k`` uses of this card in the period from
    ``start``" (revoked to set it)."""
    digest = hashlib.sha256(b"citypass benefit\0" + credential_id + start.to_bytes(8, "big") + k.to_bytes(2, "big"))
    return b"\xffQ" + digest.digest()[:14]


def central_count(is_marked: Callable[[bytes], bool], credential_id: bytes, start: int, quota: int) -> int:
    """How many uses the centre had counted, read from the marks (``is_marked`` = the revocation lookup).
    Marks are set in order 1, 2, …, so the count is the first ``k`` without its mark, minus one; the
    answer is capped at ``quota`` (beyond it nothing changes for the gate)."""
    for k in range(1, quota + 1):
        if not is_marked(used_mark(credential_id, start, k)):
            return k - 1
    return quota


def remaining_text(left: int, period: Period) -> tuple[str, str]:
    """What the gate's screen and the wallet show, in Chinese and English."""
    zh, en = _PERIOD_WORDS[period]
    return f"惠民卡 · {zh}剩余 {left} 次", f"Benefit card · {left} use{'s' if left != 1 else ''} left {en}"


__all__ = ["OFFLINE_AFTER_S", "OFFLINE_ALLOWANCE", "central_count", "period_end", "period_start", "remaining_text",
           "used_mark"]
