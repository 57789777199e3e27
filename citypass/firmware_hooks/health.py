"""The health check after an update's reboot: is this gate really working? (mark-good or mark-bad)

An A/B updater boots the new software once "on trial" and needs one answer: keep it (RAUC's
``rauc status mark-good``, Mender's ArtifactCommit) or roll back (``mark-bad``, a failing
ArtifactCommit_Enter script). :func:`check_health` gives that answer from four checks:

============  ================================================================================
daemon        ``/healthz`` answers and the daemon is ``deciding`` (it sent READY and its lane is in
              service; ``out_of_order`` or no answer fails)
frames        the camera is ``ok`` and delivers frames (``fps > 0``): a new OpenCV that cannot open the
              camera is the classic failed update
ledger        the ledger file opens with this software and ``PRAGMA integrity_check`` says ``ok``
broker        a gate configured with a broker (``[sync]``) has reached it: the sync link is ``connected``
              within ``--broker-within`` seconds (default 120). ``buffering`` for longer fails: a new
              build that cannot talk TLS to the broker would otherwise pass and strand every tap in
              the outbox. A gate with no ``[sync]`` is offline by configuration and passes this row.
============  ================================================================================

After a reboot the daemon needs a few seconds to become READY, so :func:`wait_for_health` repeats the
checks until they all pass or the grace period ends, and returns the last round.

Example, against a status dictionary instead of HTTP::

    >>> status = {"state": "deciding", "camera": {"state": "ok", "fps": 29.8}, "sync": {"state": "buffering"}}
    >>> [s.ok for s in judge_status(status)]
    [True, True, False]
    >>> [s.ok for s in judge_status(status, broker_configured=False)]
    [True, True, True]
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from citypass.errors import InvalidInput
from citypass.firmware_hooks.lifecycle import Step
from citypass.gate.config import GateConfig
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.connection import LedgerError

SYNC_OK = ("connected",)


def healthz_url(cfg: GateConfig) -> str:
    """Where the daemon configured by ``cfg`` serves /healthz (a wildcard address is asked on loopback)."""
    host = cfg.health.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{cfg.health.port}/healthz"


def fetch_status(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET /healthz; a 503 still carries the status body (an out-of-order gate explains itself)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
    value = json.loads(body)
    if not isinstance(value, dict):
        raise InvalidInput("/healthz did not answer a JSON object")
    return value


def _sync_state(status: Mapping[str, Any]) -> tuple[str, str]:
    sync = status.get("sync")
    if sync is None:
        return "unknown", "the daemon reports no sync state although [sync] names a broker"
    state = sync.get("state") if isinstance(sync, Mapping) else sync
    if isinstance(sync, Mapping) and state is None and "connected" in sync:
        state = "connected" if sync["connected"] else "buffering"
    return str(state), f"sync {state}"


def judge_status(status: Mapping[str, Any], *, broker_configured: bool = True) -> list[Step]:
    """The daemon, frames and broker checks from one /healthz body (``broker_configured``: the config has a
    ``[sync]`` section, so the gate must be connected)."""
    state = status.get("state")
    steps = [Step("daemon", state == "deciding", f"state {state}")]
    raw = status.get("camera")
    camera: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    fps = camera.get("fps")
    fresh = camera.get("state") == "ok" and isinstance(fps, int | float) and fps > 0
    error = f", {camera['last_error']}" if camera.get("last_error") else ""
    steps.append(Step("frames", fresh, f"camera {camera.get('state')}, {fps} fps{error}"))
    if not broker_configured:
        steps.append(Step("broker", True, "no [sync] in the config: offline by configuration"))
        return steps
    sync, detail = _sync_state(status)
    steps.append(Step("broker", sync in SYNC_OK, detail))
    return steps


def check_ledger(path: Path) -> Step:
    """The ledger opens with this software and SQLite finds it intact."""
    if not path.exists():
        return Step("ledger", False, f"{path} does not exist")
    try:
        with GateLedger.open(path) as ledger:
            integrity = ledger.integrity_check()
            seq = ledger.seq
    except LedgerError as exc:
        return Step("ledger", False, f"{path}: {exc}")
    if not integrity.ok:
        return Step("ledger", False, "integrity_check: " + "; ".join(integrity.problems[:5]))
    return Step("ledger", True, f"integrity ok, snapshot seq {seq}")


def check_health(url: str, ledger_path: Path, fetch: Callable[[str], dict[str, Any]] = fetch_status, *,
                 broker_configured: bool = True) -> list[Step]:
    """One round of all four checks."""
    try:
        steps = judge_status(fetch(url), broker_configured=broker_configured)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        steps = [Step("daemon", False, f"{url} does not answer: {reason}"),
                 Step("frames", False, "unknown (no /healthz)"),
                 Step("broker", False, "unknown (no /healthz)")]
    steps.insert(2, check_ledger(ledger_path))
    return steps


def wait_for_health(url: str, ledger_path: Path, *, grace_s: float = 60.0, interval_s: float = 1.0,
                    fetch: Callable[[str], dict[str, Any]] = fetch_status, broker_configured: bool = True,
                    broker_within_s: float | None = None) -> list[Step]:
    """Repeat :func:`check_health` until every check passes or the time is up; the last round. The daemon,
    frames and ledger must pass within ``grace_s``; the broker within ``broker_within_s`` (default
    ``grace_s``): while only the broker is missing, the wait goes on until then."""
    started = time.monotonic()
    broker_deadline = started + (grace_s if broker_within_s is None else broker_within_s)
    deadline = started + grace_s
    while True:
        steps = check_health(url, ledger_path, fetch, broker_configured=broker_configured)
        if all(s.ok for s in steps):
            return steps
        only_broker = all(s.ok for s in steps if s.name != "broker")
        left = (broker_deadline if only_broker else deadline) - time.monotonic()
        if left <= 0:
            return steps
        time.sleep(min(interval_s, left))  # the last round falls on the deadline itself, not up to a round early
