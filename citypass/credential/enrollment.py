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

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
