"""Passes for a phone wallet: ordered now, signed when the phone claims them with a key made in its browser.

An **offer** (:func:`offer`) keeps a pass's checked, unsigned :class:`~citypass.issuer.service.Order` under a
one-time claim secret ``cpw_<id>_<secret>``, stored only as its SHA-256 hash like enrollment tokens
(:mod:`citypass.issuer.tokens`), and expiring. The claim link the visitor receives is the wallet page's address
with the secret in its *fragment* (``…/wallet/#claim=cpw_…``), which browsers never send to a server, so it does
not end up in access logs or ``Referer`` headers.

A **claim** (:func:`claim`) is what the wallet page sends: the secret, the holder's public key and a signature
proving the browser holds its private half (:mod:`citypass.credential.walletclaim`). The issuer trusts that request
for exactly one thing — binding this one order to that key, once: the credential is signed with the key in its
``cnf`` claim, exactly as ``citypass issuer mint --holder-key`` does, so the gates verify the browser's
presentations like any phone's. Another key presenting the same secret later is refused (409); the same key again
gets the same pass back (its first answer may have been lost on the way).

    >>> import tempfile, pathlib
    >>> from citypass.credential.keys import SigningKey
    >>> from citypass.credential.walletclaim import claim_proof_message
    >>> from citypass.issuer.home import IssuerHome
    >>> from citypass.issuer.service import Issuer
    >>> iss = Issuer.init(IssuerHome(pathlib.Path(tempfile.mkdtemp())), [("west-lake", "scenic")], now=1_800_000_000)
    >>> link = offer(iss, iss.annual_order(["west-lake"], 1_800_000_000), now=1_800_000_000)
    >>> phone = SigningKey.generate()
    >>> got = claim(iss, link.token, phone.public, phone.sign(claim_proof_message(link.claim_id)), now=1_800_000_100)
    >>> got.display.product, got.display.sites
    ('annual', ['west-lake'])
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from citypass.credential.claims import Annual, Benefit, Credential, Event, Group, HolderKey, Reservation, Transit
from citypass.credential.codes import decode_text, parse
from citypass.credential.cose import FormatError, decode_cbor, encode_cbor
from citypass.credential.keys import VerifyKey
from citypass.credential.policy import VerifyPolicy
from citypass.credential.sites import SiteSettings
from citypass.credential.walletclaim import PassDisplay, SiteName, WalletPass, verify_claim_proof
from citypass.errors import InvalidInput, NotFound
from citypass.issuer import benefits
from citypass.issuer.records import WalletClaimRecord
from citypass.issuer.service import Issuer, Order
from citypass.issuer.tokens import WALLET_CLAIM_PREFIX, hash_secret, new_secret, parse_secret

DEFAULT_TTL_S = 7 * 86_400  # a claim link works for a week unless the order says otherwise
MAX_TTL_S = 90 * 86_400
#: The wallet makes a new presentation this often; gates accept one for VerifyPolicy().window_s (30 s).
REFRESH_S = 5


@dataclass(frozen=True)
class Offer:
    """A pass waiting for its phone: ``token`` goes into the claim link and is shown only once."""

    claim_id: str
    token: str
    expires_at: int

    def url(self, wallet_url: str) -> str:
        """The claim link: ``wallet_url`` (the wallet page's address) with the token in the fragment."""
        return f"{wallet_url.split('#', 1)[0]}#claim={self.token}"


def _order_bytes(order: Order) -> bytes:
    # The unsigned order in the credential's own claim encoding (with a placeholder id): one format to keep.
    return encode_cbor(Credential(id=b"\0", terms=order.terms, valid_from=order.valid_from,
                                  valid_to=order.valid_to).to_claims())


def _order(data: bytes) -> Order:
    cred = Credential.from_claims(decode_cbor(data), order=True)
    return Order(cred.terms, cred.valid_from, cred.valid_to)


def offer(issuer: Issuer, order: Order, now: int, ttl_s: int = DEFAULT_TTL_S) -> Offer:
    """Keep ``order`` for a wallet to claim within ``ttl_s`` seconds."""
    if not 60 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"a claim link must live between 60 s and {MAX_TTL_S} s")
    product = Credential(id=b"\0", terms=order.terms).product
    text, ident, digest = new_secret(WALLET_CLAIM_PREFIX)
    issuer.store.add_wallet_claim(WalletClaimRecord(ident, product, _order_bytes(order), now, now + ttl_s), digest)
    return Offer(ident, text, now + ttl_s)


def claim(issuer: Issuer, token: str, holder: VerifyKey, proof: bytes, now: int) -> WalletPass:
    """Sign the offered pass for ``holder``, once (see the module doc)."""
    ident = parse_secret(token, WALLET_CLAIM_PREFIX)
    if ident is None:
        raise NotFound("not a claim link")
    if not verify_claim_proof(holder, proof, ident):
        raise InvalidInput("proof: the signature does not verify with public_key for this claim")
    holder_id = HolderKey(holder).holder_id.hex()
    taken = issuer.store.take_wallet_claim(ident, hash_secret(token), holder_id, now)
    code = taken.code
    if code is None:
        try:
            order = _order(taken.order_cbor)
        except FormatError as exc:  # written by this issuer: a damaged row, not the caller's mistake
            raise RuntimeError(f"wallet claim {ident}: stored order unreadable: {exc}") from None
        code = issuer.mint_order(order, now, holder)
        issuer.store.complete_wallet_claim(ident, parse(code).credential.id.hex(), code)
        code = issuer.store.wallet_claim(ident).code or code  # a concurrent retry's code wins, consistently
    return wallet_pass(issuer, ident, code, now)


def wallet_pass(issuer: Issuer, claim_id: str, code: str, now: int | None = None) -> WalletPass:
    cred = parse(code).credential
    return WalletPass(
        claim_id=claim_id,
        credential_id=cred.id.hex(),
        code=code,
        credential=base64.urlsafe_b64encode(decode_text(code)).rstrip(b"=").decode(),
        display=display(issuer, cred, now),
        refresh_s=REFRESH_S,
        window_s=VerifyPolicy().window_s,
    )


def site_name(site: SiteSettings) -> SiteName:
    """How the wallet names ``site``: its slug, with its Chinese ``title`` and English ``title_en`` where set."""
    titles = {"zh": site.title, "en": site.title_en}
    return SiteName(name=site.name, title={lang: text for lang, text in titles.items() if text})


def display(issuer: Issuer, cred: Credential, now: int | None = None) -> PassDisplay:
    """What the wallet shows beside the code: product, the sites' display names or the modes, party, validity.

    Each site comes twice: in ``site_names``, named per language (what the wallet shows), and in ``sites`` as its
    Chinese title or slug (what a wallet from before ``site_names`` shows). A site number the store does not
    know stands as the number itself."""
    known = {s.number: site_name(s) for s in issuer.store.sites()}
    t = cred.terms
    numbers: list[int] = []
    modes: list[str] = []
    party = 1
    if isinstance(t, Annual | Benefit):
        numbers = sorted(t.sites)
    elif isinstance(t, Reservation):
        numbers, party = [t.venue], t.party
    elif isinstance(t, Group):
        numbers, party = [t.site], t.party
    elif isinstance(t, Transit):
        modes = t.modes.names()
    elif isinstance(t, Event):
        numbers = sorted(t.sessions)
    names = [known.get(n) or SiteName(name=str(n)) for n in numbers]
    left = period = None
    if isinstance(t, Benefit):
        status = benefits.remaining(issuer.store, cred.id.hex(), now if now is not None else cred.valid_from or 0)
        left, period = (status[0], t.period.name.lower()) if status is not None else (t.quota, t.period.name.lower())
    return PassDisplay(product=cred.product_name, sites=[s.title.get("zh") or s.name for s in names], site_names=names,
                       modes=modes, party=party, valid_from=cred.valid_from, valid_to=cred.valid_to,
                       benefit_left=left, benefit_period=period)
