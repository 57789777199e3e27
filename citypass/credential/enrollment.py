"""The enrollment exchange on the wire: what a device being provisioned sends the issuer, and what it gets back.

Both ends use these models — the issuer's API (:mod:`citypass.issuer.api.fleet`) to validate the request and
shape its answer, the device (:mod:`citypass.provisioning.issuerclient`) to validate that answer before it
trusts a byte of it — so the two cannot drift apart, and a field renamed on one side is a type error on the
other.

    >>> EnrollmentRedeem(token="cpe_0123456789ab_" + "x" * 43, csr=None).model_dump()["csr"] is None
    True
    >>> from pydantic import ValidationError
    >>> try:
    ...     EnrollmentGrant.model_validate({"device_id": "gate-1", "site": "one"})
    ... except ValidationError as exc:
    ...     sorted(str(e["loc"][0]) for e in exc.errors())[:3]
    ['api_token', 'direction', 'ledger_seq']
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

#: The shape of an enrollment token, ``cpe_<12 hex id>_<43 base64url>`` (see :mod:`citypass.issuer.tokens`):
#: a device checks it before it makes a key or calls anybody, so a token pasted into the wrong field, or
#: cut short, is refused at once.
ENROLLMENT_TOKEN_RE: Final = re.compile(r"^cpe_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")

#: How long after redeeming a device may give an enrollment back (``POST /v1/enrollments/release``) when
#: a check after the redeem failed on its side, so that the same token works again.
RELEASE_WINDOW_S: Final = 15 * 60


def looks_like_enrollment_token(text: str) -> bool:
    """Whether ``text`` has the shape of an enrollment token (not whether the issuer knows it).

    >>> looks_like_enrollment_token("cpe_0123456789ab_" + "x" * 43)
    True
    >>> looks_like_enrollment_token("cpt_0123456789ab_" + "x" * 43)  # an API token, not an enrollment
    False
    """
    return bool(ENROLLMENT_TOKEN_RE.fullmatch(text))


class EnrollmentRedeem(BaseModel):
    """``POST /v1/enrollments/redeem``: the one-time token, and the device's certificate signing request."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    token: str = Field(min_length=1, max_length=200, description="The enrollment token.")
    csr: str | None = Field(None, max_length=8000,
                            description="PEM certificate signing request made on the device (EC P-256/P-384, "
                                        "CN = the device id). The issuer must have a broker home to sign it.")


class EnrollmentGrant(BaseModel):
    """The issuer's answer to a redeemed enrollment: who the device is, its credentials and its first ledger."""

    device_id: str
    site: int
    direction: str
    api_token: str = Field(description="The device's own API token (role `device`): keep it on the device.")
    ledger_seq: int
    root_public_key: str = Field(description="PEM of the root key to pin.")
    certificate: str | None = Field(None, description="With a CSR: the device certificate (PEM, CN = device id).")
    ca_certificate: str | None = Field(None, description="With a CSR: the device CA's certificate (PEM).")
    broker: str | None = Field(None, description="With a CSR: the MQTT broker as host:port, if the issuer knows it.")
    snapshot: str = Field(description="The current signed ledger snapshot (base64), for the gate's first boot.")
    site_settings: dict[str, Any] = Field(description="The device's site, as signed into the snapshot.")


class EnrollmentCheck(BaseModel):
    """``POST /v1/enrollments/check`` and ``/release``: the enrollment token alone."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, description="The enrollment token.")


class EnrollmentPreview(BaseModel):
    """What redeeming a token would give, told without spending it: the device checks every one of these
    (gate id, site, root key, that certificates are signed) *before* it redeems, so a mistake is found while
    the token is still good."""

    device_id: str
    site: int
    site_name: str | None = Field(description="The site's name, as in the signed snapshot.")
    direction: str
    expires_at: int = Field(description="Until when the token may be redeemed (Unix s).")
    root_kid: str = Field(description="Hex id of the root key the snapshot will be signed by.")
    signs_certificates: bool = Field(description="Whether a CSR gets a device certificate (the issuer runs with "
                                                 "--broker-home).")
    broker: str | None = Field(None, description="The broker enrolled devices are told to dial, if known.")
