"""The technician's path, as far as systemd allows here (it is not PID 1): from two blank homes to a tap from
the enrolled gate at the issuer, every service started by its unit's own ExecStart= line.

The unit files in systemd/ are read, not restated: each ExecStart= runs with the unit's Environment= and
EnvironmentFile= (the operator's /etc/default/citypass-issuer, written as docs/operations.md says), with only
the machine's paths mapped into a scratch directory (/var/lib/… → ROOT/var/lib/…, /usr/bin/citypass → this
venv's console script) and free ports given to the broker (``--port``, ``--bind 127.0.0.1``) and the issuer
(its ``--port``): nothing else of the line is changed. The commands in between are the ones README and
docs/provisioning.md give a technician and an operator:

    citypass broker init …           the central server, once (a group-shared 2770 broker home, as tmpfiles.d)
    citypass issuer init …
    [citypass-broker.service]        ExecStart
    [citypass-issuer.service]        ExecStart (--broker-home, --broker, --mqtt-workers: the device CA and ingest)
    citypass issuer device add …     registering the gate, no curl
    citypass issuer enrollment-qr …  the setup code
    citypass provision enroll --token 'CPENROLL:1|…'   on the gate (writes the network drop-in too)
    citypass selftest                 every row ok or warn (mock pins)
    [citypass-barrier-safe.service]  ExecStart (hooks boot)
    [citypass-gate.service]          ExecStart; a visitor shows a pass
    citypass hooks health-check       mark-good: the gate reached its broker
    … and the tap is at the issuer, uploaded over MQTT by the enrolled gate.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from citypass.bench.frames import write_frames
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.sync.broker import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CITYPASS = Path(sys.executable).parent / "citypass"


def unit_values(unit: str, key: str) -> list[str]:
    values = []
    for line in (ROOT / "systemd" / unit).read_text().splitlines():
        if line.startswith(f"{key}="):
            values.append(line.split("=", 1)[1].strip())
    return values


class Machine:
    """The scratch directory standing in for the machine's file system."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def path(self, absolute: str) -> Path:
        return self.base / absolute.lstrip("/")

    def map_word(self, word: str) -> str:
        if word == "/usr/bin/citypass":
            return str(CITYPASS)
        for prefix in ("/var/lib/", "/etc/"):
            if word.startswith(prefix):
                return str(self.path(word))
        return word

    def environment(self, unit: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        for value in unit_values(unit, "Environment"):
            env.update(dict(item.split("=", 1) for item in shlex.split(value)))
        for value in unit_values(unit, "EnvironmentFile"):
            path = self.path(value.lstrip("-"))
            if path.exists():
                env.update(dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line))
        return env

    def exec_start(self, unit: str, *extra: str, replace: dict[str, str] | None = None,
                   key: str = "ExecStart") -> tuple[list[str], dict[str, str]]:
        """The unit's command line, as systemd would run it (its ${VAR}s from its environment), with the paths
        mapped into the scratch directory."""
        (line,) = unit_values(unit, key)
        env = self.environment(unit)
        line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line.lstrip("-"))
        for old, new in (replace or {}).items():
            assert old in line, f"{unit}: {old!r} is not in {line!r}"
            line = line.replace(old, new)
        return [self.map_word(w) for w in shlex.split(line)] + list(extra), env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run([str(CITYPASS), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
    assert proc.returncode == 0, f"citypass {' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited: {proc.communicate()[1][-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def services() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in reversed(procs):  # as systemd stops them: SIGTERM, then wait
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def test_from_blank_homes_to_a_tap_at_the_issuer(tmp_path: Path, services: list[subprocess.Popen[str]]) -> None:
    machine = Machine(tmp_path / "machine")
    broker_home, issuer_home = machine.path("/var/lib/citypass-broker"), machine.path("/var/lib/citypass-issuer")
    gate_config = machine.path("/var/lib/citypass/gate.toml")
    broker_home.mkdir(parents=True)
    broker_home.chmod(0o2770)  # tmpfiles.d / StateDirectoryMode=2770: shared with the issuer's group
    broker_port, api_port = free_port(), free_port()

    # The central server, once (docs/operations.md, "Central server").
    run("broker", "init", "--home", str(broker_home), "--host", "127.0.0.1")
    run("issuer", "init", "--home", str(issuer_home), "--site", "west-lake", "--site", "city-museum:museum")
    default = machine.path("/etc/default/citypass-issuer")
    default.parent.mkdir(parents=True)
    default.write_text(f"CITYPASS_BROKER=127.0.0.1:{broker_port}\n")
    assert oct(broker_home.joinpath("ca", "ca.key").stat().st_mode & 0o777) == "0o640"

    argv, env = machine.exec_start("citypass-broker.service", "--port", str(broker_port), "--bind", "127.0.0.1")
    services.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    argv, env = machine.exec_start("citypass-issuer.service", replace={"--port 8080": f"--port {api_port}"})
    assert "--broker-home" in argv and "--mqtt-workers" in argv and f"127.0.0.1:{broker_port}" in argv
    services.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    url = f"http://127.0.0.1:{api_port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the issuer", answers, 60, services)

    # The operator registers the gate and prints its setup code.
    run("issuer", "device", "add", "--home", str(issuer_home), "gate-tech-1", "--site", "west-lake")
    code = run("issuer", "enrollment-qr", "--home", str(issuer_home), "--device", "gate-tech-1", "--url", url,
               "--out", str(tmp_path / "setup.png")).strip()
    assert code.startswith("CPENROLL:1|")

    # A visitor's pass, shown to the camera once the gate runs.
    iss = Issuer.open(IssuerHome(issuer_home))
    pass_code = iss.mint_annual(["west-lake"], int(time.time()) - 60)
    iss.close()
    frames = tmp_path / "frames"
    write_frames(frames, [(pass_code, "clean")] * 4 + [(None, "no_code")] * 30, (640, 480), seed=5)

    # The technician, on the gate.
    units = machine.path("/etc/systemd/system")
    out = run("provision", "enroll", "--token", code, "--home", str(gate_config.parent), "--camera", f"dir:{frames}",
              "--pins", "mock", "--health-port", str(free_port()), "--site", "west-lake", "--unit-dir", str(units))
    assert "enrolled gate-tech-1" in out
    dropin = units / "citypass-gate.service.d" / "50-citypass-network.conf"
    assert "IPAddressAllow=127.0.0.1" in dropin.read_text()
    selftest = run("selftest", "--config", str(gate_config))
    assert "all checks passed" in selftest and "ACL enforced" in selftest

    argv, env = machine.exec_start("citypass-barrier-safe.service")
    assert argv[-1] == str(gate_config)
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)
    argv, env = machine.exec_start("citypass-gate.service")
    assert argv[1:] == ["gate", "run", "--config", str(gate_config)]
    gate = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    services.append(gate)

    health = run("hooks", "health-check", "--config", str(gate_config), "--grace", "60", "--broker-within", "60")
    assert health.rstrip().endswith("mark-good"), health

    def tapped() -> bool:
        store = Issuer.open(IssuerHome(issuer_home))
        try:
            return any(t.gate_id == "gate-tech-1" and t.decision == "allow" for t in store.store.taps())
        finally:
            store.close()

    wait_for("the gate's tap at the issuer", tapped, 60, services)
    with httpx.Client(base_url=url) as anon:  # the issuer shows it enrolled
        token = run("issuer", "token", "create", "--home", str(issuer_home), "--role", "technician").strip()
        device = anon.get("/v1/devices/gate-tech-1", headers={"Authorization": f"Bearer {token}"}).json()
        assert device["status"] == "enrolled"
