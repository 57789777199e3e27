"""How strictly codes are verified: the tunables a gate's config sets, kept apart from the verifier so that
reading a config does not load the cryptography behind it (:mod:`citypass.credential.verifier` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VerifyPolicy:
    """How strictly codes are judged against the gate's clock.

    * Dynamic codes: a presentation is fresh when ``now - window_s - skew_s <= generated_at <= now + skew_s``
      (``skew_s`` is the phone's clock against the gate's: tight, because a live code is worth only
      ``window_s``).
    * Validity *start* of a credential and of the key that signed it: not yet valid only when
      ``now + leeway_s < valid_from``. A pass bought at the gate a moment ago, or a key rotated in a moment
      ago, must not be refused by a gate whose clock is a minute behind the issuer's; a decision that
      needed the leeway carries the flag ``clock_leeway``. Validity *ends* (expiry, retired keys) get no
      leeway, and neither do reservation slots, which have their own grace.

    >>> VerifyPolicy()
    VerifyPolicy(window_s=30, skew_s=10, leeway_s=120)
    """

    window_s: int = 30
    skew_s: int = 10
    leeway_s: int = 120
