"""Shared pieces of the API's schema: the strict request base model, error bodies, holder keys."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from citypass.credential.devices import OUTBOX_ID_PATTERN
from citypass.credential.keys import Alg, VerifyKey
from citypass.errors import InvalidInput

#: Bounds for integers the API accepts: Unix seconds up to year 36812, and SQLite's INTEGER range.
MAX_TIME = 2**40
MAX_INT = 2**62
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
ID_PATTERN = OUTBOX_ID_PATTERN  # event, tap and gate ids: the rule MQTT uploads follow too


class Strict(BaseModel):
    """Request bodies: unknown fields are refused (a typo must not be silently ignored), no NaN."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: body/query/path and the field's path.",
                                 examples=[["body", "party"]])
    msg: str = Field(examples=["Input should be less than or equal to 99"])
    type: str = Field(examples=["less_than_equal"])


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, in one sentence.", examples=["no slot 's_0123456789ab'"])
    errors: list[FieldError] | None = Field(None, description="For 422 from validation: each field at fault.")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (422 always: any input can be bad; 414
    and 429 always: the request limits in front of every route, :mod:`citypass.issuer.api.limits`)."""
    codes = tuple(sorted({*codes, 414, 422, 429}))
    text = {
        401: "No bearer token, or an invalid or revoked one.",
        403: "The token's role may not call this endpoint.",
        404: "No such resource.",
        409: "Conflicts with the stored state.",
        413: "Request body too large.",
        414: "Request target (path and query) too long.",
        422: "The request is invalid (the detail says which field and why).",
        429: "Too many requests from this token or address: wait `Retry-After` seconds.",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}


AUTH_ERRORS = (401, 403)


def parse_holder_key(text: str) -> VerifyKey:
    """A holder public key from PEM (``-----BEGIN PUBLIC KEY-----``) or raw base64: 32 bytes for
    Ed25519, a 33- or 65-byte SEC1 point for P-256. ValueError with a readable message otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            return VerifyKey.from_pem(text.encode())
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"holder_key: not a usable PEM public key ({exc})") from None
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("holder_key: neither PEM nor base64") from None
    try:
        if len(raw) == 32:
            return VerifyKey.from_raw(Alg.EDDSA, raw)
        if len(raw) in (33, 65):
            return VerifyKey.from_raw(Alg.ES256, raw)
    except ValueError:
        raise InvalidInput("holder_key: not a valid point on P-256") from None
    raise InvalidInput(f"holder_key: {len(raw)} raw bytes is neither Ed25519 (32) nor P-256 (33 or 65)")
