"""The built pages in the package are what their sources build: a rebuild with the locked npm packages
reproduces every committed byte (``scripts/build-assets --check``), and the pages stay small."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WALLET = ROOT / "citypass" / "issuer" / "wallet" / "static"
SCREEN = ROOT / "citypass" / "gate" / "screen" / "static"


@pytest.mark.slow
def test_a_rebuild_from_the_lock_file_reproduces_the_committed_assets() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot rebuild the pages: {', '.join(missing)} not installed")
    result = subprocess.run([str(ROOT / "scripts" / "build-assets"), "--check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wallet: the committed assets are what the sources build" in result.stdout
    assert "screen: the committed assets are what the sources build" in result.stdout
    assert "console: the committed assets are what the sources build" in result.stdout


def test_the_pages_are_small_and_self_contained() -> None:
    def gz(folder: Path) -> int:
        return sum(len(gzip.compress(p.read_bytes(), 9)) for p in folder.rglob("*") if p.is_file())

    assert gz(WALLET) < 40_000 and gz(SCREEN) < 8_000, (gz(WALLET), gz(SCREEN))
    for folder in (WALLET, SCREEN):
        for path in folder.rglob("*"):
            if path.suffix in (".html", ".js", ".css", ".webmanifest"):
                text = path.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")
                assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
