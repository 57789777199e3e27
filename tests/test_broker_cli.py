"""`citypass broker …` as a technician uses it, the foreground `run`, and the docs that explain it."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from citypass.cli import cli
from citypass.sync.broker import free_port
from citypass.sync.brokerconf import BridgeSettings, BrokerSettings, render_bridge, render_config
from citypass.sync.ca import make_device_key
from citypass.sync.home import BrokerHome

ROOT = Path(__file__).resolve().parent.parent
CITYPASS = str(Path(sys.executable).parent / "citypass")


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["broker", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_init_enrol_list_and_revoke(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "created CA" in run("init", "--home", str(home), "--host", "broker.city.example").output
    assert "kept CA" in run("init", "--home", str(home)).output  # idempotent: the CA survives
    assert stat.S_IMODE((home / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "server" / "server.key").stat().st_mode) == 0o600

    out = run("add-device", "--home", str(home), "--id", "gate-wl-e1", "--site", "7",
              "--out-dir", str(tmp_path / "dev")).output
    assert "gate-wl-e1.key" in out and (tmp_path / "dev" / "ca.pem").exists()
    _, csr = make_device_key(tmp_path / "device2", "gate-lingyin-2")  # the key stays on "the device"
    run("add-device", "--home", str(home), "--id", "gate-lingyin-2", "--site", "2", "--csr", str(csr))
    assert (tmp_path / "device2" / "gate-lingyin-2.pem").exists()
    run("add-service", "--home", str(home), "--out-dir", str(tmp_path / "issuer"))
    lines = run("list", "--home", str(home)).output.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["gate-lingyin-2", "device", "2"], ["gate-wl-e1", "device", "7"], ["issuer", "service", "-"]]

    assert "revoked 1 certificate(s) of gate-wl-e1" in run("revoke-device", "--home", str(home),
                                                           "--id", "gate-wl-e1").output
    acl = (home / "acl").read_text()
    assert "user gate-wl-e1\ntopic deny #" in acl
    assert ("user gate-lingyin-2\ntopic write citypass/v1/site/2/lanes/gate-lingyin-2\n"
            "topic read citypass/v1/site/2/#") in acl


def test_mistakes_get_one_line_errors(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert "citypass broker init" in run("add-device", "--home", home, "--id", "gate-a", "--site", "1",
                                         "--out-dir", str(tmp_path / "k"), code=1).output
    run("init", "--home", home)
    run("add-device", "--home", home, "--id", "gate-a", "--site", "1", code=2)  # neither --csr nor --out-dir
    assert "unsafe common name" in run("add-device", "--home", home, "--id", "gate/a", "--site", "1",
                                       "--out-dir", str(tmp_path / "k"), code=1).output
    _, csr = make_device_key(tmp_path / "d", "gate-a")
    assert "not 'gate-b'" in run("add-device", "--home", home, "--id", "gate-b", "--site", "1",
                                 "--csr", str(csr), code=1).output
    assert "not enrolled" in run("revoke-device", "--home", home, "--id", "gate-zz", code=1).output


def test_a_site_broker_home_is_made_from_the_central_one_and_runs_with_its_bridge(tmp_path: Path) -> None:
    central = str(tmp_path / "central")
    run("init", "--home", central)
    for gate, site in (("museum-1", "3"), ("museum-2", "3"), ("lake-1", "1")):
        run("add-device", "--home", central, "--id", gate, "--site", site, "--out-dir", str(tmp_path / "keys"))
    out = run("site", "--home", central, "--site", "3", "--out", str(tmp_path / "site3"),
              "--central", "broker.city.example:8883", "--host", "hall.local").output
    assert "bridge site-3-bridge to broker.city.example:8883; 2 gate(s): museum-1, museum-2" in out
    site_acl = (tmp_path / "site3" / "acl").read_text()
    assert "user museum-1\ntopic write citypass/v1/site/3/lanes/museum-1" in site_acl and "lake-1" not in site_acl
    central_acl = (tmp_path / "central" / "acl").read_text()
    block = central_acl.split("user site-3-bridge\n", 1)[1].split("\n\n", 1)[0]
    assert "topic write citypass/v1/gate/museum-1/taps" in block
    assert "topic read citypass/v1/gate/museum-2/acks" in block
    assert "lake-1" not in block and "topic read citypass/v1/site/3/#" in block
    assert stat.S_IMODE((tmp_path / "site3" / "bridge" / "site-3-bridge.key").stat().st_mode) == 0o600
    assert "site-3-bridge\tbridge\t3" in run("list", "--home", central).output
    assert "expected HOST:PORT" in run("site", "--home", central, "--site", "3", "--out", str(tmp_path / "x"),
                                       "--central", "no-port", code=2).output
    proc, _ = _serve(tmp_path / "site3", "--bind", "127.0.0.1")  # starts although the central broker is far away
    try:
        conf = (tmp_path / "site3" / "mosquitto.conf").read_text()
        assert "connection central\naddress broker.city.example:8883" in conf
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def _serve(home: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([CITYPASS, "broker", "run", "--home", str(home), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.communicate())


def _mosquitto_children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "mosquitto" in line]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_sigterm_and_ctrl_c(tmp_path: Path, sig: signal.Signals) -> None:
    home = BrokerHome(tmp_path / "home").init()
    proc, port = _serve(home.path, "--bind", "127.0.0.1")
    try:
        children = _mosquitto_children(proc.pid)
        assert len(children) == 1 and home.running_pid() == children[0]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}" in err and "broker stopped (mosquitto exit status 0)" in err
    assert not Path(f"/proc/{children[0]}").exists()
    assert "Saving in-memory database" in home.log_path.read_text()  # a graceful stop persists the sessions


def test_dev_insecure_is_plaintext_on_loopback_only_and_says_so(tmp_path: Path) -> None:
    proc, port = _serve(tmp_path / "dev", "--dev-insecure", "--bind", "0.0.0.0")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0]))
            assert raw.recv(4) == bytes([0x20, 2, 0, 0])  # CONNACK, accepted, no TLS: insecure indeed
        conf = (tmp_path / "dev" / "mosquitto.conf").read_text()
        assert "INSECURE LOCAL DEVELOPMENT MODE" in conf and f"listener {port} 127.0.0.1" in conf
        assert "0.0.0.0" not in conf
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert "WARNING: --dev-insecure" in err and "PLAINTEXT" in err


def test_the_generated_config_is_explained_in_docs_broker_md() -> None:
    doc = (ROOT / "docs" / "broker.md").read_text()
    for settings in (BrokerSettings(port=8883), BrokerSettings(port=1, dev_insecure=True)):
        for line in render_config(settings, Path("/home")).splitlines():
            if line and not line.startswith("#"):
                assert f"`{line.split()[0]}" in doc, f"docs/broker.md does not explain {line.split()[0]}"
    bridge = render_bridge(BridgeSettings("site-7-bridge", 7, "broker.city.example", 8883), Path("/home"))
    for line in bridge.splitlines():
        if line and not line.startswith("#"):
            assert f"`{line.split()[0]}" in doc, f"docs/broker.md does not explain the bridge's {line.split()[0]}"
    for command in ("init", "add-device", "add-service", "revoke-device", "list", "run", "site"):
        assert f"citypass broker {command}" in doc



def test_modules_stay_small() -> None:
    for path in (ROOT / "sync").glob("*.py"):
        if path.name != "__init__.py":
            assert len(path.read_text().splitlines()) <= 400, path


def test_a_group_shared_broker_home_lets_the_issuer_act_as_its_ca(tmp_path: Path) -> None:
    """citypass-broker.service makes its home 2770 and the issuer is in its group: the CA's files must stay usable
    by both accounts (subdirectories 2770, keys 0640), and a running broker must pick up an ACL the issuer
    rewrote although the issuer cannot signal a process of another user (ProtectProc=invisible, other uid)."""
    from citypass.provisioning.selftest import _Probe

    shared = tmp_path / "broker"
    shared.mkdir()
    shared.chmod(0o2770)
    home = BrokerHome(shared).init()
    for sub in ("ca", "server", "data", "log", "run"):
        assert stat.S_IMODE((shared / sub).stat().st_mode) == 0o2770, sub
    assert stat.S_IMODE(home.ca.key_path.stat().st_mode) == 0o640
    assert stat.S_IMODE(home.server_key.stat().st_mode) == 0o640
    private = BrokerHome(tmp_path / "private").init()  # not shared: as before
    assert stat.S_IMODE(private.ca.key_path.stat().st_mode) == 0o600

    files = home.add_device_with_key("gate-shared", 1, tmp_path / "gate")
    (tmp_path / "gate" / "tls").mkdir()
    for name, src in (("ca.pem", files.ca), ("device.pem", files.cert), ("device.key", files.key)):
        (tmp_path / "gate" / "tls" / name).write_bytes(src.read_bytes())

    def connects() -> bool:
        probe = _Probe(tmp_path / "gate", "gate-shared")
        try:
            return probe.connect("127.0.0.1", port, 3.0) is None
        finally:
            probe.close()

    proc, port = _serve(shared)
    try:
        assert connects()
        home.pid_path.unlink()  # as the issuer sees it: no broker it could signal
        assert home.revoke("gate-shared") == 1
        deadline = time.monotonic() + 10
        while connects() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not connects(), "the broker never reloaded the CRL the issuer rewrote"
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
