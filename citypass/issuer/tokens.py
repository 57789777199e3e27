"""API tokens and enrollment secrets: random, shown once, stored only as SHA-256 hashes.

A token reads ``cpt_<id>_<secret>``: ``id`` (12 hex digits) finds the stored row, ``secret`` is 32
random bytes (base64url). The store keeps SHA-256 of the whole text and compares it with
:func:`hmac.compare_digest`, so neither a stolen database nor response timing gives a token away; the id
is looked up, never the secret. Enrollment secrets (``cpe_…``) and wallet claim links (``cpw_…``) work the same
way.

Roles (what each may call is in docs/issuer.md and on every endpoint's OpenAPI description):
``admin`` everything; ``issuer`` passes, venues, slots, reservations, revocations; ``operator`` reports
(incidents, occupancy, journeys), revocations, fares, device health; ``technician`` devices and
enrollments; ``auditor`` read-only, including the audit log. ``device`` tokens exist only as the
result of redeeming an enrollment: they upload taps and health for their own device and read the ledger.

    >>> text, token_id, digest = new_secret(TOKEN_PREFIX)
    >>> parse_secret(text, TOKEN_PREFIX) == token_id and digest == hash_secret(text)
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from citypass.errors import InvalidInput
from citypass.issuer.records import DEVICE_ROLE, ROLES, TokenRecord
from citypass.issuer.repository import AccessRepository

TOKEN_PREFIX = "cpt"
ENROLLMENT_PREFIX = "cpe"
WALLET_CLAIM_PREFIX = "cpw"  # one-time wallet claim links (citypass.issuer.wallet)
_SHAPE = re.compile(r"^(cp[tew])_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: ``text`` is shown once and never stored."""

    text: str
    record: TokenRecord
    replaced: int = 0  # earlier tokens of the same device revoked with it


def hash_secret(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def new_secret(prefix: str) -> tuple[str, str, bytes]:
    """(text, id, hash) of a fresh secret."""
    ident = os.urandom(6).hex()
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    text = f"{prefix}_{ident}_{secret}"
    return text, ident, hash_secret(text)


def parse_secret(text: str, prefix: str) -> str | None:
    """The id in a well-formed secret of this kind, or None."""
    match = _SHAPE.match(text) if isinstance(text, str) and len(text) < 100 else None
    return match.group(2) if match and match.group(1) == prefix else None


def create_token(repo: AccessRepository, role: str, now: int, *, label: str = "",
                 device_id: str | None = None, replace_device_tokens: bool = False) -> IssuedToken:
    """Make a token. ``replace_device_tokens`` (device tokens only): revoke every earlier token of that
    device in the same transaction, so one device never holds two live tokens (re-enrollment)."""
    if role not in ROLES and role != DEVICE_ROLE:
        raise InvalidInput(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
    if (role == DEVICE_ROLE) != (device_id is not None):
        raise InvalidInput("device tokens (and only they) are bound to a device")
    text, ident, digest = new_secret(TOKEN_PREFIX)
    record = TokenRecord(ident, role, digest, label, now, device_id)
    replaced = repo.add_token(record, replace_device_tokens=replace_device_tokens)
    return IssuedToken(text, record, replaced)


def authenticate(repo: AccessRepository, text: str) -> TokenRecord | None:
    """The live token record ``text`` names, or None (malformed, unknown, wrong secret, revoked)."""
    ident = parse_secret(text, TOKEN_PREFIX)
    if ident is None:
        return None
    record = repo.token(ident)
    if record is None or record.revoked_at is not None:
        return None
    return record if hmac.compare_digest(record.secret_hash, hash_secret(text)) else None
