"""Issuer operations: initialise a home, mint credentials, revoke, rotate keys, export snapshots.

This is the logic behind ``citypass issuer …`` and the issuer's HTTP API (:mod:`citypass.issuer.api`). Time is
always an argument, so every operation can be tested at any instant. Storage is any
:class:`~citypass.issuer.repository.IssuerRepository` (the SQLite :class:`~citypass.issuer.store.IssuerStore` by
default, or :class:`~citypass.issuer.postgres.store.PostgresStore`: :mod:`citypass.issuer.backends`); keys are
files in the :class:`~citypass.issuer.home.IssuerHome`.

Example::

    >>> import tempfile, pathlib
    >>> home = IssuerHome(pathlib.Path(tempfile.mkdtemp()))
    >>> issuer = Issuer.init(home, [("west-lake", "scenic")], now=1_800_000_000)
    >>> code = issuer.mint_annual(["west-lake"], now=1_800_000_000)
    >>> code[:4]
    'CP1:'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from citypass.credential.claims import (
    Annual,
    Category,
    Credential,
    Group,
    HolderKey,
    Mode,
    Product,
    Reservation,
    Terms,
    Transit,
)
from citypass.credential.codes import issue, parse
from citypass.credential.filemodes import private_dir
from citypass.credential.keys import Alg, SigningKey, VerifyKey
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.credential.snapshot import LedgerSnapshot
from citypass.credential.trustlist import TrustedKey, TrustList
from citypass.errors import InvalidInput
from citypass.issuer.backends import check_database, open_store
from citypass.issuer.home import HomeError, IssuerHome
from citypass.issuer.partners import listed as listed_partners
from citypass.issuer.records import Conflict
from citypass.issuer.repository import IssuerRepository

DAY = 86_400
YEAR = 365 * DAY
TRANSIT_AUTH_S = DAY  # default: a transit code may be used offline for one day


class IssueError(InvalidInput):
    """A request the issuer refuses (unknown site, bad parameters, policy)."""


@dataclass(frozen=True)
class Order:
    """A credential's terms and validity, checked against the issuer's sites but not yet signed: minted at once
    (:meth:`Issuer.mint_order`) or kept until a wallet claims it with its holder key."""

    terms: Terms
    valid_from: int | None
    valid_to: int | None


@dataclass
class Issuer:
    home: IssuerHome
    store: IssuerRepository
    # Private keys loaded once: with a passphrase, every load runs a slow key-derivation function.
    _keys: dict[tuple[str, bytes], SigningKey] = field(default_factory=dict, repr=False, compare=False)

    # -- lifecycle -----------------------------------------------------------------------------------
    @classmethod
    def init(cls, home: IssuerHome, sites: Sequence[tuple[str, str]], now: int, alg: Alg = Alg.EDDSA,
             database: str | None = None) -> Issuer:
        """Create keys and store in a new home. ``sites`` are (name, kind) pairs, numbered from 1. ``database``: a
        PostgreSQL URL (an empty database) to keep the store in instead of the home's SQLite file."""
        if home.exists():
            raise HomeError(f"{home.path} already holds an issuer; refusing to overwrite its keys")
        check_database(database)
        private_dir(home.path)  # 0700 whatever the umask: keys, tokens' hashes, every credential
        store = open_store(home, database)
        if database is not None:
            if store.get_meta("root_kid"):
                store.close()
                raise HomeError("that database already holds an issuer; refusing to start another in it")
            home.save_database_url(database)
        issuer = cls(home, store)
        root = SigningKey.generate(alg)
        home.save_key("root", root)
        store.set_meta("root_kid", root.kid.hex())
        for name, kind in sites:
            issuer.add_site(SiteSettings(number=store.next_site_number(), name=name, kind=SiteKind(kind)), now)
        issuer._new_key("issuer", alg, now)
        issuer._new_key("ledger", alg, now)
        issuer.ingest_group()
        return issuer

    @classmethod
    def open(cls, home: IssuerHome, repository: IssuerRepository | None = None, database: str | None = None) -> Issuer:
        """Open an existing home; ``repository`` replaces the store the home records (its SQLite file, or its
        PostgreSQL database), as does ``database`` (a URL)."""
        home.require()
        return cls(home, repository if repository is not None else open_store(home, database))

    def close(self) -> None:
        self.store.close()

    def ingest_group(self) -> str:
        """The MQTT shared-subscription group of this issuer's ingest workers: random, made once (at ``init``,
        or at the first call for a home made before there was one) and kept in the store. A device that knew
        the group could join it and be handed a share of other gates' tap batches (they would then wait for
        their gates to resend them), so it is not a guessable word like ``ingest``."""
        group = self.store.get_meta("mqtt_group")
        if not group:
            group = f"ingest-{os.urandom(8).hex()}"
            self.store.set_meta("mqtt_group", group)
        return group

    def signing_key(self, role: str, kid: bytes) -> SigningKey:
        key = self._keys.get((role, kid))
        if key is None:
            key = self._keys[(role, kid)] = self.home.load_key(role, kid)
        return key

    def _new_key(self, role: str, alg: Alg, now: int, products: frozenset[int] | None = None,
                 sites: frozenset[int] | None = None) -> TrustedKey:
        existing = {k.entry.kid for k in self.store.keys() if k.entry.role == role}
        while True:  # kids are 2 bytes: draw again on the rare collision
            key = SigningKey.generate(alg)
            if key.kid not in existing:
                break
        self.home.save_key(role, key)
        entry = TrustedKey(key.kid, key.public, role, valid_from=now, products=products, sites=sites)
        self.store.add_key(entry, active=True)
        self.store.bump("trust_version")
        self.store.log_change("trust", key.kid.hex(), now)
        return entry

    def add_site(self, settings: SiteSettings, now: int = 0) -> None:
        if self.store.sites_named([settings.name]):  # a probe by name: a city has tens of thousands of sites
            raise IssueError(f"site {settings.name!r} already exists")
        try:
            self.store.add_site(settings, now)
        except Conflict as exc:
            raise IssueError(str(exc)) from None

    def rotate(self, now: int, retire_old_at: int | None = None, alg: Alg | None = None) -> TrustedKey:
        """Add a new issuer signing key and retire the current one at ``retire_old_at`` (default now+30d).

        Until then both keys verify, so codes already on phones keep working while apps refresh them."""
        old = self.store.active_key("issuer")
        retire_at = retire_old_at if retire_old_at is not None else now + 30 * DAY
        if old is not None and retire_at < now:
            raise IssueError("the old key cannot be retired in the past")
        new = self._new_key("issuer", alg or (old.key.alg if old else Alg.EDDSA), now,
                            products=old.products if old else None, sites=old.sites if old else None)
        if old is not None:
            self.store.set_key_valid_to("issuer", old.kid, retire_at)
        return new

    def set_require_dynamic(self, products: Sequence[Product], now: int = 0) -> None:
        self.store.set_meta("require_dynamic", ",".join(str(int(p)) for p in products))
        self.store.bump("trust_version")
        self.store.log_change("trust", "require_dynamic", now)

    def require_dynamic(self) -> frozenset[int]:
        text = self.store.get_meta("require_dynamic", "") or ""
        return frozenset(int(p) for p in text.split(",") if p.strip())

    # -- minting -------------------------------------------------------------------------------------
    def site_number(self, ref: str) -> int:
        named = self.store.sites_named([ref])
        if named:
            return named[0].number
        for s in self.store.sites():
            if s.name == ref or str(s.number) == ref:
                return s.number
        known = ", ".join(s.name for s in self.store.sites()) or "none"
        raise IssueError(f"unknown site {ref!r} (known: {known})")

    def mint(self, terms: Terms, now: int, valid_from: int | None, valid_to: int | None,
             holder: VerifyKey | None = None) -> str:
        """Sign a credential with the active issuer key, record it, and return its code text."""
        product = Product(Credential(id=b"x", terms=terms).product)
        if holder is None and int(product) in self.require_dynamic():
            raise IssueError(f"{product.name.lower()} credentials must be bound to a holder key (--holder-key)")
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            raise IssueError("valid-to must be after valid-from")
        entry = self.store.active_key("issuer")
        if entry is None:
            raise HomeError("no active issuer key")
        if not entry.in_scope(int(product), None) or (
            entry.sites is not None and not (Credential(id=b"x", terms=terms).sites() or frozenset()) <= entry.sites
        ):
            raise IssueError("the active issuer key is not scoped for this product or these sites")
        key = self.signing_key("issuer", entry.kid)
        while True:
            cred_id = os.urandom(8)
            if not self.store.credential_exists(cred_id):
                break
        cred = Credential(id=cred_id, terms=terms, valid_from=valid_from, valid_to=valid_to,
                          holder=HolderKey(holder) if holder else None)
        code = issue(cred, key)
        self.store.record_credential(cred_id, int(product), now, key.kid,
                                     cred.holder.holder_id if cred.holder else None, cred.describe())
        return code

    def mint_order(self, order: Order, now: int, holder: VerifyKey | None = None) -> str:
        """Sign a credential with ``order``'s terms and validity (see :meth:`annual_order` and friends)."""
        return self.mint(order.terms, now, order.valid_from, order.valid_to, holder)

    def mint_annual(self, sites: Sequence[str], now: int, valid_from: int | None = None,
                    valid_to: int | None = None, passback_minutes: int | None = None,
                    holder: VerifyKey | None = None) -> str:
        return self.mint_order(self.annual_order(sites, now, valid_from, valid_to, passback_minutes), now, holder)

    def mint_reservation(self, venue: str, slot_start: int, slot_end: int, party: int, now: int,
                         grace_minutes: int = 15, holder: VerifyKey | None = None) -> str:
        return self.mint_order(self.reservation_order(venue, slot_start, slot_end, party, grace_minutes), now, holder)

    def mint_transit(self, account: str, modes: Mode, now: int, valid_to: int | None = None,
                     holder: VerifyKey | None = None) -> str:
        return self.mint_order(self.transit_order(account, modes, now, valid_to), now, holder)

    def mint_group(self, site: str, party: int, now: int, valid_from: int | None = None,
                   valid_to: int | None = None, holder: VerifyKey | None = None) -> str:
        return self.mint_order(self.group_order(site, party, now, valid_from, valid_to), now, holder)

    # -- orders: what a credential will say, before it is signed (a wallet claim signs it later) -----------
    def annual_order(self, sites: Sequence[str], now: int, valid_from: int | None = None,
                     valid_to: int | None = None, passback_minutes: int | None = None) -> Order:
        if not sites:
            raise IssueError("an annual pass needs at least one site")
        start = now if valid_from is None else valid_from
        terms = Annual(frozenset(self.site_number(s) for s in sites), passback_minutes)
        return Order(terms, start, valid_to if valid_to is not None else start + YEAR)

    def reservation_order(self, venue: str, slot_start: int, slot_end: int, party: int,
                          grace_minutes: int = 15) -> Order:
        if not 1 <= party <= 99:
            raise IssueError("party size must be 1..99")
        return Order(Reservation(self.site_number(venue), party, grace_minutes), slot_start, slot_end)

    def transit_order(self, account: str, modes: Mode, now: int, valid_to: int | None = None,
                      category: Category | None = None) -> Order:
        """``category``: a concession rider (senior, student), priced at the concession fare."""
        if not modes:
            raise IssueError("a transit credential needs at least one mode")
        if not 0 < len(account) <= 32:
            raise IssueError("account must be 1..32 characters")
        return Order(Transit(account, modes, category), now,
                     valid_to if valid_to is not None else now + TRANSIT_AUTH_S)

    def group_order(self, site: str, party: int, now: int, valid_from: int | None = None,
                    valid_to: int | None = None) -> Order:
        if not 1 <= party <= 99:
            raise IssueError("party size must be 1..99")
        start = now if valid_from is None else valid_from
        return Order(Group(self.site_number(site), party), start, valid_to if valid_to is not None else start + DAY)

    # -- revocation ----------------------------------------------------------------------------------
    @staticmethod
    def credential_ref(ref: str) -> bytes:
        """A credential id from its hex or from a whole code text."""
        if ref.startswith("CP"):
            return parse(ref).credential.id
        try:
            cred_id = bytes.fromhex(ref)
        except ValueError:
            raise IssueError(f"not a credential id (hex) or code: {ref!r}") from None
        if not 1 <= len(cred_id) <= 16:
            raise IssueError("a credential id is 1..16 bytes of hex")
        return cred_id

    def revoke(self, ref: str, now: int, reason: str = "") -> bytes:
        """Revoke by credential id (hex) or by a code's text. Returns the credential id."""
        cred_id = self.credential_ref(ref)
        self.store.revoke(cred_id, now, reason)
        return cred_id

    def unrevoke(self, ref: str, now: int) -> bool:
        """Lift a revocation (a pass reported lost was found). False when it was not revoked."""
        return self.store.unrevoke(self.credential_ref(ref), now)

    def revoke_holder(self, holder: VerifyKey, now: int, reason: str = "") -> bytes:
        holder_id = HolderKey(holder).holder_id
        self.store.revoke_holder(holder_id, now, reason)
        return holder_id

    # -- trust list and snapshot ---------------------------------------------------------------------
    def root_key(self) -> SigningKey:
        kid = bytes.fromhex(self.store.get_meta("root_kid") or "")
        return self.signing_key("root", kid)

    def trust_list(self, now: int) -> TrustList:
        return TrustList(
            version=int(self.store.get_meta("trust_version", "0") or 0), issued_at=now,
            keys=tuple(k.entry for k in self.store.keys()), require_dynamic=self.require_dynamic(),
            partners=listed_partners(self.store),
        )

    def snapshot(self, now: int) -> LedgerSnapshot:
        root = self.root_key()
        trust = self.trust_list(now)
        return LedgerSnapshot(
            seq=self.store.ledger_seq(), issued_at=now, trust=trust,
            trust_signed=trust.sign(root), sites=tuple(self.store.sites()),
            revoked=frozenset(self.store.revoked_ids()), revoked_holders=frozenset(self.store.revoked_holders()),
            root=root.public,
        )

    def ledger_key(self) -> SigningKey:
        entry = self.store.active_key("ledger")
        if entry is None:
            raise HomeError("no active ledger key")
        return self.signing_key("ledger", entry.kid)

    def export(self, now: int) -> bytes:
        """The signed snapshot file's bytes."""
        return self.snapshot(now).sign(self.ledger_key())
