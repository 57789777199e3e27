"""``citypass bench verify``: offline verifications per second, and the raw signature rate beside them.

Method: mint realistic codes (an 18-site annual pass, static; the same pass holder-bound and shown as a
dynamic presentation), then on one core time (a) the full :func:`citypass.credential.verifier.verify` — Base45,
CBOR, COSE parsing, trust lookup, signature(s), scope, revocation and time rules — and (b) a bare
``Ed25519PublicKey.verify`` of a 64-byte signature over a message of the same size. Because both run in
the same process one after the other, their ratio is what to compare across machines; the absolute rates
move with the CPU and its load.

Beside our own Ed25519 codes it times, the same way: a raw P-256 and a raw SM2 verification (Tongsuo, through
:mod:`citypass.credential.sm2`); the same pass signed with P-256; a partner platform's CP1 pass (its own
Ed25519 key, judged under its scope in the trust list); and a partner's GM1 ride code (SM2/SM3). The
issue's goal for SM2 is a raw verification at most 3× a raw Ed25519 one on the same machine. For that
comparison a raw Ed25519 verification, the gate's prehashed SM2 verification and ``tongsuopy``'s one-call SM2
verification take turns, 25 calls each, round after round (:func:`interleaved_rounds`); the rows give each one's
best round and its median round, two estimates that a shared machine's load moves differently.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from citypass.credential import gm1, sm2
from citypass.credential.claims import Annual, Credential, HolderKey, Mode
from citypass.credential.codes import issue, present
from citypass.credential.keys import Alg, SigningKey, kid_for
from citypass.credential.partners import Partner, PartnerKey
from citypass.credential.revocations import RevocationSet
from citypass.credential.sites import SiteKind, SiteSettings
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
    rates = [
        _rate("raw Ed25519 verify (one signature)", lambda: raw_key.verify(signature, message), seconds),
        _rate("verify static annual pass (1 signature)", lambda: verify(static, trust, view, site, NOW), seconds),
        _rate("verify dynamic presentation (2 signatures)", lambda: verify(dynamic, trust, view, site, NOW), seconds),
    ]
    return rates + _other_rates(seconds, view, sites)


def _other_rates(seconds: float, view: RevocationSet, sites: frozenset[int]) -> list[Rate]:
    """P-256, a partner's CP1 code and a partner's GM1 (SM2) code, with the raw verifications beside them."""
    issuer, p256 = SigningKey.generate(), SigningKey.generate(Alg.ES256)
    partner_key, metro_key = SigningKey.generate(), sm2.SM2SigningKey.generate() if sm2.available() else None
    partner_keys = [PartnerKey("ed25519", partner_key.public.raw)]
    tourism = Partner("zj-tourism", 9, "浙里游", "Zhejiang Tourism", tuple(partner_keys), 0,
                      products=frozenset({1}), sites=sites)
    listed = [tourism]
    if metro_key is not None:
        listed.append(Partner("hz-metro", 7, "杭州地铁", "Hangzhou Metro", (PartnerKey("sm2", metro_key.public.raw),),
                              0, products=frozenset({3})))
    trust = TrustList(1, NOW, (TrustedKey(issuer.kid, issuer.public, "issuer", 0),
                               TrustedKey(p256.kid, p256.public, "issuer", 0)), partners=tuple(listed))
    site = SiteSettings(number=1, name="west-lake")
    valid = (NOW - 86400, NOW + 86400 * 300)
    p256_code = issue(Credential(os.urandom(8), Annual(sites, 30), *valid), p256)
    partner_code = issue(Credential(os.urandom(8), Annual(sites), *valid), partner_key)
    message = os.urandom(110)
    p256_sig = p256.sign(message)
    out = [
        _rate("raw P-256 verify (one signature)", lambda: p256.public.verify(p256_sig, message), seconds),
        _rate("verify CP1 P-256 static annual pass", lambda: verify(p256_code, trust, view, site, NOW), seconds),
        _rate("verify partner CP1 pass (Ed25519, partner scope)",
              lambda: verify(partner_code, trust, view, site, NOW), seconds),
    ]
    assert verify(p256_code, trust, view, site, NOW).allowed and verify(partner_code, trust, view, site, NOW).allowed
    if metro_key is not None:
        metro_site = SiteSettings(number=30, name="station", kind=SiteKind.METRO)
        ride = gm1.encode(gm1.GM1Code(7, kid_for(metro_key.public.raw), 3, os.urandom(8), NOW - 60, NOW + 600,
                                      account="13800000000", modes=int(Mode.METRO)), metro_key)
        assert verify(ride, trust, view, metro_site, NOW).allowed
        sm2_sig = metro_key.sign(message)
        sm2_pub = metro_key.public
        ed_key = SigningKey.generate()
        ed_sig = ed_key.sign(message)
        timed = interleaved_rounds(
            lambda: ed_key.public.verify(ed_sig, message), lambda: sm2_pub.verify(sm2_sig, message),
            lambda: sm2_pub.verify_unprepared(sm2_sig, message), rounds=max(10, int(seconds * 40)), n=25)
        best_ed, best_sm2, best_one_call = (min(r[i] for r in timed) for i in range(3))
        med_ed, med_sm2 = median_round(timed, 0), median_round(timed, 1)
        out += [
            Rate("raw Ed25519 verify, interleaved with SM2 (best round)", 1e6 / best_ed, best_ed),
            Rate("raw SM2 verify, interleaved with Ed25519 (best round)", 1e6 / best_sm2, best_sm2),
            Rate("raw SM2 through tongsuopy verify(), Z_A per call, interleaved", 1e6 / best_one_call,
                 best_one_call),
            Rate("raw Ed25519 verify, interleaved with SM2 (median round)", 1e6 / med_ed, med_ed),
            Rate("raw SM2 verify, interleaved with Ed25519 (median round)", 1e6 / med_sm2, med_sm2),
            _rate("raw SM2 verify, Tongsuo (one signature)", lambda: sm2_pub.verify(sm2_sig, message), seconds),
            _rate("verify partner GM1 ride code (SM2/SM3)", lambda: verify(ride, trust, view, metro_site, NOW),
                  seconds),
        ]
    return out


def interleaved(*fns: Callable[[], object], rounds: int = 20, n: int = 50) -> tuple[float, ...]:
    """µs per call of each of ``fns``, each the best of ``rounds`` rounds of ``n`` calls, the functions taking
    turns round by round: on a shared, loaded machine all meet the same quiet moments, so their ratios hold
    where separate timings (one during a load spike) would not."""
    timed = interleaved_rounds(*fns, rounds=rounds, n=n)
    return tuple(min(r[i] for r in timed) for i in range(len(fns)))


def interleaved_rounds(*fns: Callable[[], object], rounds: int = 20, n: int = 50) -> list[tuple[float, ...]]:
    """µs per call of each of ``fns`` in each round (the functions taking turns within a round)."""
    out = []
    for _ in range(rounds):
        row = []
        for fn in fns:
            start = time.perf_counter()
            for _ in range(n):
                fn()
            row.append((time.perf_counter() - start) / n * 1e6)
        out.append(tuple(row))
    return out


def median_round(timed: list[tuple[float, ...]], i: int) -> float:
    """µs per call of ``fns[i]`` in its median round: the rounds a load spike spoiled fall to one side (the best
    rounds of each function, :func:`interleaved`, may come from different quiet moments)."""
    return statistics.median(r[i] for r in timed)


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
    console = Console()
    console.print(table)
    ed, sm, one_call = (next((r for r in rates if r.name.startswith(p)), None) for p in (
        "raw Ed25519 verify, interleaved", "raw SM2 verify, interleaved", "raw SM2 through tongsuopy"))
    if ed is not None and sm is not None and one_call is not None:
        ratio = sm.us_each / ed.us_each
        med = [r.us_each for r in rates if r.name.endswith("(median round)")]
        by_median = med[1] / med[0]
        met = sum(x <= 3 for x in (ratio, by_median))
        console.print(f"raw SM2 / raw Ed25519, interleaved best rounds: {ratio:.2f}×, median rounds: "
                      f"{by_median:.2f}× (goal ≤ 3×: {('NOT met', 'met by one of the two only', 'met')[met]}); "
                      f"through tongsuopy's one-call verify() {one_call.us_each / ed.us_each:.2f}× (prehashing saves "
                      f"{one_call.us_each - sm.us_each:.1f} µs a verification)")
    else:
        console.print("SM2: tongsuopy is not installed here; the GM1 rows are missing")
