"""Claiming a pass into a phone wallet, on the wire: what the wallet page sends the issuer, and what it gets back.

A pass ordered for a wallet (``POST /v1/passes`` with ``"holder": "wallet"``, or ``citypass issuer mint --wallet``)
is not signed yet: the issuer answers a one-time **claim link** ``…/wallet/#claim=cpw_<id>_<secret>``. The wallet
page makes the holder key in the browser and sends :class:`WalletClaim` to ``POST /v1/wallet/claims``: the claim
token, the public key, and a **proof** that it holds the private key — a signature, with that key, over
:func:`claim_proof_message` of the claim id. The issuer then signs the credential bound to that key exactly as
``holder present`` expects (the ``cnf`` claim, docs/credential-format.md §5) and answers :class:`WalletPass`.

The proof uses the same COSE ``Sig_structure`` as a dynamic presentation, so a browser whose signatures the issuer
accepts here makes presentations the gates accept too (Ed25519: 64 raw bytes; P-256: WebCrypto's ``r || s``,
which is COSE's ES256 form)::

    >>> from citypass.credential.keys import SigningKey
    >>> phone = SigningKey.generate()
    >>> proof = phone.sign(claim_proof_message("0123456789ab"))
    >>> verify_claim_proof(phone.public, proof, "0123456789ab"), verify_claim_proof(phone.public, proof, "ba9876543210")
    (True, False)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from citypass.credential.cose import encode_cbor, sig_structure
from citypass.credential.keys import VerifyKey

#: What the proof's payload starts with: a signature made for anything else never passes as a claim proof.
PROOF_CONTEXT = "CP1-wallet-claim"


def claim_proof_message(claim_id: str) -> bytes:
    """The bytes a wallet signs to prove it holds the key it registers for claim ``claim_id``."""
    return sig_structure(b"", encode_cbor([PROOF_CONTEXT, claim_id]))


def verify_claim_proof(key: VerifyKey, proof: bytes, claim_id: str) -> bool:
    return key.verify(proof, claim_proof_message(claim_id))


class WalletClaim(BaseModel):
    """``POST /v1/wallet/claims``: sent by the wallet page, with no bearer token (the claim token is the key)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    token: str = Field(min_length=1, max_length=200, description="The claim token from the claim link (`cpw_…`).")
    alg: Literal["Ed25519", "ES256"] = Field(
        description="The holder key's algorithm (WebCrypto Ed25519 or ECDSA P-256).")
    public_key: str = Field(min_length=40, max_length=100, pattern=r"^[A-Za-z0-9_-]+$",
                            description="The raw public key, base64url: 32 bytes (Ed25519) or a 65-byte SEC1 point "
                                        "(P-256, as WebCrypto exports it; 33 compressed bytes are accepted too).")
    proof: str = Field(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+$",
                       description="base64url of the 64-byte signature over the claim proof message.")


class SiteName(BaseModel):
    """One site a pass is valid at, as the wallet names it: the slug, and the site's display names by language.

    The wallet shows ``title["zh"]`` on its Chinese line and ``title["en"]`` on its English line; a language the
    site has no title in is left out, and the wallet shows the slug there instead::

        >>> SiteName(name="lingyin", title={"zh": "灵隐寺"}).model_dump()
        {'name': 'lingyin', 'title': {'zh': '灵隐寺'}}
    """

    name: str = Field(description="The site's slug: shown for a language it has no title in.", examples=["lingyin"])
    title: dict[str, str] = Field(default_factory=dict, description="Display names by language (the site records' "
                                  "`title` as zh, `title_en` as en); only the languages it has one in.",
                                  examples=[{"zh": "灵隐寺", "en": "Lingyin Temple"}])


class PassDisplay(BaseModel):
    """What the wallet shows beside the code (texts are looked up in the catalogs by the page)."""

    product: str = Field(description="annual, reservation, transit or group.", examples=["transit"])
    sites: list[str] = Field(description="The sites' Chinese display names, each the slug where it has none "
                                         "(annual, reservation, group, benefit, event): what wallets that predate "
                                         "`site_names` show on every line.")
    site_names: list[SiteName] = Field(default_factory=list, description="The same sites in the same order, "
                                       "named per language: what the wallet shows.")
    modes: list[str] = Field(description="Transit modes: metro, bus, water_bus.")
    party: int = Field(1, description="Persons admitted (reservation, group).")
    valid_from: int | None = Field(None, description="Unix seconds.")
    valid_to: int | None = Field(None, description="Unix seconds.")
    benefit_left: int | None = Field(None, description="A benefit card's uses left this period, by the central "
                                                       "count when the wallet last fetched the pass.")
    benefit_period: str | None = Field(None, description="month, week or year: the benefit card's quota period.")


class WalletPass(BaseModel):
    """The issuer's answer to a claim: the holder-bound credential and how to show it."""

    claim_id: str
    credential_id: str = Field(description="Hex id (revocations and taps name it).")
    code: str = Field(description="The static credential's code text. A gate refuses it shown as it is "
                                  "(dynamic_required): the wallet shows presentations made from it.")
    credential: str = Field(description="The credential's bytes (the COSE_Sign1 the presentations embed), base64url.")
    display: PassDisplay
    refresh_s: int = Field(description="How often the wallet makes a new presentation.")
    window_s: int = Field(description="How long gates accept a presentation (their default policy).")


class BenefitQuery(BaseModel):
    """``POST /v1/wallet/benefit``: the wallet asks how many uses its benefit card has left, with no bearer token.

    Its authority is a fresh presentation of the card — the same signed code the wallet shows at a gate — so only
    the phone holding the card's key can ask, and only within the presentation's window."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    presentation: str = Field(min_length=4, max_length=2000, description="A dynamic presentation (`CP1:…`) of the "
                                                                         "card, made now with its holder key.")


class BenefitUses(BaseModel):
    """The central count of a benefit card's uses this period, as the wallet shows it (with ``as_of`` offline)."""

    credential_id: str = Field(description="Hex id of the card.")
    benefit_left: int = Field(description="Uses left this period by the central count.", examples=[2])
    quota: int = Field(description="Uses per period.", examples=[4])
    benefit_period: str = Field(description="month, week or year.", examples=["month"])
    as_of: int = Field(description="Unix seconds: when the issuer counted.")
