"""deploy/: the Prometheus alert rules pass `promtool check rules`, and the rules and the Grafana dashboard name
only metrics a gate really exports (the gate's own registry is the reference)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from citypass.gate.metrics import GateMetrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "citypass-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "citypass-gates.json"
NAME = re.compile(r"\b(citypass_[a-z0-9_]+)")


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("promtool is not installed: ./scripts/bootstrap.sh extracts it from Debian's prometheus package")
    return found


def exported() -> set[str]:
    """Every sample name the gate's registry exposes (counters as *_total, histograms as *_bucket/_sum/_count)."""
    names: set[str] = set()
    for family in GateMetrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d+ rules found", result.stdout + result.stderr), result.stdout + result.stderr


def test_promtool_really_checks(tmp_path: Path) -> None:
    """Guards the test above: a rule with a broken expression is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(citypass_frames_total[5m]\n")
    result = subprocess.run([promtool(), "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_the_rules_cover_what_operations_must_hear_about() -> None:
    text = RULES.read_text()
    for alert in ("CityPassGateDown", "CityPassOutboxBacklogGrowing", "CityPassClockOffset", "CityPassLedgerStale",
                  "CityPassEntryBudgetOverruns", "CityPassFireAlarm"):
        assert f"alert: {alert}" in text, alert


def test_rules_and_dashboard_name_only_metrics_a_gate_exports() -> None:
    names = exported()
    assert "citypass_build_info" in names and "citypass_sync_connected" in names
    assert all(n.endswith("_total") for n in names if n.startswith("citypass_") and "restarts" in n)
    used_in_rules = set(NAME.findall(RULES.read_text()))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used_in_dashboard = {n for e in exprs for n in NAME.findall(e)}
    assert used_in_rules and used_in_dashboard
    assert used_in_rules <= names, used_in_rules - names
    assert used_in_dashboard <= names, used_in_dashboard - names


def test_counters_end_in_total_and_build_info_says_the_version() -> None:
    text = generate_latest(GateMetrics().registry).decode()
    for line in text.splitlines():
        if line.startswith("# TYPE ") and line.endswith(" counter"):
            name = line.split()[2]
            assert name.endswith("_total") or f"{name}_total" in text, name
    assert re.search(r'citypass_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0', text), text
