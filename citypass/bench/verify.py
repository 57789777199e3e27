"""``citypass bench verify``: offline verifications per second, and the raw signature rate beside them.

Method: mint realistic codes (an 18-site annual pass, static; the same pass holder-bound and shown as a
dynamic presentation), then on one core time (a) the full :func:`citypass.credential.verifier.verify` — Base45,
CBOR, COSE parsing, trust lookup, signature(s), scope, revocation and time rules — and (b) a bare
``Ed25519PublicKey.verify`` of a 64-byte signature over a message of the same size. Because both run in
the same process one after the other, their ratio is what to compare across machines; the absolute rates
move with the CPU and its load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from citypass.credential.claims import Annual, Credential, HolderKey
from citypass.credential.codes import issue, present
from citypass.credential.keys import SigningKey
from citypass.credential.revocations import RevocationSet
from citypass.credential.sites import SiteSettings
from citypass.credential.trustlist import TrustedKey, TrustList
from citypass.credential.verifier import verify

NOW = 1_800_000_000


@dataclass(frozen=True)
class Rate:
    name: str
    per_second: float
    us_each: float


def _rate(name: str, fn: Callable[[], object], seconds: float) -> Rate:
    for _ in range(200):  # warm caches and lazy imports
        fn()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return Rate(name, count / elapsed, elapsed / count * 1e6)


def run_verify_bench(seconds: float = 1.0, revoked: int = 100_000) -> list[Rate]:
    issuer, holder = SigningKey.generate(), SigningKey.generate()
    trust = TrustList(1, NOW, (TrustedKey(issuer.kid, issuer.public, "issuer", 0),))
    site = SiteSettings(number=1, name="west-lake")
    view = RevocationSet(revoked=frozenset(os.urandom(8) for _ in range(revoked)))
    sites = frozenset(range(1, 19))
    static = issue(Credential(os.urandom(8), Annual(sites, 30), NOW - 86400, NOW + 86400 * 300), issuer)
    bound = issue(Credential(os.urandom(8), Annual(sites, 30), NOW - 86400, NOW + 86400 * 300,
                             HolderKey(holder.public)), issuer)
    dynamic = present(bound, holder, NOW - 5)
    assert verify(static, trust, view, site, NOW).allowed and verify(dynamic, trust, view, site, NOW).allowed
    message = os.urandom(110)
    signature = issuer.sign(message)
    raw_key = issuer.public.key
    assert isinstance(raw_key, Ed25519PublicKey)
    return [
        _rate("raw Ed25519 verify (one signature)", lambda: raw_key.verify(signature, message), seconds),
        _rate("verify static annual pass (1 signature)", lambda: verify(static, trust, view, site, NOW), seconds),
        _rate("verify dynamic presentation (2 signatures)", lambda: verify(dynamic, trust, view, site, NOW), seconds),
    ]


@click.command("verify")
@click.option("--seconds", type=float, default=1.0, show_default=True, help="Time per measurement.")
@click.option("--revoked", type=int, default=100_000, show_default=True, help="Revocations in the view.")
def verify_command(seconds: float, revoked: int) -> None:
    """Verifications per second on one core, static and dynamic, beside raw Ed25519."""
    from rich.console import Console
    from rich.table import Table

    rates = run_verify_bench(seconds, revoked)
    raw = rates[0].per_second
    table = Table(title=f"Offline verification, one core, {revoked:,} revocations in view")
    for col in ("measurement", "per second", "µs each", "× raw verify time"):
        table.add_column(col, justify="right" if col != "measurement" else "left")
    for r in rates:
        table.add_row(r.name, f"{r.per_second:,.0f}", f"{r.us_each:.1f}", f"{raw / r.per_second:.2f}")
    Console().print(table)
