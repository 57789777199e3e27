"""The visitors' cards, issued for real: every code comes from the issuer's HTTP API.

Annual and transit passes from ``POST /v1/passes`` (transit passes bound to each rider's phone key, so
the phone shows live codes), museum reservations from ``POST /v1/reservations`` in a slot made with
``POST /v1/venues/{venue}/slots``. Only the forged code is made here: the issuer's key id over a
signature from a key nobody trusts.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from citypass.city.http import ok
from citypass.city.script import Card, Cast, Member
from citypass.credential import SigningKey, parse
from citypass.credential.codes import encode_text
from citypass.credential.cose import encode_cbor, sign1

MUSEUM = "zhejiang-museum"


def forge_signature(code: str) -> str:
    """The same claims and the issuer's key id, signed by a stranger's key: a gate must say
    ``bad_signature``."""
    parsed = parse(code)
    return encode_text(sign1(SigningKey.generate(), encode_cbor(parsed.credential.to_claims()), kid=parsed.sign1.kid))


class Minter:
    """Issues cards through the API, as the issuer's app and the museum's booking site would."""

    def __init__(self, api: httpx.Client, now: int, capacity: int) -> None:
        self.api = api
        self.riders = 0
        self.slot = ok(api.post(f"/v1/venues/{MUSEUM}/slots",
                                json={"starts_at": now - 600, "ends_at": now + 3 * 3600, "capacity": capacity}))

    def _card(self, body: dict[str, Any], path: str = "/v1/passes", party: int = 1,
              phone: SigningKey | None = None) -> Card:
        if phone is not None:
            body["holder_key"] = base64.b64encode(phone.public.raw).decode()
        out = ok(self.api.post(path, json=body))
        code: str = out["code"]
        return Card(code, parse(code).credential.id.hex(), party, phone)

    def annual(self) -> Card:
        return self._card({"product": "annual", "sites": ["west-lake"]})

    def reservation(self, party: int) -> Card:
        return self._card({"slot_id": self.slot["id"], "party": party}, "/v1/reservations", party)

    def transit(self, modes: list[str]) -> Card:
        self.riders += 1
        return self._card({"product": "transit", "account": f"1380000{self.riders:04d}", "modes": modes},
                          phone=SigningKey.generate())

    def member(self, m: Member) -> Card:
        if m.kind == "annual":
            return self.annual()
        if m.kind == "museum":
            return self.reservation(m.party)
        return self.transit(["metro"] if m.kind == "metro" else ["bus"])


def mint_cast(api: httpx.Client, now: int, members: list[Member]) -> Cast:
    """Everyone's cards for the day (``members`` is the crowd from :func:`citypass.city.script.crowd`)."""
    mint = Minter(api, now, capacity=20 + sum(m.party for m in members if m.kind == "museum"))
    wrong_site = mint.reservation(1)
    return Cast(
        annual=mint.annual(), revocable=mint.annual(), family=mint.reservation(3), couple=mint.reservation(2),
        shared=mint.reservation(2), lent=mint.reservation(1), wrong_site=wrong_site,
        forged=Card(forge_signature(wrong_site.code), wrong_site.credential_id),
        riders=(mint.transit(["metro"]), mint.transit(["metro"])), screenshot=mint.transit(["metro"]),
        jumper=mint.transit(["metro"]), bus_rider=mint.transit(["bus"]), static_transit=mint.transit(["bus"]),
        crowd=tuple((m, mint.member(m)) for m in members),
    )
