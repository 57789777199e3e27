"""The Debian packages: built by `./scripts/build-deb` from this tree, installed into a scratch root, checked.

The install is Debian's own: ``dpkg --root ROOT --force-script-chrootless -i``, so the maintainer scripts run
with ``DPKG_ROOT=ROOT`` and make the users (systemd-sysusers), directories (systemd-tmpfiles) and unit links
(systemctl enable) inside ROOT; the test checks that this machine's /etc/passwd and /etc/systemd/system are
untouched. ``--force-depends``: the scratch root has no python3.11, libzbar0 or systemd *packages* (this
machine's own are used to run the result).

What landed is then run as it would run on a device: ``systemd-analyze verify --root ROOT`` on the installed
units with their real ExecStart binaries (``/usr/bin/citypass`` → ``/opt/citypass/bin/citypass`` inside ROOT;
systemd's own units are copied in, as the ``systemd`` package would provide them), and the console script
through its real shebang ``#!/opt/citypass/bin/python``, with ROOT's ``/opt/citypass`` bind-mounted at
``/opt/citypass`` in a private mount namespace (``unshare --mount``: this machine's /opt is not changed).

Building the gate's venv (OpenCV, numpy) and packing it takes a minute or two: marked ``slow``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from citypass.cli import cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
GATE_UNITS = ("citypass-gate.service", "citypass-barrier-safe.service", "citypass-power-fail.service")
CENTRAL_UNITS = ("citypass-issuer.service", "citypass-broker.service")


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None and not Path(tool).exists():
            pytest.skip(f"{tool} is not installed here (Debian's dpkg, systemd and python3 are needed to build "
                        "and check the package)")
    if os.geteuid() != 0:
        pytest.skip("dpkg --root and unshare --mount need root")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    _need("dpkg-deb", "dpkg", "/usr/bin/python3", "systemd-analyze", "systemd-sysusers", "unshare")
    started = os.environ.get("CITYPASS_TEST_DEB_DIR")
    if started:  # ./run-tests started the same build in the background before lint
        out, log = _wait_for_background_build(Path(started))
    else:
        out = tmp_path_factory.mktemp("dist")
        proc = subprocess.run([str(ROOT / "scripts" / "build-deb"), "--fast", "--out", str(out)],
                              capture_output=True, text=True, timeout=1200,
                              env={**os.environ, "PIP_PYTHON": sys.executable})
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = proc.stderr
    found = {p.name.split("_")[0]: p for p in out.glob("*.deb")}
    assert set(found) == {"citypass-gate", "citypass-central"}, found
    print(log.replace("\n", " | "))  # the installed sizes, for docs/operations.md
    yield found
    if started:
        shutil.rmtree(started, ignore_errors=True)


def _wait_for_background_build(folder: Path, timeout_s: float = 1200) -> tuple[Path, str]:
    """The packages ``./run-tests`` is building into ``folder/dist``: wait for its exit status, then check it."""
    deadline = time.monotonic() + timeout_s
    while not (folder / "exit").exists():
        assert time.monotonic() < deadline, f"the background package build in {folder} did not finish"
        time.sleep(0.5)
    log = (folder / "build.log").read_text(encoding="utf-8", errors="replace")
    assert (folder / "exit").read_text().strip() == "0", log[-3000:]
    return folder / "dist", log


def _host_state() -> str:
    paths = [Path("/etc/passwd"), Path("/etc/group")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths if p.exists()))
    units = sorted(p.name for p in Path("/etc/systemd/system").rglob("*citypass*"))
    return f"{digest.hexdigest()} {units}"


def _install(package: Path, root: Path) -> None:
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    (root / "etc").mkdir()  # a root has one; systemd-sysusers writes passwd and group there
    before = _host_state()
    proc = subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "-i",
                           str(package)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _host_state() == before, "installing into a scratch root changed this machine"
    # What Debian's systemd and procps packages provide on a device: systemd's own units (sysinit.target, …)
    # and /bin/kill (the broker's ExecReload=), for verify.
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(Path("/bin/kill").resolve(), root / "bin" / "kill")
    system = root / "usr/lib/systemd/system"
    for unit in Path("/usr/lib/systemd/system").iterdir():
        if not (system / unit.name).exists() and not unit.is_dir():
            shutil.copy2(unit, system / unit.name, follow_symlinks=False)


@pytest.fixture(scope="module")
def gate_root(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate-root")
    _install(packages["citypass-gate"], root)
    return root


@pytest.fixture(scope="module")
def central_root(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("central-root")
    _install(packages["citypass-central"], root)
    return root


def _in_namespace(root: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with ROOT's /opt/citypass at /opt/citypass, in a private mount namespace."""
    script = (f"mount -t tmpfs none /opt && mkdir /opt/citypass && mount --bind {root}/opt/citypass /opt/citypass"
              f" && {command}")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120)


def test_the_gate_package_installs_what_the_docs_name(gate_root: Path) -> None:
    assert os.readlink(gate_root / "usr/bin/citypass") == "/opt/citypass/bin/citypass"
    for unit in GATE_UNITS:
        assert (gate_root / "usr/lib/systemd/system" / unit).read_text() == (ROOT / "systemd" / unit).read_text()
    for unit in CENTRAL_UNITS:
        assert not (gate_root / "usr/lib/systemd/system" / unit).exists(), unit
    assert (gate_root / "usr/lib/sysusers.d/citypass.conf").is_file()
    assert "/var/lib/citypass " in (gate_root / "usr/lib/tmpfiles.d/citypass.conf").read_text()
    rules = (gate_root / "usr/lib/udev/rules.d/60-citypass-gpio.rules").read_text()
    assert 'GROUP="gpio"' in rules and 'GROUP="video"' in rules
    doc = (ROOT / "docs" / "operations.md").read_text()
    for wrapper in ("rauc-pre-install", "rauc-post-install"):
        path = gate_root / "usr/lib/citypass" / wrapper
        assert os.access(path, os.X_OK) and f"/usr/lib/citypass/{wrapper}" in doc, wrapper
    for script in ("ArtifactInstall_Enter_00", "ArtifactReboot_Leave_00", "ArtifactCommit_Enter_00",
                   "ArtifactRollbackReboot_Leave_00", "ArtifactFailure_Enter_00"):
        assert os.access(gate_root / "usr/share/citypass/mender" / script, os.X_OK) and script in doc, script
    assert (gate_root / "usr/share/doc/citypass/copyright").read_text() == (ROOT / "LICENSE").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert (gate_root / "usr/share/doc/citypass/operations.md").is_file()  # the units' Documentation=
    assert (gate_root / "usr/share/doc/citypass/examples/gate.toml").is_file()
    assert (gate_root / "usr/share/man/man1/citypass-provision-enroll.1.gz").is_file()
    assert "_citypass_completion" in (gate_root / "usr/share/bash-completion/completions/citypass").read_text()


def test_the_maintainer_scripts_made_users_directories_and_links_inside_the_root(gate_root: Path) -> None:
    passwd = (gate_root / "etc/passwd").read_text()
    group = (gate_root / "etc/group").read_text()
    assert "\ncitypass:" in "\n" + passwd and "\ngpio:" in "\n" + group
    members = {line.split(":")[0]: line.split(":")[3].split(",") for line in group.splitlines()}
    assert "citypass" in members["gpio"] and "citypass" in members["video"]
    assert "citypass" in members["citypass-broker"] or "citypass-issuer" in members["citypass-broker"]
    state = gate_root / "var/lib/citypass"
    assert state.is_dir() and oct(state.stat().st_mode & 0o7777) == "0o700"
    wants = gate_root / "etc/systemd/system/multi-user.target.wants"
    assert {p.name for p in wants.iterdir()} >= {"citypass-gate.service", "citypass-barrier-safe.service"}


def test_the_venv_was_moved_to_opt_citypass_and_names_no_build_directory(gate_root: Path) -> None:
    venv = gate_root / "opt/citypass"
    scripts = [p for p in (venv / "bin").iterdir() if p.is_file() and p.read_bytes()[:2] == b"#!"]
    assert scripts
    for script in scripts:
        first = script.read_text(errors="replace").splitlines()[0]
        assert first == "#!/opt/citypass/bin/python", (script.name, first)
    assert os.readlink(venv / "bin/python3").startswith("/usr/bin/python3")
    grep = subprocess.run(["grep", "-rlI", "/tmp/citypass-deb", str(venv)], capture_output=True, text=True)
    assert grep.stdout == "", grep.stdout
    assert not (venv / "bin/pip").exists() and not list(venv.glob("bin/activate*"))


def test_the_installed_units_verify_with_their_real_binaries(gate_root: Path, central_root: Path) -> None:
    for root, units in ((gate_root, GATE_UNITS), (central_root, CENTRAL_UNITS)):
        result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    # Guard: verify does check the binary inside the root (a missing console script is reported).
    script = gate_root / "opt/citypass/bin/citypass"
    moved = script.with_name("citypass.moved")
    script.rename(moved)
    try:
        result = subprocess.run(["systemd-analyze", "verify", f"--root={gate_root}", GATE_UNITS[0]],
                                capture_output=True, text=True, timeout=120)
    finally:
        moved.rename(script)
    assert "/usr/bin/citypass is not executable" in result.stdout + result.stderr


def test_the_installed_citypass_runs_through_its_shebang(gate_root: Path, central_root: Path) -> None:
    gate = _in_namespace(gate_root, "/opt/citypass/bin/citypass gate run --help && "
                                    "/opt/citypass/bin/citypass provision enroll --help && "
                                    "/opt/citypass/bin/python -c 'import cv2, zxingcpp, gpiozero, lgpio' && "
                                    "/opt/citypass/bin/python -c 'import fastapi' 2>&1 || true")
    assert gate.returncode == 0, gate.stderr
    assert "--board" in gate.stdout and "No module named 'fastapi'" in gate.stdout  # the gate carries no issuer
    central = _in_namespace(central_root, "/opt/citypass/bin/citypass issuer serve --help && "
                                          "/opt/citypass/bin/citypass broker run --help")
    assert central.returncode == 0 and "--mqtt-workers" in central.stdout, central.stderr


def test_every_citypass_command_in_a_wrapper_exists_with_its_options() -> None:
    for path in [*(ROOT / "packaging" / "rauc").iterdir(), *(ROOT / "packaging" / "mender").iterdir()]:
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, path
        for line in path.read_text().splitlines():
            for part in line.replace("{", " ").replace(";", " && ").split("&&"):
                words = part.split()
                if "/usr/bin/citypass" not in words:
                    continue
                args = words[words.index("/usr/bin/citypass") + 1:]
                command: click.Command = cli
                while isinstance(command, click.Group) and args and not args[0].startswith("-"):
                    found = command.get_command(click.Context(command), args[0])
                    assert found is not None, f"{path.name}: no command {args[0]!r}"
                    command, args = found, args[1:]
                options = {opt for p in command.params for opt in p.opts}
                assert all(w in options for w in args if w.startswith("--")), (path.name, args)
