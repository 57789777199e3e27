"""A benefit card's uses left, for the wallet that holds it: what ``POST /v1/wallet/benefit`` answers.

The wallet shows "惠民卡 · 本月剩余 2 次 / Benefit card · 2 uses left this month" beside the live code. The number is
the issuer's central count (:func:`citypass.issuer.benefits.remaining`): it moves when a gate's taps arrive or a
benefit slot is booked, so the wallet asks again whenever it is online, and offline shows the last answer with
the time it was counted (docs/wallet.md).

No bearer token: the question carries a **fresh presentation** of the card, signed by the phone's holder key —
exactly what the wallet shows at a gate. The issuer checks it like a gate does, minus place and hours: its own
issuer key signed the card, the holder key signed the presentation, and the presentation is no older (or newer)
than a gate's window. So nobody but the phone holding the card learns how it is used; a screenshot of the code
stops working for this, too, after the window.

    >>> import pathlib, tempfile
    >>> from citypass.credential.codes import present
    >>> from citypass.credential.keys import SigningKey
    >>> from citypass.issuer import benefits
    >>> from citypass.issuer.home import IssuerHome
    >>> from citypass.issuer.service import Issuer
    >>> now = 1_800_000_000
    >>> iss = Issuer.init(IssuerHome(pathlib.Path(tempfile.mkdtemp())), [("zhejiang-museum", "museum")], now=now)
    >>> phone = SigningKey.generate()
    >>> card = benefits.mint(iss, ["zhejiang-museum"], 4, phone.public, now)
    >>> uses_left(iss, present(card, phone, now), now + 5).benefit_left
    4
"""

from __future__ import annotations

from citypass.credential.claims import Benefit
from citypass.credential.codes import CodeError, parse
from citypass.credential.policy import VerifyPolicy
from citypass.credential.walletclaim import BenefitUses
from citypass.errors import InvalidInput, NotFound
from citypass.issuer import benefits
from citypass.issuer.service import Issuer


def uses_left(issuer: Issuer, presentation: str, now: int, policy: VerifyPolicy | None = None) -> BenefitUses:
    """The card's uses left now, once ``presentation`` proves the asker holds it (fresh as ``policy``, a gate's
    default, counts it). :class:`InvalidInput` for anything that is not a fresh, valid presentation of a benefit
    card of ours; :class:`NotFound` for a card the store has no record of."""
    policy = policy or VerifyPolicy()
    try:
        parsed = parse(presentation)
    except CodeError as exc:
        raise InvalidInput(f"presentation: {exc.reason.value}") from None
    cred = parsed.credential
    if not parsed.dynamic or parsed.generated_at is None:
        raise InvalidInput("presentation: a fresh presentation signed by the phone is needed, not the card itself")
    if not isinstance(cred.terms, Benefit):
        raise InvalidInput("presentation: not a benefit card")
    key = issuer.trust_list(now).find(parsed.sign1.kid, role="issuer")
    if key is None or not parsed.sign1.verify(key.key):
        raise InvalidInput("presentation: not signed by this issuer")
    if not parsed.holder_signature_valid():
        raise InvalidInput("presentation: the holder signature does not verify")
    if not now - policy.window_s - policy.skew_s <= parsed.generated_at <= now + policy.skew_s:
        raise InvalidInput(f"presentation: made {now - parsed.generated_at} s ago; a gate takes it for "
                           f"{policy.window_s} s")
    status = benefits.remaining(issuer.store, cred.id.hex(), now)
    if status is None:
        raise NotFound("this benefit card was not issued here")
    left, quota, period = status
    return BenefitUses(credential_id=cred.id.hex(), benefit_left=left, quota=quota,
                       benefit_period=period.name.lower(), as_of=now)
