"""``citypass issuer serve`` for real (a subprocess on a free port), and ``citypass bench ingest`` on a
small load so that the benchmark keeps working."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from citypass.bench.ingest import run_ingest_bench
from citypass.cli import cli

NOW = 1_800_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_issuer_serve_runs_the_api_over_an_initialised_home(tmp_path: Path) -> None:
    home = tmp_path / "issuer"
    runner = CliRunner()
    assert runner.invoke(cli, ["issuer", "init", "--home", str(home), "--site", "west-lake"]).exit_code == 0
    token = runner.invoke(cli, ["issuer", "token", "create", "--home", str(home), "--role", "issuer"]).output.strip()
    port = _free_port()
    exe = Path(sys.executable).parent / "citypass"
    process = subprocess.Popen([str(exe), "issuer", "serve", "--home", str(home), "--port", str(port),
                                "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        made = httpx.post(f"{url}/v1/passes", json={"product": "annual", "sites": ["west-lake"]},
                          headers={"Authorization": f"Bearer {token}"})
        assert made.status_code == 201 and made.json()["code"].startswith("CP1:")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)  # also closes the pipe
    missing = runner.invoke(cli, ["issuer", "serve", "--home", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "not an issuer home" in missing.output


def test_bench_ingest_measures_repository_http_and_reservations(tmp_path: Path) -> None:
    rows = run_ingest_bench(taps=1000, clients=4, per_client=5, directory=tmp_path)
    text = {row.measurement: row.result for row in rows}
    assert text["ingest via repository"].endswith("taps/s")
    assert text["ingest via HTTP, one uploader"].endswith("taps/s")
    assert "p99" in text["reservation, 4 concurrent clients"]
