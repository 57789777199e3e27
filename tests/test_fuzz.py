"""The fuzz harness runs: each target under atheris (coverage-guided, libFuzzer) for a short, bounded run from
the committed seed corpora, and finds nothing. A longer run is documented in docs/security.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from citypass.fuzz.targets import TARGETS, run, seeds

CORPUS = Path(__file__).parent.parent / "fuzz" / "corpus"
RUNS = 20000
SECONDS = 10


def test_the_committed_seed_corpora_are_the_current_seeds_and_pass() -> None:
    for target, files in seeds().items():
        for name in files:
            data = (CORPUS / target / name).read_bytes()
            run(target, data)  # a seed is valid input: accepted (or refused) without a bug
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(TARGETS)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_atheris_run_finds_nothing(target: str, tmp_path: Path) -> None:
    found = tmp_path / "new"  # libFuzzer writes new inputs into the first corpus folder, never the committed one
    found.mkdir()
    result = subprocess.run([sys.executable, "-m", "citypass.fuzz", target, f"-runs={RUNS}",
                             f"-max_total_time={SECONDS}", "-max_len=4096", f"-artifact_prefix={tmp_path}/",
                             str(found), str(CORPUS / target)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done" in result.stderr and not list(tmp_path.glob("crash-*"))
