"""A disk that really fills: the issuer's store on a small tmpfs, filled up by a file beside it.

tests/test_issuer_limits.py fills the store with SQLite's own page limit; this test fills the file system
itself, as a disk does, in a private mount namespace (``unshare -m``, so nothing is mounted on the machine):
the issuer answers a tap upload with 507, a JSON body and ``Retry-After`` — not a reset connection — stores
nothing of the batch, and stores all of it exactly once when the same batch is sent again after space was
freed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, os, sys
from pathlib import Path
from citypass.issuer.testing import served_issuer

mount, now = Path(sys.argv[1]), 1_800_000_000
events = [{"event_id": f"e-{i}", "tap_id": f"t-{i}", "kind": "tap",
           "body": {"gate_id": "gate-a", "site": 1, "direction": "entry", "decision": "deny",
                    "reason": "unknown_key", "persons": 0, "at": now, "pad": "x" * 4000}} for i in range(200)]
out = {}
with served_issuer(mount / "issuer", now=now, limits=None) as served:
    with served.client("technician") as tech:
        out["device"] = tech.post("/v1/devices", json={"id": "gate-a", "site": 1}).status_code
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    filler = mount / "filler"
    with filler.open("wb") as fh:  # leave ~64 KiB: the batch (~800 KB of taps) cannot fit
        fh.write(b"\0" * max(0, free - 64 * 1024))
    with served.client("admin") as admin:
        full = admin.post("/v1/taps", json={"device_id": "gate-a", "events": events})
        out["full"] = {"status": full.status_code, "retry_after": full.headers.get("Retry-After"),
                       "body": full.json()}
        out["stored_while_full"] = served.issuer.store.tap_count()
        filler.unlink()
        again = admin.post("/v1/taps", json={"device_id": "gate-a", "events": events})
        out["again"] = {"status": again.status_code, "body": again.json()}
        out["stored"] = served.issuer.store.tap_count()
        once_more = admin.post("/v1/taps", json={"device_id": "gate-a", "events": events})
        out["duplicate"] = once_more.json()
print(json.dumps(out))
"""


def _namespace_reason() -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs in a private mount namespace needs root"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount (util-linux) are not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"unshare -m is not allowed here: {probe.stderr.strip()}"
    return None


@pytest.mark.slow
def test_a_really_full_disk_is_a_507_and_nothing_is_lost(tmp_path: Path) -> None:
    reason = _namespace_reason()
    if reason is not None:
        pytest.skip(reason)
    mount = tmp_path / "small-disk"
    mount.mkdir()
    script = tmp_path / "probe.py"
    script.write_text(PROBE, encoding="utf-8")
    shell = (f"mount -t tmpfs -o size=6m tmpfs {mount} && "
             f"{sys.executable} {script} {mount}; status=$?; umount {mount}; exit $status")
    result = subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, text=True, timeout=180,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["device"] == 201
    full = report["full"]
    assert full["status"] == 507, full
    assert "storage is full" in full["body"]["detail"] and int(full["retry_after"]) > 0
    assert report["stored_while_full"] == 0  # all or nothing: no half batch
    assert report["again"]["status"] == 200 and report["again"]["body"]["new_taps"] == 200
    assert report["stored"] == 200 and report["duplicate"]["new_taps"] == 0  # exactly once
