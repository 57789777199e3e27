"""A served issuer for tests and benchmarks: a fresh home, a token per role, the API on a free port.

    >>> with served_issuer(Path(tmp), now=1_800_000_000) as served:     # doctest: +SKIP
    ...     client = served.client("issuer")
    ...     client.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}).status_code
    201

The clock is a :class:`FakeClock` the test moves (``served.clock.now += 3600``), so expiry and
reports are tested at any instant without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from citypass.issuer.api import create_app
from citypass.issuer.api.limits import RateLimits
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import ROLES
from citypass.issuer.service import Issuer
from citypass.issuer.tokens import create_token

SITES = (("west-lake", "scenic"), ("lingyin", "scenic"), ("zhejiang-museum", "museum"),
         ("metro-longxiangqiao", "metro"), ("metro-fengqi", "metro"), ("bus-k7", "bus"))


@dataclass
class FakeClock:
    now: int

    def __call__(self) -> int:
        return self.now


@dataclass
class ServedIssuer:
    issuer: Issuer
    clock: FakeClock
    server: BackgroundServer
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, role: str | None = None, *, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An httpx client for the served API, authenticated as ``role`` (or with ``token``; neither: anonymous)."""
        text = token if token is not None else (self.tokens[role] if role else None)
        headers = {"Authorization": f"Bearer {text}"} if text else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@contextmanager
def served_issuer(path: Path, *, now: int, sites: Sequence[tuple[str, str]] = SITES,
                  limits: RateLimits | None = RateLimits(), database: str | None = None) -> Iterator[ServedIssuer]:
    """Initialise an issuer home at ``path`` (its store in the PostgreSQL ``database`` if given), create one token
    per role, and serve the API (with ``limits``, the production request limits by default)."""
    issuer = Issuer.init(IssuerHome(path), sites, now=now, database=database)
    clock = FakeClock(now)
    tokens = {role: create_token(issuer.store, role, now, label=f"test {role}").text for role in ROLES}
    try:
        with BackgroundServer(create_app(issuer, clock=clock, limits=limits)) as server:
            yield ServedIssuer(issuer, clock, server, tokens)
    finally:
        issuer.close()
