"""The wallet over HTTP, served for real: a pass ordered for a phone, claimed once with a key the phone made, and
bound exactly as ``holder present`` expects — the gate's own decision core admits its presentations.

The browser's side (the same flow in Chromium, with WebCrypto keys) is in tests/test_browser_wallet.py; here a
phone is a key made with ``cryptography``, which lets the tests try what a page never would.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from citypass.cli import cli
from citypass.credential.codes import decode_text, parse, present
from citypass.credential.keys import Alg, SigningKey
from citypass.credential.snapshot import load_snapshot
from citypass.credential.visitortexts import SOURCE
from citypass.credential.walletclaim import claim_proof_message
from citypass.gate.decision import GateContext, decide
from citypass.gate.memory_ledger import MemoryLedger
from citypass.issuer.api import create_app
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.databases import Databases, query
from tests.helpers.wallet import b64url, claim_body, public_raw

NOW = 1_800_000_000


def gate_decides(served: ServedIssuer, text: str, site: str, at: int) -> tuple[bool, str | None]:
    snap = load_snapshot(served.issuer.export(NOW), served.issuer.root_key().public)
    settings = snap.site(site)
    assert settings is not None
    d = decide(text, MemoryLedger(snap, clock_floor=NOW - 3600), GateContext(f"{site}-1", settings), at)
    return d.allowed, d.reason.value if d.reason else None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path_factory.mktemp("wallet") / "issuer", now=NOW, database=issuer_database()) as s:
        yield s


@pytest.fixture
def issuer_api(served: ServedIssuer) -> Iterator[httpx.Client]:
    with served.client("issuer") as client:
        yield client


@pytest.fixture
def anonymous(served: ServedIssuer) -> Iterator[httpx.Client]:
    with served.client() as client:
        yield client


def order(api: httpx.Client, **body: object) -> str:
    answer = api.post("/v1/passes", json={"holder": "wallet", **body})
    assert answer.status_code == 201, answer.text
    out = answer.json()
    assert "code" not in out and out["holder"] == "wallet"
    url = out["claim_url"]
    assert url.startswith(api.base_url.join("/wallet/").__str__() + "#claim=cpw_" + out["claim_id"] + "_"), url
    return str(url.split("#claim=")[1])


def test_a_pass_ordered_for_a_wallet_is_signed_for_the_key_that_claims_it_and_the_gate_admits_it(
        served: ServedIssuer, issuer_api: httpx.Client, anonymous: httpx.Client) -> None:
    token = order(issuer_api, product="transit", account="13800000000", modes=["metro", "bus"])
    phone = SigningKey.generate()
    answer = anonymous.post("/v1/wallet/claims", json=claim_body(token, phone))
    assert answer.status_code == 201, answer.text
    got = answer.json()
    cred = parse(got["code"]).credential
    assert cred.holder is not None and cred.holder.key.raw == phone.public.raw  # bound like `holder present`
    assert got["credential_id"] == cred.id.hex() and got["claim_id"] == token.split("_")[1]
    assert base64.urlsafe_b64decode(got["credential"] + "==") == decode_text(got["code"])
    assert got["display"] == {"product": "transit", "sites": [], "site_names": [], "modes": ["metro", "bus"],
                              "party": 1, "valid_from": NOW, "valid_to": NOW + 86_400, "benefit_left": None,
                              "benefit_period": None}
    assert (got["refresh_s"], got["window_s"]) == (5, 30)

    live = present(got["code"], phone, NOW)
    assert gate_decides(served, live, "metro-longxiangqiao", NOW) == (True, None)
    assert gate_decides(served, live, "metro-longxiangqiao", NOW + 60) == (False, "presentation_expired")
    assert gate_decides(served, got["code"], "metro-longxiangqiao", NOW) == (False, "dynamic_required")

    again = anonymous.post("/v1/wallet/claims", json=claim_body(token, phone))  # the answer was lost: same pass
    assert again.status_code == 201 and again.json()["credential_id"] == got["credential_id"]
    thief = anonymous.post("/v1/wallet/claims", json=claim_body(token, SigningKey.generate()))
    assert thief.status_code == 409 and "used already" in thief.json()["detail"]


def test_a_p256_key_as_webcrypto_exports_it_is_bound_compressed_and_its_r_s_signatures_verify(
        served: ServedIssuer, issuer_api: httpx.Client, anonymous: httpx.Client) -> None:
    token = order(issuer_api, product="annual", sites=["west-lake", "lingyin"])
    phone = SigningKey.generate(Alg.ES256)
    assert len(public_raw(phone)) == 65
    got = anonymous.post("/v1/wallet/claims", json=claim_body(token, phone)).json()
    holder = parse(got["code"]).credential.holder
    assert holder is not None and holder.key.alg is Alg.ES256 and holder.key.raw == phone.public.raw  # 33 bytes
    assert got["display"]["sites"] == ["west-lake", "lingyin"] and got["display"]["product"] == "annual"
    assert gate_decides(served, present(got["code"], phone, NOW), "west-lake", NOW + 5) == (True, None)


def test_the_wallet_is_told_each_sites_title_per_language_and_its_slug_where_it_has_none(
        issuer_api: httpx.Client, anonymous: httpx.Client) -> None:
    for site in ({"name": "leifeng-pagoda", "title": "雷峰塔", "title_en": "Leifeng Pagoda"},
                 {"name": "gushan", "title": "孤山"}, {"name": "xixi-wetland"}):
        assert issuer_api.post("/v1/sites", json=site).status_code == 201
    token = order(issuer_api, product="annual", sites=["xixi-wetland", "gushan", "leifeng-pagoda"])
    phone = SigningKey.generate()
    display = anonymous.post("/v1/wallet/claims", json=claim_body(token, phone)).json()["display"]
    assert display["site_names"] == [  # in site-number order, like ``sites``
        {"name": "leifeng-pagoda", "title": {"zh": "雷峰塔", "en": "Leifeng Pagoda"}},
        {"name": "gushan", "title": {"zh": "孤山"}},  # no English title: the wallet's English line shows the slug
        {"name": "xixi-wetland", "title": {}}]
    assert display["sites"] == ["雷峰塔", "孤山", "xixi-wetland"]  # what wallets from before site_names show


def test_what_a_claim_is_refused_for(served: ServedIssuer, issuer_api: httpx.Client,
                                     anonymous: httpx.Client) -> None:
    token = order(issuer_api, product="group", site="lingyin", party=12, claim_ttl_s=60)
    phone, other = SigningKey.generate(), SigningKey.generate()
    wrong_claim = claim_body(token, phone, proof_for="000000000000")
    assert anonymous.post("/v1/wallet/claims", json=wrong_claim).status_code == 422
    not_holder = claim_body(token, phone) | {"proof": b64url(other.sign(claim_proof_message(token.split("_")[1])))}
    assert anonymous.post("/v1/wallet/claims", json=not_holder).status_code == 422
    forged = token[:-5] + ("AAAAA" if not token.endswith("AAAAA") else "BBBBB")
    assert anonymous.post("/v1/wallet/claims", json=claim_body(forged, phone)).status_code == 404
    garbage = claim_body(token, phone) | {"token": "cpt_" + token[4:]}  # an API token's shape is no claim
    assert anonymous.post("/v1/wallet/claims", json=garbage).status_code == 404
    short_key = claim_body(token, phone) | {"public_key": b64url(bytes(31)) + "AAAAAAAAAAAA"}
    assert anonymous.post("/v1/wallet/claims", json=short_key).status_code == 422
    served.clock.now += 61
    try:
        late = anonymous.post("/v1/wallet/claims", json=claim_body(token, phone))
        assert late.status_code == 409 and "expired" in late.json()["detail"]
    finally:
        served.clock.now = NOW
    both = issuer_api.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"], "holder": "wallet",
                                               "holder_key": b64url(phone.public.raw)})
    assert both.status_code == 422
    unknown_site = issuer_api.post("/v1/passes", json={"product": "annual", "sites": ["atlantis"],
                                                       "holder": "wallet"})
    assert unknown_site.status_code == 422  # checked when ordered, not when the visitor claims it


def test_only_a_hash_of_the_claim_secret_is_stored(served: ServedIssuer, issuer_api: httpx.Client) -> None:
    token = order(issuer_api, product="annual", sites=["west-lake"])
    db = served.issuer.home.path / "issuer.db"
    [row] = query(served.issuer.store, "SELECT secret_hash, holder_id, code FROM wallet_claims WHERE id = ?",
                  [token.split("_")[1]])
    assert bytes(row[0]) == hashlib.sha256(token.encode()).digest() and row[1] is None and row[2] is None
    secret = token.rsplit("_", 1)[1].encode()
    for path in db.parent.glob("issuer.db*"):
        assert secret not in path.read_bytes()


def test_the_wallet_page_is_served_with_its_assets_texts_and_a_policy_that_allows_only_its_origin(
        anonymous: httpx.Client) -> None:
    page = anonymous.get("/wallet/")
    assert page.status_code == 200 and "./assets/wallet.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "http" not in csp
    assert anonymous.get("/wallet", follow_redirects=False).headers["location"] == "/wallet/"
    for path, ctype in (("/wallet/sw.js", "javascript"), ("/wallet/assets/wallet.js", "javascript"),
                        ("/wallet/assets/wallet.css", "text/css"), ("/wallet/manifest.webmanifest", "manifest+json")):
        got = anonymous.get(path)
        assert got.status_code == 200 and ctype in got.headers["content-type"], path
    assert "http" not in anonymous.get("/wallet/assets/wallet.js").text.replace("http://www.w3.org", "")
    texts = anonymous.get("/wallet/i18n.json").json()
    assert {"zh", "en"} <= set(texts["languages"])
    wanted = {k for k in SOURCE if k.startswith(("wallet.", "reason.", "benefit."))}
    for lang in ("zh", "en"):
        table = texts["texts"][lang]
        assert set(table) == wanted and all(table[k] and table[k] != k for k in wanted)
    assert texts["texts"]["zh"]["wallet.brightness"] == "请调高屏幕亮度"


def test_mint_wallet_prints_a_claim_link_that_the_served_api_honours(tmp_path: Path) -> None:
    home = tmp_path / "issuer"
    Issuer.init(IssuerHome(home), [("west-lake", "scenic")], now=NOW).close()
    result = CliRunner().invoke(cli, ["issuer", "mint", "--home", str(home), "--product", "annual", "--sites",
                                      "west-lake", "--wallet", "--wallet-url", "https://issuer.example/wallet/"])
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith("https://issuer.example/wallet/#claim=cpw_") and "\n" not in link
    both = CliRunner().invoke(cli, ["issuer", "mint", "--home", str(home), "--product", "annual", "--sites",
                                    "west-lake", "--wallet", "--holder-key", __file__])
    assert both.exit_code == 2
    issuer = Issuer.open(IssuerHome(home))
    try:
        with BackgroundServer(create_app(issuer)) as server, httpx.Client(base_url=server.url) as client:
            phone = SigningKey.generate()
            answer = client.post("/v1/wallet/claims", json=claim_body(link.split("#claim=")[1], phone))
            assert answer.status_code == 201, answer.text
            assert parse(answer.json()["code"]).credential.holder is not None
    finally:
        issuer.close()
