"""The systemd units in systemd/: they verify, they say what the issue requires, and they are hardened.

``systemd-analyze verify`` checks that every ExecStart binary exists, so the units are copied to a
temporary folder with ``/usr/bin/citypass`` replaced by this venv's ``citypass``. It exits 0 even for an
unknown key or a bad value (it only warns), so any output at all fails the test. The exposure score of
``systemd-analyze security --offline=yes`` (systemd ≥ 250) is the number quoted in docs/operations.md.

``MemoryDenyWriteExecute=yes`` is only safe if nothing in the daemon needs writable executable memory.
The kernel offers the same rule to one process (``prctl(PR_SET_MDWE)``, Linux ≥ 6.3), so the whole
decode and verify stack is run under it here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from citypass.cli import cli
from citypass.gate.paths import GATE_CONFIG, STATE_DIR

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "systemd").glob("*.service"))
CITYPASS = Path(sys.executable).parent / "citypass"
MAX_EXPOSURE = 4.0


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`; scripts/bootstrap.sh installs it)")
    return found


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections → keys → every value in order (unit files repeat keys such as DeviceAllow=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as they would be installed, pointing at this venv's citypass."""
    folder = tmp_path_factory.mktemp("units")
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8").replace("/usr/bin/citypass", str(CITYPASS))
        (folder / unit.name).write_text(text, encoding="utf-8")
    return folder


def test_the_expected_units_exist() -> None:
    names = {u.name for u in UNITS}
    assert {"citypass-gate.service", "citypass-barrier-safe.service", "citypass-issuer.service",
            "citypass-broker.service", "citypass-power-fail.service"} <= names


@pytest.mark.parametrize("unit", [u.name for u in UNITS])
def test_systemd_analyze_verify_passes_without_a_warning(installed: Path, unit: str) -> None:
    result = subprocess.run([systemd_analyze(), "verify", str(installed / unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_verify_really_complains_about_a_bad_unit(tmp_path: Path) -> None:
    """Guards the test above: a typo must produce output (else 'no output' would prove nothing)."""
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nProtectSytem=strict\n", encoding="utf-8")
    result = subprocess.run([systemd_analyze(), "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "ProtectSytem" in result.stdout + result.stderr


def test_the_gate_unit_says_what_the_issue_requires() -> None:
    unit = parse_unit(ROOT / "systemd" / "citypass-gate.service")
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"citypass-gate.service has no {key}="
        return service[key][-1]

    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("ExecStart").endswith(f"citypass gate run --config {GATE_CONFIG}")
    assert "citypass hooks safe-state" in one("ExecStopPost")
    assert 1 <= int(one("WatchdogSec").removesuffix("s")) <= 30
    assert one("Restart") == "always" and one("RestartSec")
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])
    assert one("StateDirectory") == "citypass" and "ConfigurationDirectory" not in service
    assert one("RuntimeDirectory") == "citypass"
    assert one("User") == "citypass" and "DynamicUser" not in service
    assert one("SupplementaryGroups").split() == ["gpio", "video"]
    assert one("DevicePolicy") == "closed"
    assert service["DeviceAllow"] == ["/dev/gpiochip0 rw", "char-video4linux rw"]
    assert one("CapabilityBoundingSet") == ""
    assert one("RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert one("UMask") == "0077" and one("ProtectSystem") == "strict"
    for flag in ("ProtectHome", "PrivateTmp", "NoNewPrivileges", "MemoryDenyWriteExecute", "LockPersonality",
                 "RestrictRealtime", "RestrictNamespaces", "ProtectKernelTunables", "ProtectKernelModules",
                 "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname"):
        assert one(flag) == "yes", flag
    assert one("IPAddressDeny") == "any" and one("IPAddressAllow") == "localhost"


def test_every_gate_unit_reads_the_config_where_enroll_writes_it() -> None:
    """The finding: enroll wrote /var/lib/citypass/gate.toml while the units waited for /etc/citypass/gate.toml,
    so `systemctl start citypass-gate` was skipped silently. Units, enroll's default home, the hooks' and
    selftest's default --config are one path now."""
    from citypass.firmware_hooks.cli import DEFAULT_CONFIG
    from citypass.gate.cli import DEFAULT_GATE_CONFIG
    from citypass.provisioning import device as layout
    from citypass.provisioning.cli import DEFAULT_HOME

    assert DEFAULT_HOME / layout.CONFIG == GATE_CONFIG == DEFAULT_CONFIG == DEFAULT_GATE_CONFIG
    assert GATE_CONFIG.parent == STATE_DIR
    for name in ("citypass-gate.service", "citypass-barrier-safe.service", "citypass-power-fail.service"):
        unit = parse_unit(ROOT / "systemd" / name)
        assert unit["Service"]["StateDirectory"] == [STATE_DIR.name], name
        configs = [v.split("--config ")[1].split()[0] for vs in unit["Service"].values() for v in vs
                   if "--config " in v]
        assert configs and set(configs) == {str(GATE_CONFIG)}, name
        if "ConditionPathExists" in unit["Unit"]:
            assert unit["Unit"]["ConditionPathExists"] == [str(GATE_CONFIG)], name


def test_the_barrier_is_parked_before_the_gate_starts_and_after_it_stops() -> None:
    safe = parse_unit(ROOT / "systemd" / "citypass-barrier-safe.service")
    gate = parse_unit(ROOT / "systemd" / "citypass-gate.service")
    assert "citypass-gate.service" in safe["Unit"]["Before"][0].split()
    assert "citypass-barrier-safe.service" in gate["Unit"]["After"][0].split()
    assert safe["Service"]["Type"] == ["oneshot"] and safe["Service"]["RemainAfterExit"] == ["yes"]
    assert "citypass hooks boot" in safe["Service"]["ExecStart"][0]
    assert "citypass hooks shutdown" in safe["Service"]["ExecStop"][0]
    fail = parse_unit(ROOT / "systemd" / "citypass-power-fail.service")
    assert fail["Unit"]["Conflicts"] == ["citypass-gate.service"] and fail["Unit"]["After"] == ["citypass-gate.service"]


def test_every_citypass_command_in_a_unit_exists_with_its_options() -> None:
    for path in UNITS:
        for values in parse_unit(path).get("Service", {}).values():
            for value in values:
                words = value.lstrip("-").split()
                if not words or not words[0].endswith("/citypass"):
                    continue
                command: click.Command = cli
                args = words[1:]
                while isinstance(command, click.Group) and args and not args[0].startswith("-"):
                    found = command.get_command(click.Context(command), args[0])  # groups load lazily
                    assert found is not None, f"{path.name}: no command {args[0]!r} in {value}"
                    command, args = found, args[1:]
                options = {opt for p in command.params for opt in p.opts}
                for word in args:
                    if word.startswith("--"):
                        assert word in options, f"{path.name}: {word} is not an option of {value}"


def exposure(installed: Path, unit: str) -> float:
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", str(installed / unit)],
                            capture_output=True, text=True, timeout=60)
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"this systemd-analyze has no --offline (systemd >= 250 needed): {result.stderr.strip()}")
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@pytest.mark.parametrize("unit", [u.name for u in UNITS])
def test_exposure_is_low(installed: Path, unit: str) -> None:
    score = exposure(installed, unit)
    print(f"{unit}: exposure {score}")
    assert score <= MAX_EXPOSURE


def test_the_enrolled_network_dropin_opens_exactly_broker_and_issuer_and_keeps_the_score(installed: Path,
                                                                                       tmp_path: Path) -> None:
    """`citypass provision enroll` writes citypass-gate.service.d/50-citypass-network.conf (the finding: the unit
    allowed only localhost, so the broker and issuer that enroll wrote into [sync] were unreachable)."""
    from citypass.provisioning.device import DeviceRecord
    from citypass.provisioning.network import write_dropin

    record = DeviceRecord(device_id="gate-wl-e1", site=1, site_name="west-lake", direction="entry",
                          issuer="https://issuer.example:8443", broker="broker.example:8883", api_token="x",
                          enrolled_at=0, certificate_serial="1")
    names = {"broker.example": ["192.0.2.10"], "issuer.example": ["192.0.2.11", "2001:db8::11"]}
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(installed / "citypass-gate.service", units)
    path, summary = write_dropin(record, units, resolver=names.__getitem__)
    assert path == units / "citypass-gate.service.d" / "50-citypass-network.conf"
    dropin = parse_unit(path)
    assert dropin["Service"]["IPAddressAllow"] == ["192.0.2.10 192.0.2.11 2001:db8::11"]
    assert "daemon-reload" in summary
    verify = subprocess.run([systemd_analyze(), "verify", str(units / "citypass-gate.service")], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", str(units / "citypass-gate.service")],
                            capture_output=True, text=True, timeout=60)
    assert "allow list with non-localhost entries" in result.stdout, "the drop-in was not read"
    match = re.search(r"Overall exposure level for citypass-gate.service: (\d+\.\d+)", result.stdout)
    assert match and float(match.group(1)) <= 2.0, result.stdout


def test_operations_doc_quotes_the_gate_units_exposure(installed: Path) -> None:
    score = exposure(installed, "citypass-gate.service")
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert f"citypass-gate.service: {score}" in doc, f"docs/operations.md should quote the measured {score}"


MDWE_PROBE = textwrap.dedent("""
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print("unsupported", ctypes.get_errno()); sys.exit(3)
    assert libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) == PR_MDWE_REFUSE_EXEC_GAIN
    # Prove the rule bites: anonymous memory that is writable and executable is now refused.
    import mmap
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print("W+X mapping was allowed"); sys.exit(4)
    except OSError:
        pass
    import numpy as np, cv2, segno, sqlite3
    from citypass.credential.keys import SigningKey
    from citypass.gate.decoders import make_decoder
    key = SigningKey.generate(); assert key.public.verify(key.sign(b"m"), b"m")
    qr = np.asarray(segno.make("CP1:MDWE", error="m", micro=False).matrix, dtype=np.uint8)
    img = np.pad(np.kron(1 - qr, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    frame = cv2.cvtColor(cv2.resize(img, None, fx=1.5, fy=1.5), cv2.COLOR_GRAY2BGR)
    for name in ("zxing", "zbar"):
        assert [d.text for d in make_decoder(name).decode(frame)] == ["CP1:MDWE"], name
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert callback(1) == 2  # libffi closures: the classic W+X user
    sqlite3.connect(":memory:").execute("select 1")
    print("ok")
""")


def test_the_decode_and_verify_stack_runs_without_writable_executable_memory() -> None:
    result = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT)
    if result.returncode == 3:
        pytest.skip(f"this kernel has no PR_SET_MDWE (Linux >= 6.3 needed): {result.stdout.strip()}")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
