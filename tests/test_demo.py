"""The README's main command keeps working: the whole demo runs and tells the expected story."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from citypass.cli import cli


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    # act 1: codes of every kind, decided from a signed snapshot
    assert "7 allowed, 8 denied" in out
    for reason in ("passback", "already_used", "replayed_presentation", "presentation_expired", "dynamic_required",
                   "wrong_site", "revoked", "bad_signature"):
        assert reason in out, reason
    # act 2: the served issuer, a gate daemon on camera frames, reconciliation over HTTP
    assert "Issuer service at http://127.0.0.1:" in out
    assert "enrolled museum-entrance-1 through the real enrollment flow" in out
    assert "not read" not in out  # every rendered camera frame was decoded
    assert "ledger: 7 taps, 6 passages, 1 annulments" in out and "integrity ok" in out
    assert "Mosquitto with TLS and per-device ACLs" in out
    assert "reconnects to the broker with 18 events buffered while offline" in out
    assert "18 events acknowledged over MQTT" in out and "(0 left on the gate)" in out
    # lane 2 (online) admitted a screenshot of the code lane 1 (offline) had admitted: reported on catch-up
    assert "enrolled museum-entrance-2 through the real enrollment flow" in out
    assert "friends with a screenshot of the family's code" in out
    assert "occupancy now 9" in out and "double_use ×1" in out and "forged_code ×1" in out
    assert (tmp_path / "demo" / "gate-museum" / "gate.toml").exists()
    # the metro: a journey paired across two stations and priced, one in progress, one without a tap-in
    assert "Journeys at the issuer" in out
    assert "│ longxiangqiao │ fengqi │ 400" in out and "in progress" in out and "no_tap_in" in out
