"""``citypass hooks …``: boot, shutdown, power-fail and the update hooks, on real files and real processes.

Bundles are built with real release keys and a root-signed trust list, then broken in the ways an
attacker or a bad download would break them. Shutdown hooks stop a real process by its pid file and
checkpoint a real SQLite WAL; the barrier runs on gpiozero's own ``MockFactory`` pins. The health check
runs against a real ``citypass gate run`` (the scene of tests/test_gate_run.py) for mark-good, and
against a small fake ``/healthz`` for each way it must say mark-bad.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from citypass.credential.cose import decode_cbor, encode_cbor
from citypass.credential.keys import SigningKey, write_private_key, write_public_key
from citypass.credential.trustlist import TrustedKey, TrustList
from citypass.firmware_hooks.bundle import MANIFEST_NAME, BundleRefused, make_bundle, parse_version, verify_bundle
from citypass.firmware_hooks.health import check_health, judge_status
from citypass.firmware_hooks.lifecycle import boot, flush_ledger, park_barrier, pre_install, rollback, shutdown
from citypass.gate.barrier.config import BarrierConfig
from citypass.gate.config import GateConfig
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.migrations import SCHEMA_VERSION
from tests.helpers.gate_run import Gate, Scene, write_config
from tests.helpers.gate_run import scene as scene

CITYPASS = Path(sys.executable).parent / "citypass"
NOW = int(time.time())


# -- keys, trust list, bundles ---------------------------------------------------------------------------
class Release:
    """A root key, a release key and an issuer key, the root-signed trust list naming them, and files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root, self.release, self.issuer = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
        self.trust = TrustList(3, NOW - 60, (
            TrustedKey(self.release.kid, self.release.public, "release", NOW - 3600),
            TrustedKey(self.issuer.kid, self.issuer.public, "issuer", NOW - 3600),
        ))
        self.trust_signed = self.trust.sign(self.root)
        self.files = {"citypass-1.4.0-py3-none-any.whl": os.urandom(4096), "migrate.sql": b"-- nothing yet\n"}

    def bundle(self, version: str = "1.4.0", key: SigningKey | None = None, name: str = "update.tar",
               trust: bytes | bool | None = True) -> Path:
        out = self.folder / name
        signed = self.trust_signed if trust is True else (None if trust is False else trust)
        make_bundle(out, self.files, version, key or self.release, trust_signed=signed)
        return out


@pytest.fixture
def rel(tmp_path: Path) -> Release:
    return Release(tmp_path)


def rewrite(bundle: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """Rebuild a bundle's tar with each member's bytes passed through ``change`` (None drops it)."""
    with tarfile.open(bundle) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(bundle, "w") as tar:
        for name, data in members:
            new = change(name, data)
            if new is not None:
                info = tarfile.TarInfo(name)
                info.size = len(new)
                tar.addfile(info, io.BytesIO(new))


def refused(bundle: Path, rel: Release, installed: str | None = "1.3.0") -> str:
    with pytest.raises(BundleRefused) as caught:
        verify_bundle(bundle, rel.root.public, installed=installed)
    return caught.value.reason


def test_a_signed_newer_bundle_is_accepted(rel: Release) -> None:
    manifest = verify_bundle(rel.bundle(), rel.root.public, installed="1.3.9")
    assert manifest.version == "1.4.0" and set(manifest.files) == set(rel.files)


def test_the_same_version_may_be_reinstalled(rel: Release) -> None:
    assert verify_bundle(rel.bundle("1.4"), rel.root.public, installed="1.4.0").version == "1.4"


def test_a_tampered_file_is_refused(rel: Release) -> None:
    bundle = rel.bundle()
    rewrite(bundle, lambda name, data: data[:-1] + bytes([data[-1] ^ 1]) if name.endswith(".whl") else data)
    assert refused(bundle, rel) == "tampered"


def test_an_added_or_missing_file_is_refused(rel: Release) -> None:
    bundle = rel.bundle()
    rewrite(bundle, lambda name, data: None if name == "payload/migrate.sql" else data)
    assert refused(bundle, rel) == "missing_file"
    bundle = rel.bundle()
    with tarfile.open(bundle, "a") as tar:
        info = tarfile.TarInfo("payload/backdoor.sh")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"rm\n"))
    assert refused(bundle, rel) == "unlisted_file"


def test_an_unsigned_bundle_is_refused(rel: Release) -> None:
    bundle = rel.bundle()
    rewrite(bundle, lambda name, data: None if name == MANIFEST_NAME else data)
    assert refused(bundle, rel) == "bad_signature"


def test_a_forged_manifest_is_refused(rel: Release) -> None:
    """The release key's kid on a manifest whose payload was changed after signing (a downgrade
    disguised as an upgrade): the signature no longer verifies."""
    bundle = rel.bundle("1.0.0")

    def bump(name: str, data: bytes) -> bytes:
        if name != MANIFEST_NAME:
            return data
        protected, unprotected, payload, signature = decode_cbor(data)
        manifest = decode_cbor(payload)
        manifest["version"] = "9.9.9"
        return encode_cbor([protected, unprotected, encode_cbor(manifest), signature])

    rewrite(bundle, bump)
    assert refused(bundle, rel, installed="1.3.0") == "bad_signature"


def test_a_key_outside_the_trust_list_is_refused(rel: Release) -> None:
    assert refused(rel.bundle(key=SigningKey.generate()), rel) == "not_release_key"


def test_an_issuer_key_is_not_a_release_key(rel: Release) -> None:
    with pytest.raises(BundleRefused, match="role issuer") as caught:
        verify_bundle(rel.bundle(key=rel.issuer), rel.root.public, installed="1.3.0")
    assert caught.value.reason == "not_release_key"


def test_a_trust_list_not_signed_by_the_pinned_root_is_refused(rel: Release) -> None:
    rogue = TrustList(9, NOW, (TrustedKey(rel.release.kid, rel.release.public, "release", 0),))
    assert refused(rel.bundle(trust=rogue.sign(SigningKey.generate())), rel) == "untrusted_list"
    assert refused(rel.bundle(trust=False), rel) == "no_trust_list"
    with pytest.raises(BundleRefused) as caught:  # an old list replayed against a device that knows a newer one
        verify_bundle(rel.bundle(), rel.root.public, installed=None, min_trust_version=4)
    assert caught.value.reason == "untrusted_list"


def test_a_retired_release_key_is_refused(rel: Release) -> None:
    retired = TrustList(4, NOW, (TrustedKey(rel.release.kid, rel.release.public, "release", 0, NOW - 1),))
    assert refused(rel.bundle(trust=retired.sign(rel.root)), rel) == "key_not_valid"


def test_a_downgrade_is_refused(rel: Release) -> None:
    assert refused(rel.bundle("1.2.9"), rel, installed="1.3.0") == "downgrade"
    assert refused(rel.bundle("1.9"), rel, installed="1.10") == "downgrade"  # numeric, not text, order


def test_garbage_is_refused_not_crashed_on(rel: Release) -> None:
    junk = rel.folder / "junk.tar"
    junk.write_bytes(os.urandom(3000))
    assert refused(junk, rel) == "malformed"
    with pytest.raises(ValueError):
        parse_version("1.4.0-rc1")


def gate_config(folder: Path, *, fail_mode: str = "fail_secure", root: Path | None = None, port: int = 9) -> Path:
    path = folder / "gate.toml"
    path.write_text(textwrap.dedent(f"""\
        gate_id = "t-e1"
        site = "west-lake"
        root_key = "{root or folder / 'root.pub'}"
        pins = "mock"

        [ledger]
        path = "ledger.sqlite3"

        [barrier]
        fail_mode = "{fail_mode}"

        [health]
        port = {port}
        """), encoding="utf-8")
    return path


def hooks(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return subprocess.run([str(CITYPASS), "hooks", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_install_check_command_exit_codes(rel: Release) -> None:
    write_public_key(rel.folder / "root.pub", rel.root.public)
    config = gate_config(rel.folder)
    ok = hooks("install-check", str(rel.bundle()), "--config", str(config), "--installed-version", "1.3.0")
    assert ok.returncode == 0, ok.stderr
    assert "version 1.4.0 (installed 1.3.0), 2 files verified" in ok.stdout
    old = hooks("install-check", str(rel.bundle("1.0")), "--config", str(config), "--installed-version", "1.3.0")
    assert old.returncode == 10 and "refused (downgrade)" in old.stderr


def test_make_bundle_command_builds_a_verifiable_bundle(rel: Release) -> None:
    write_private_key(rel.folder / "release.key", rel.release)
    (rel.folder / "trust.cose").write_bytes(rel.trust_signed)
    wheel = rel.folder / "app.whl"
    wheel.write_bytes(b"wheel")
    out = rel.folder / "made.tar"
    made = hooks("make-bundle", "--out", str(out), "--version", "2.0.1",
                 "--release-key", str(rel.folder / "release.key"), "--trust-list", str(rel.folder / "trust.cose"),
                 str(wheel))
    assert made.returncode == 0, made.stderr
    assert verify_bundle(out, rel.root.public, installed="2.0.0").files.keys() == {"app.whl"}


# -- boot, shutdown, power-fail --------------------------------------------------------------------------
@pytest.mark.parametrize(("fail_mode", "relay_level"), [("fail_secure", False), ("fail_safe", True)])
def test_boot_parks_a_mock_barrier_in_its_safe_state(tmp_path: Path, fail_mode: str, relay_level: bool) -> None:
    factory = MockFactory()
    relay = factory.pin(17)
    relay.function = "output"
    relay.state = not relay_level  # whatever a crashed daemon left behind
    cfg = GateConfig.model_validate({"gate_id": "t", "site": "s", "root_key": tmp_path / "r.pub", "pins": "mock",
                                     "ledger": {"path": tmp_path / "l.sqlite3"}, "barrier": {"fail_mode": fail_mode}})
    steps = boot(cfg.barrier, pins=cfg.pins, pin_factory=factory)
    assert [s.ok for s in steps] == [True] and fail_mode in steps[0].detail
    assert relay.state is relay_level


def test_the_barrier_hooks_read_only_pins_and_the_barrier_table(tmp_path: Path) -> None:
    """A broken camera or sync section must not stop the hook that parks the barrier; a broken barrier
    section is refused as strictly as the daemon refuses it."""
    config = tmp_path / "gate.toml"
    config.write_text('pins = "mock"\n[barrier]\nfail_mode = "fail_secure"\n[camera]\nfps = "broken"\n'
                      '[sync]\nnonsense = 1\n')
    for hook in ("boot", "safe-state"):
        result = hooks(hook, "--config", str(config))
        assert result.returncode == 0 and "fail_secure: barrier closed" in result.stdout, result.stdout
    config.write_text('pins = "mock"\n[barrier]\nrelay_pin = 17\nsensor_pin = 17\n')
    refused = hooks("safe-state", "--config", str(config))
    assert refused.returncode == 1 and "barrier." in refused.stderr and "pin 17" in refused.stderr
    full = hooks("shutdown", "--config", str(tmp_path / "missing.toml"))
    assert full.returncode == 1 and "cannot read" in full.stderr


def test_an_active_fire_alarm_keeps_the_barrier_free() -> None:
    factory = MockFactory()  # a normally-closed contact with a pull-up: the idle-high mock pin is a cut wire
    step = park_barrier(BarrierConfig(fire_alarm_active_low=False), pin_factory=factory)
    assert step.ok and "fire alarm" in step.detail
    assert factory.pin(17).state is True


def test_boot_command_on_mock_pins(tmp_path: Path) -> None:
    result = hooks("boot", "--config", str(gate_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "barrier" in result.stdout and "fail_secure: barrier closed" in result.stdout


def test_safe_state_after_a_crash_reports_how_the_daemon_ended(tmp_path: Path) -> None:
    env = {**os.environ, "SERVICE_RESULT": "watchdog", "EXIT_CODE": "killed", "EXIT_STATUS": "ABRT"}
    env.pop("NOTIFY_SOCKET", None)
    result = subprocess.run([str(CITYPASS), "hooks", "safe-state", "--config", str(gate_config(tmp_path))],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("daemon ended: watchdog (killed ABRT)") and "barrier closed" in result.stdout


def test_a_missing_or_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    missing = hooks("boot", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "Error: cannot read" in missing.stderr
    bad = gate_config(tmp_path)
    bad.write_text(bad.read_text(encoding="utf-8").replace("fail_mode", "fail_mood"), encoding="utf-8")
    broken = hooks("shutdown", "--config", str(bad))
    assert broken.returncode == 1 and "barrier.fail_mood: Extra inputs are not permitted" in broken.stderr


DAEMON = """
import signal, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(str(__import__("os").getpid()))
def stop(*_):
    Path(sys.argv[2]).write_text("stopped cleanly")
    sys.exit(0)
if sys.argv[3] == "obey":
    signal.signal(signal.SIGTERM, stop)
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[str], tuple[subprocess.Popen[bytes], Path, Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        pid_file, marker = tmp_path / "gate.pid", tmp_path / "stopped"
        proc = subprocess.Popen([sys.executable, "-c", DAEMON, str(pid_file), str(marker), mode])
        started.append(proc)
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return proc, pid_file, marker

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def busy_ledger(path: Path) -> GateLedger:
    """A ledger with committed writes still in its WAL, held open like a crashed daemon's last state."""
    ledger = GateLedger.open(path)
    for i in range(20):
        ledger.set_identity(f"gate-{i}", i)
    assert Path(f"{path}-wal").stat().st_size > 0
    return ledger


def test_shutdown_stops_the_daemon_checkpoints_the_wal_and_parks(tmp_path: Path, daemon: Any) -> None:
    proc, pid_file, marker = daemon("obey")
    config = gate_config(tmp_path)
    ledger = busy_ledger(tmp_path / "ledger.sqlite3")
    try:
        result = hooks("shutdown", "--config", str(config), "--pid-file", str(pid_file))
        assert result.returncode == 0, result.stdout + result.stderr
        assert proc.wait(5) == 0 and marker.read_text() == "stopped cleanly"
        assert Path(f"{tmp_path / 'ledger.sqlite3'}-wal").stat().st_size == 0  # truncated: all in the main file
        assert ledger.identity() is not None and ledger.identity().gate_id == "gate-19"  # type: ignore[union-attr]
    finally:
        ledger.close()
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["stop_daemon", "ledger_flush", "barrier"]
    assert "stopped after SIGTERM" in result.stdout and lines[-1] == "ok"


def test_power_fail_kills_a_daemon_that_ignores_sigterm(tmp_path: Path, daemon: Any) -> None:
    proc, pid_file, marker = daemon("ignore")
    result = hooks("power-fail", "--config", str(gate_config(tmp_path)), "--pid-file", str(pid_file),
                   "--timeout", "0.5")
    assert result.returncode == 0, result.stdout
    assert "ignored SIGTERM" in result.stdout and "killed" in result.stdout
    assert proc.wait(5) != 0 and not marker.exists()


def test_shutdown_without_a_running_daemon_still_flushes(tmp_path: Path) -> None:
    busy_ledger(tmp_path / "ledger.sqlite3").close()
    step = flush_ledger(tmp_path / "ledger.sqlite3")
    assert step.ok and "events wait for upload" in step.detail
    cfg = GateConfig.model_validate({"gate_id": "t", "site": "s", "root_key": tmp_path / "r.pub", "pins": "mock",
                                     "ledger": {"path": tmp_path / "ledger.sqlite3"}})
    steps = shutdown(cfg, pid_file=tmp_path / "no-such.pid")
    assert all(s.ok for s in steps) and "not running" in steps[0].detail


# -- pre-install, post-install ---------------------------------------------------------------------------
def test_pre_install_quiesces_and_backs_up_the_ledger(tmp_path: Path, daemon: Any) -> None:
    proc, pid_file, _ = daemon("obey")
    busy_ledger(tmp_path / "ledger.sqlite3").close()
    result = hooks("pre-install", "--config", str(gate_config(tmp_path)), "--pid-file", str(pid_file))
    assert result.returncode == 0, result.stdout
    assert proc.wait(5) == 0
    backup = tmp_path / "ledger.sqlite3.pre-update"
    with GateLedger.open(backup) as copy:
        assert copy.identity() is not None and copy.integrity_check().ok


def test_post_install_migrates_and_checks_the_ledger(tmp_path: Path) -> None:
    config = gate_config(tmp_path)
    result = hooks("post-install", "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert "new file -> schema" in result.stdout and "ledger_integrity" in result.stdout
    (tmp_path / "ledger.sqlite3").unlink()
    (tmp_path / "ledger.sqlite3").write_bytes(b"not a database, a half-written update" * 200)
    broken = hooks("post-install", "--config", str(config))
    assert broken.returncode == 1 and "FAIL" in broken.stdout and broken.stdout.rstrip().endswith("failed")


def test_rollback_restores_the_backup_only_when_the_old_software_cannot_read_the_ledger(tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.sqlite3"
    busy_ledger(ledger_path).close()
    cfg = GateConfig.model_validate({"gate_id": "t", "site": "s", "root_key": tmp_path / "r.pub", "pins": "mock",
                                     "ledger": {"path": ledger_path}})
    assert all(s.ok for s in pre_install(cfg, unit=None))
    kept = rollback(cfg, unit=None)
    assert all(s.ok for s in kept) and "kept as it is" in kept[1].detail
    with sqlite3.connect(ledger_path) as conn:  # the "new software" migrated to a schema from the future
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    result = hooks("rollback", "--config", str(gate_config(tmp_path)), "--pid-file", str(tmp_path / "none.pid"))
    assert result.returncode == 0, result.stdout
    assert "restored ledger.sqlite3.pre-update" in result.stdout
    assert len(list(tmp_path.glob("ledger.sqlite3.rolled-back-*"))) == 1  # moved aside, never deleted
    with GateLedger.open(ledger_path) as ledger:
        assert ledger.identity() is not None and ledger.integrity_check().ok


# -- health check ----------------------------------------------------------------------------------------
class FakeHealthz:
    """A /healthz that answers whatever the test sets (a stand-in for a daemon in a particular state)."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {}
        self.code = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = json.dumps(outer.body).encode()
                self.send_response(outer.code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def healthz() -> Iterator[FakeHealthz]:
    server = FakeHealthz()
    yield server
    server.close()


DECIDING = {"healthy": True, "state": "deciding", "camera": {"state": "ok", "fps": 29.7, "last_error": None}}


@pytest.mark.parametrize(
    ("code", "body", "failing"),
    [
        (503, {**DECIDING, "healthy": False, "state": "out_of_order"}, "daemon"),
        (200, {**DECIDING, "camera": {"state": "ok", "fps": 0.0}}, "frames"),
        (503, {**DECIDING, "camera": {"state": "out_of_order", "fps": 0.0, "last_error": "no frames for 5 s"}},
         "frames"),
        (200, {**DECIDING, "sync": {"state": "auth_failed"}}, "broker"),
    ],
)
def test_health_check_says_mark_bad(tmp_path: Path, healthz: FakeHealthz, code: int, body: dict[str, Any],
                                    failing: str) -> None:
    GateLedger.open(tmp_path / "ledger.sqlite3").close()
    healthz.code, healthz.body = code, body
    config = with_sync(gate_config(tmp_path)) if failing == "broker" else gate_config(tmp_path)
    result = hooks("health-check", "--config", str(config), "--url", healthz.url, "--grace", "0",
                   "--broker-within", "0")
    assert result.returncode == 1 and result.stdout.rstrip().endswith("mark-bad")
    failed = [line.split()[0] for line in result.stdout.splitlines()[1:-1] if "FAIL" in line.split()[1:2]]
    assert failed == [failing]


def test_health_check_fails_without_a_daemon_or_a_ledger(tmp_path: Path) -> None:
    steps = check_health("http://127.0.0.1:9/healthz", tmp_path / "missing.sqlite3")
    assert [s.name for s in steps if not s.ok] == ["daemon", "frames", "ledger", "broker"]


def test_health_check_wants_a_configured_broker_connected(tmp_path: Path, healthz: FakeHealthz) -> None:
    """A gate whose [sync] names a broker must be connected: buffering (the finding: a build that never reaches
    its broker passed) or no sync state fails; a gate without [sync] is offline by configuration."""
    ledger = tmp_path / "ledger.sqlite3"
    GateLedger.open(ledger).close()
    for sync, ok in (({"state": "connected"}, True), ({"connected": True}, True), ({"connected": False}, False),
                     ({"state": "buffering"}, False), (None, False)):
        healthz.body = {**DECIDING, **({"sync": sync} if sync else {})}
        steps = check_health(healthz.url, ledger)
        assert all(s.ok for s in steps) is ok, (sync, steps)
        assert all(s.ok for s in check_health(healthz.url, ledger, broker_configured=False))
    assert "no sync state" in judge_status(DECIDING)[2].detail


def with_sync(config: Path) -> Path:
    """``config`` with a [sync] section naming a broker (files need not exist: only the health check reads it)."""
    config.write_text(config.read_text() + textwrap.dedent("""
        [sync]
        broker_host = "127.0.0.1"
        broker_port = 1
        ca = "ca.pem"
        cert = "c.pem"
        key = "c.key"
        """))
    return config


def test_health_check_waits_broker_within_for_the_broker(tmp_path: Path, healthz: FakeHealthz) -> None:
    GateLedger.open(tmp_path / "ledger.sqlite3").close()
    config = with_sync(gate_config(tmp_path))
    healthz.body = {**DECIDING, "sync": {"state": "buffering"}}
    started = time.monotonic()
    result = hooks("health-check", "--config", str(config), "--url", healthz.url, "--grace", "0",
                   "--broker-within", "2")
    assert result.returncode == 1 and result.stdout.rstrip().endswith("mark-bad"), result.stdout
    assert time.monotonic() - started >= 1.5, "gave up on the broker before --broker-within"
    healthz.body = {**DECIDING, "sync": {"state": "connected"}}
    assert hooks("health-check", "--config", str(config), "--url", healthz.url, "--grace", "0").returncode == 0


def test_health_check_of_a_real_daemon_says_mark_good_then_shutdown_stops_it(scene: Scene, tmp_path: Path) -> None:
    config = write_config(tmp_path, scene, loop=True)
    gate = Gate(config)
    try:
        url = gate.event("health")["url"]
        gate.event("started")
        result = hooks("health-check", "--config", str(config), "--url", url, "--grace", "20")
        assert result.returncode == 0, result.stdout + gate.stderr
        assert result.stdout.rstrip().endswith("mark-good") and "FAIL" not in result.stdout
        pid_file = tmp_path / "gate.pid"
        pid_file.write_text(str(gate.proc.pid))
        stopped = hooks("shutdown", "--config", str(config), "--pid-file", str(pid_file))
        assert stopped.returncode == 0, stopped.stdout
        assert gate.wait_exit(10) == 0 and gate.events[-1]["event"] == "stopped"
        wal = Path(f"{config.parent / 'ledger.sqlite3'}-wal")
        assert not wal.exists() or wal.stat().st_size == 0
    finally:
        gate.close()



def test_every_hook_answers_json_for_an_update_agent(tmp_path: Path, healthz: FakeHealthz) -> None:
    GateLedger.open(tmp_path / "ledger.sqlite3").close()
    healthz.body = {**DECIDING, "sync": {"state": "buffering"}}
    result = hooks("health-check", "--json", "--config", str(with_sync(gate_config(tmp_path))), "--url", healthz.url,
                   "--grace", "0", "--broker-within", "0")
    body = json.loads(result.stdout)
    assert result.returncode == 1 and body["ok"] is False and body["result"] == "mark-bad"
    assert [s["name"] for s in body["steps"] if not s["ok"]] == ["broker"]
    plain = tmp_path / "plain"
    plain.mkdir()
    boot = hooks("boot", "--json", "--config", str(gate_config(plain)))
    assert boot.returncode == 0 and json.loads(boot.stdout)["ok"] is True, boot.stdout + boot.stderr
