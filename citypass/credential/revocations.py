"""An in-memory :class:`~citypass.credential.verifier.RevocationView` (the gate's SQLite ledger is another)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RevocationSet:
    """Revoked credential ids, revoked holder ids and seen dynamic presentations, held in sets."""

    revoked: frozenset[bytes] = frozenset()
    revoked_holders: frozenset[bytes] = frozenset()
    seen: set[bytes] = field(default_factory=set)

    def is_revoked(self, credential_id: bytes) -> bool:
        return credential_id in self.revoked

    def is_holder_revoked(self, holder_id: bytes) -> bool:
        return holder_id in self.revoked_holders

    def presentation_seen(self, presentation_id: bytes) -> bool:
        return presentation_id in self.seen


class _NoRevocations:
    def is_revoked(self, credential_id: bytes) -> bool:
        return False

    def is_holder_revoked(self, holder_id: bytes) -> bool:
        return False

    def presentation_seen(self, presentation_id: bytes) -> bool:
        return False


#: A view in which nothing is revoked and nothing has been seen (for tools and tests).
NO_REVOCATIONS = _NoRevocations()
