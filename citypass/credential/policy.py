"""How strictly codes are verified: the tunables a gate's config sets, kept apart from the verifier so that
reading a config does not load the cryptography behind it (:mod:`citypass.credential.verifier` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VerifyPolicy:
    """Tunables for dynamic codes. A presentation is fresh when
    ``now - window_s - skew_s <= generated_at <= now + skew_s``."""

    window_s: int = 30
    skew_s: int = 10
