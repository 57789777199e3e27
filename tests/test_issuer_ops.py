"""The issuer as operations see it: /docs with no internet, /metrics for Prometheus."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from citypass.issuer.api import create_app
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    issuer = Issuer.init(IssuerHome(tmp_path_factory.mktemp("issuer") / "home"), [("west-lake", "scenic")],
                         now=int(time.time()))
    with BackgroundServer(create_app(issuer)) as server:
        yield server.url
    issuer.close()


def test_docs_need_no_internet(served: str) -> None:
    with httpx.Client(base_url=served) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
        found = [u for pair in urls for u in pair if u]
        assert found and all(u.startswith("/") for u in found), found  # nothing from a CDN
        assert "cdn" not in page.text.lower()
        for url in found:
            asset = http.get(url)
            assert asset.status_code == 200 and asset.content, url
        js = http.get("/docs/assets/swagger-ui-bundle.js")
        assert "javascript" in js.headers["content-type"] and len(js.content) > 100_000
        assert http.get("/openapi.json").json()["openapi"].startswith("3.1")  # Swagger UI 5 reads 3.1
        assert http.get("/redoc").status_code == 404  # the CDN page is off


def test_metrics_count_requests_and_say_the_version(served: str) -> None:
    with httpx.Client(base_url=served) as http:
        for _ in range(3):
            http.get("/healthz")
        http.get("/v1/devices")  # 401: counted as 4xx
        text = http.get("/metrics").text
    assert re.search(r'citypass_issuer_requests_total\{method="GET",status="2xx"\} ([3-9]|\d\d+)\.0', text), text
    assert re.search(r'citypass_issuer_requests_total\{method="GET",status="4xx"\} [1-9]', text), text
    assert re.search(r"citypass_issuer_ledger_seq \d+\.0", text)
    assert re.search(r'citypass_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0', text)
    assert "citypass_issuer_request_seconds_count" in text


def test_the_issuer_unit_serves_what_the_docs_say() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "issuer.md").read_text()
    assert "/metrics" in doc and "/docs" in doc
