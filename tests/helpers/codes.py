"""Keys, a trust list, sites of every kind and a small factory for codes of every product (:class:`World`)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from citypass.credential import (
    Annual,
    Credential,
    Group,
    HolderKey,
    Mode,
    Reservation,
    SigningKey,
    SiteKind,
    SiteSettings,
    Terms,
    Transit,
    TrustedKey,
    TrustList,
    issue,
)

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
DAY = 86_400
ANNUAL_SITES = frozenset(range(1, 19))


@dataclass
class World:
    """A root, an issuer key, a ledger key, a trust list and sites of every kind."""

    root: SigningKey = field(default_factory=SigningKey.generate)
    issuer: SigningKey = field(default_factory=SigningKey.generate)
    ledger: SigningKey = field(default_factory=SigningKey.generate)
    holder: SigningKey = field(default_factory=SigningKey.generate)
    sites: dict[str, SiteSettings] = field(default_factory=lambda: {
        "scenic": SiteSettings(number=1, name="west-lake", kind=SiteKind.SCENIC),
        "scenic2": SiteSettings(number=2, name="lingyin", kind=SiteKind.SCENIC),
        "museum": SiteSettings(number=20, name="zhejiang-museum", kind=SiteKind.MUSEUM),
        "metro": SiteSettings(number=30, name="metro-longxiangqiao", kind=SiteKind.METRO),
        "metro2": SiteSettings(number=31, name="metro-fengqi", kind=SiteKind.METRO),
        "bus": SiteSettings(number=40, name="bus-7", kind=SiteKind.BUS),
        "water_bus": SiteSettings(number=41, name="water-bus-1", kind=SiteKind.WATER_BUS),
    })

    def trust(self, *extra: TrustedKey, require_dynamic: frozenset[int] = frozenset()) -> TrustList:
        keys = (
            TrustedKey(self.issuer.kid, self.issuer.public, "issuer", 0),
            TrustedKey(self.ledger.kid, self.ledger.public, "ledger", 0),
            *extra,
        )
        return TrustList(1, NOW - DAY, keys, require_dynamic)

    def code(self, terms: Terms, *, valid_from: int | None = NOW - DAY, valid_to: int | None = NOW + 300 * DAY,
             holder: bool = False, key: SigningKey | None = None, cred_id: bytes | None = None) -> str:
        cred = Credential(cred_id or os.urandom(8), terms, valid_from, valid_to,
                          HolderKey(self.holder.public) if holder else None)
        return issue(cred, key or self.issuer)

    def annual(self, **kw: object) -> str:
        return self.code(Annual(ANNUAL_SITES, 30), **kw)  # type: ignore[arg-type]

    def reservation(self, party: int = 3, start: int = NOW - 600, end: int = NOW + 3000, **kw: object) -> str:
        return self.code(Reservation(20, party, 15), valid_from=start, valid_to=end, **kw)  # type: ignore[arg-type]

    def transit(self, modes: Mode = Mode.METRO | Mode.BUS | Mode.WATER_BUS, **kw: object) -> str:
        return self.code(Transit("13800000000", modes), **kw)  # type: ignore[arg-type]

    def group(self, party: int = 5, **kw: object) -> str:
        return self.code(Group(1, party), **kw)  # type: ignore[arg-type]


CodeFactory = Callable[..., str]


#: The QR alphanumeric character set: every City Pass code is written in it (the densest QR mode for text).
QR_TEXT_RE = re.compile(r"^[0-9A-Z $%*+\-./:]+$")
