"""Admitting partner platforms: the issuer's side of federation (:mod:`citypass.credential.partners`).

A partner sends us its **descriptor** (``citypass partner descriptor`` in its own kit, see
:mod:`citypass.partner`): its id, names and public keys. We admit it with a scope — products, sites, a
validity window, the claims it may assert — and a platform number of our choosing; from the next
snapshot on, its entry is in the root-signed trust list and our gates accept its codes within that
scope. Admitting changes the trust list, so gates take it with a snapshot (a delta stops before a
trust-list change).

Revoking a partner is one ledger change: its :func:`~citypass.credential.partners.revocation_id` is revoked
like a credential id, so the very next signed delta carries it and every gate denies the partner's codes
``partner_revoked``. The entry stays in the trust list (marked revoked here), so that gates keep saying
*why*; an admitted partner can be re-admitted under a new id.

Partners are kept in the issuer's meta table as JSON (key ``partners``), so this needs no migration and
works on any :class:`~citypass.issuer.repository.IssuerRepository`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from citypass.credential.partners import (
    CLAIM_NAMES,
    ID_PATTERN,
    PARTNER_ALGS,
    PARTNER_FORMATS,
    Partner,
    PartnerKey,
    revocation_id,
)
from citypass.credential.trustlist import TrustList
from citypass.errors import InvalidInput
from citypass.issuer.repository import IssuerRepository

META_KEY = "partners"


class PartnerError(InvalidInput):
    """A partner request the issuer refuses."""


@dataclass(frozen=True)
class Admitted:
    """A partner as the issuer keeps it: the trust-list entry and when (if) it was revoked."""

    partner: Partner
    admitted_at: int
    revoked_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        p = self.partner
        return {
            "id": p.id, "number": p.number, "name_zh": p.name_zh, "name_en": p.name_en,
            "keys": [{"alg": k.alg, "pub": k.pub.hex(), "kid": k.kid.hex()} for k in p.keys],
            "valid_from": p.valid_from, "valid_to": p.valid_to, "products": sorted(p.products),
            "sites": None if p.sites is None else sorted(p.sites), "claims": sorted(p.claims),
            "formats": sorted(p.formats), "admitted_at": self.admitted_at, "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Admitted:
        partner = Partner(
            id=obj["id"], number=int(obj["number"]), name_zh=obj["name_zh"], name_en=obj["name_en"],
            keys=tuple(PartnerKey(k["alg"], bytes.fromhex(k["pub"])) for k in obj["keys"]),
            valid_from=int(obj["valid_from"]), valid_to=obj.get("valid_to"),
            products=frozenset(obj["products"]), sites=None if obj.get("sites") is None else frozenset(obj["sites"]),
            claims=frozenset(obj["claims"]), formats=frozenset(obj["formats"]),
        )
        return cls(partner, int(obj["admitted_at"]), obj.get("revoked_at"))


def admitted(store: IssuerRepository) -> list[Admitted]:
    """Every partner ever admitted, revoked ones included, by number."""
    raw = store.get_meta(META_KEY, "[]") or "[]"
    return sorted((Admitted.from_json(o) for o in json.loads(raw)), key=lambda a: a.partner.number)


def listed(store: IssuerRepository) -> tuple[Partner, ...]:
    """The partners the trust list names (revoked ones too: their revocation id keeps them out)."""
    return tuple(a.partner for a in admitted(store))


def _save(store: IssuerRepository, entries: Iterable[Admitted]) -> None:
    store.set_meta(META_KEY, json.dumps([a.to_json() for a in entries], ensure_ascii=False, sort_keys=True))


def parse_descriptor(text: str) -> dict[str, Any]:
    """A partner's descriptor (JSON: id, name_zh, name_en, keys [{alg, pub}]); :class:`PartnerError` if not."""
    try:
        obj = json.loads(text)
        keys = [{"alg": str(k["alg"]), "pub": bytes.fromhex(k["pub"])} for k in obj["keys"]]
        out: dict[str, Any] = {"id": str(obj["id"]), "name_zh": str(obj["name_zh"]), "name_en": str(obj["name_en"]),
                               "keys": keys}
    except (ValueError, KeyError, TypeError) as exc:
        raise PartnerError(f"not a partner descriptor: {exc}") from None
    if not re.match(ID_PATTERN, out["id"]) or not keys or any(k["alg"] not in PARTNER_ALGS for k in keys):
        raise PartnerError("a descriptor needs a slug id and at least one ed25519, es256 or sm2 key")
    return out


def admit(store: IssuerRepository, trust: TrustList, descriptor: dict[str, Any], *, products: Iterable[int],
          now: int, sites: Iterable[int] | None = None, valid_from: int | None = None, valid_to: int | None = None,
          claims: Iterable[str] | None = None, formats: Iterable[str] | None = None,
          number: int | None = None) -> Partner:
    """Admit the partner ``descriptor`` describes, within the given scope; returns its trust-list entry.
    ``trust`` is the current trust list (a partner's CP1 keys must not share a kid with a listed key)."""
    entries = admitted(store)
    if any(a.partner.id == descriptor["id"] for a in entries):
        raise PartnerError(f"partner {descriptor['id']!r} was already admitted (revoke it and admit a new id)")
    used = {a.partner.number for a in entries}
    number = number if number is not None else max(used, default=0) + 1
    if number in used or not 1 <= number < 2**32:
        raise PartnerError(f"platform number {number} is taken or out of range")
    products = frozenset(int(p) for p in products)
    if not products:
        raise PartnerError("a partner must be given at least one product")
    fields: dict[str, Any] = {}
    if claims is not None:
        fields["claims"] = frozenset(claims)
        if not fields["claims"] <= set(CLAIM_NAMES):
            raise PartnerError(f"claims are some of {', '.join(CLAIM_NAMES)}")
    if formats is not None:
        fields["formats"] = frozenset(formats)
        if not fields["formats"] <= set(PARTNER_FORMATS):
            raise PartnerError(f"formats are some of {', '.join(PARTNER_FORMATS)}")
    keys = tuple(PartnerKey(k["alg"], k["pub"]) for k in descriptor["keys"])
    for key in keys:
        try:
            key.verify_key()
        except ValueError as exc:
            raise PartnerError(f"partner key {key.kid.hex()} ({key.alg}) is not a valid public key: {exc}") from None
    partner = Partner(descriptor["id"], number, descriptor["name_zh"], descriptor["name_en"], keys,
                      valid_from=now if valid_from is None else valid_from, valid_to=valid_to, products=products,
                      sites=None if sites is None else frozenset(sites), **fields)
    try:  # the trust list's own rules: no kid shared with our keys or another partner's, no number twice
        TrustList(trust.version, trust.issued_at, trust.keys, trust.require_dynamic, (*trust.partners, partner))
    except ValueError as exc:
        raise PartnerError(f"cannot admit {partner.id}: {exc} (the partner should generate another key)") from None
    _save(store, [*entries, Admitted(partner, now)])
    store.bump("trust_version")
    store.log_change("trust", f"partner:{partner.id}", now)
    return partner


def revoke(store: IssuerRepository, partner_id: str, now: int, reason: str = "") -> bytes:
    """Revoke a partner: one ledger change (its revocation id), carried to every gate by the next delta."""
    entries = admitted(store)
    match = next((a for a in entries if a.partner.id == partner_id), None)
    if match is None:
        raise PartnerError(f"no partner {partner_id!r}")
    rid = revocation_id(partner_id)
    store.revoke(rid, now, reason or f"partner {partner_id} revoked")
    _save(store, [Admitted(a.partner, a.admitted_at, now) if a is match else a for a in entries])
    return rid


__all__ = ["Admitted", "PartnerError", "admit", "admitted", "listed", "parse_descriptor", "revoke"]
