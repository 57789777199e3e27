"""Partner platforms for tests: a GM1 metro platform with an SM2 key, a CP1 tourism platform with Ed25519."""

from __future__ import annotations

import functools
import os

from citypass.credential import Mode, gm1, sm2
from citypass.credential.keys import SigningKey
from citypass.credential.partners import Partner, PartnerKey
from citypass.credential.trustlist import TrustList
from tests.helpers.codes import NOW, World


@functools.cache
def metro_key() -> sm2.SM2SigningKey:
    """One SM2 key for the whole run (generating one is cheap, but one key keeps failures comparable)."""
    return sm2.SM2SigningKey.generate()


def metro(key: sm2.SM2SigningKey | None = None, **scope: object) -> Partner:
    """Platform 7, 杭州地铁: transit and group codes at sites 30 and 40 (World's first metro station and bus)."""
    key = key or metro_key()
    fields: dict[str, object] = {"products": frozenset({3, 4}), "sites": frozenset({30, 40}),
                                 "valid_from": NOW - 86_400} | scope
    return Partner("hz-metro", 7, "杭州地铁", "Hangzhou Metro", (PartnerKey("sm2", key.public.raw),),
                   **fields)  # type: ignore[arg-type]


def tourism(key: SigningKey, **scope: object) -> Partner:
    """Platform 9, 浙里游: CP1 annual passes at World's scenic site 1 only."""
    fields: dict[str, object] = {"products": frozenset({1}), "sites": frozenset({1}),
                                 "valid_from": NOW - 86_400} | scope
    return Partner("zj-tourism", 9, "浙里游", "Zhejiang Tourism", (PartnerKey("ed25519", key.public.raw),),
                   **fields)  # type: ignore[arg-type]


def trust_with(world: World, *partners: Partner) -> TrustList:
    base = world.trust()
    return TrustList(base.version, base.issued_at, base.keys, partners=partners)


def ride(key: sm2.SM2SigningKey | None = None, platform: int = 7, **fields: object) -> str:
    """A GM1 ride code (transit, metro and bus) valid for ten minutes around NOW."""
    key = key or metro_key()
    values: dict[str, object] = {"product": 3, "account": "13800000000", "modes": int(Mode.METRO | Mode.BUS)} | fields
    code = gm1.GM1Code(platform, PartnerKey("sm2", key.public.raw).kid, code_id=os.urandom(8),  # type: ignore[arg-type]
                       valid_from=NOW - 60, valid_to=NOW + 600, **values)
    return gm1.encode(code, key)
