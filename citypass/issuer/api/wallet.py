"""The phone wallet over HTTP: the page at ``/wallet/``, its texts, and ``POST /v1/wallet/claims``.

``/wallet/`` serves the built wallet page (:data:`citypass.issuer.wallet.STATIC_DIR`) as static files, with a
content security policy that allows nothing but this origin: the page carries its own code and fetches nothing
from anywhere else. ``/wallet/i18n.json`` is every wallet and reason text from the catalogs, in every language
they hold. The claim endpoint takes no bearer token — the one-time claim secret in the body is its only
authority, and it authorises one thing (:mod:`citypass.issuer.wallet.claims`).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from citypass.credential import catalog
from citypass.credential.keys import Alg, VerifyKey
from citypass.credential.walletclaim import BenefitQuery, BenefitUses, WalletClaim, WalletPass
from citypass.errors import InvalidInput
from citypass.issuer.api.common import errors
from citypass.issuer.api.deps import ServicesDep, note
from citypass.issuer.wallet import STATIC_DIR, claims
from citypass.issuer.wallet.benefit import uses_left

router = APIRouter(tags=["passes and revocations"])

#: The wallet page may load and connect to its own origin only (no CDN, no third party, no inline script).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "worker-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
#: Texts the wallet page uses: its own, the reasons' (it names an expired pass like a gate does) and a benefit
#: card's uses left.
TEXT_PREFIXES = ("wallet.", "reason.", "benefit.")


def _raw(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what}: not base64url") from None


def holder_key(alg: str, public_key: str) -> VerifyKey:
    """The browser's public key: 32 raw bytes (Ed25519) or a SEC1 point (P-256, 65 or 33 bytes)."""
    raw = _raw(public_key, "public_key")
    try:
        if alg == "Ed25519" and len(raw) == 32:
            return VerifyKey.from_raw(Alg.EDDSA, raw)
        if alg == "ES256" and len(raw) in (33, 65):
            return VerifyKey.from_raw(Alg.ES256, raw)
    except ValueError:
        raise InvalidInput("public_key: not a valid point on P-256") from None
    raise InvalidInput(f"public_key: {len(raw)} bytes is not a raw {alg} public key")


@router.post("/v1/wallet/claims", status_code=201, response_model=WalletPass, summary="Claim a wallet pass",
             description="Called by the wallet page, with no bearer token: the claim token from the claim link "
                         "authorises this one call. The browser registers its holder key (with a signature "
                         "proving it holds the private half) and receives the credential bound to it. The same "
                         "key again gets the same pass; any other key is refused (409), as is an expired link.",
             responses=errors(404, 409, 422))
def claim_pass(request: Request, body: WalletClaim, services: ServicesDep) -> WalletPass:
    request.state.actor = f"wallet-claim:{body.token[4:16] if body.token.startswith('cpw_') else '?'}"
    key = holder_key(body.alg, body.public_key)
    proof = _raw(body.proof, "proof")
    if len(proof) != 64:
        raise InvalidInput("proof: a signature is 64 bytes")
    granted = claims.claim(services.issuer, body.token, key, proof, services.now())
    note(request, f"wallet claim {granted.claim_id}: {granted.display.product} {granted.credential_id}")
    return granted


@router.post("/v1/wallet/benefit", response_model=BenefitUses, summary="A benefit card's uses left",
             description="Called by the wallet page whenever it is online, with no bearer token: a fresh "
                         "presentation of the card (signed by the phone's holder key, within a gate's window) is "
                         "the authority. Answers the central count of uses left this period and when it was counted.",
             responses=errors(404, 422))
def benefit_uses(request: Request, body: BenefitQuery, services: ServicesDep) -> BenefitUses:
    uses = uses_left(services.issuer, body.presentation, services.now())
    request.state.actor = f"wallet:{uses.credential_id}"
    return uses


class _WalletFiles(StaticFiles):
    """The built page, with the policy header; the page and its service worker are revalidated on every load
    (a new release must reach phones), the rest may be cached."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not path.startswith("assets/"):
            response.headers["Cache-Control"] = "no-cache"
        return response


def mount(app: FastAPI) -> None:
    """Add the wallet's routes and its page to ``app``."""
    mimetypes.add_type("application/manifest+json", ".webmanifest")
    app.include_router(router)

    @app.get("/wallet/i18n.json", include_in_schema=False)
    def wallet_texts() -> JSONResponse:
        langs = catalog.languages()
        body: dict[str, Any] = {"languages": list(langs),
                                "texts": {lang: catalog.table(lang, TEXT_PREFIXES) for lang in langs}}
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    @app.get("/wallet", include_in_schema=False)
    def wallet_slash() -> RedirectResponse:
        return RedirectResponse("/wallet/", status_code=308)

    app.mount("/wallet", _WalletFiles(directory=STATIC_DIR, html=True), name="wallet")
