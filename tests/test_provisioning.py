"""Provisioning end to end: a served issuer (real HTTP) that is the device CA of a real Mosquitto broker.

One issuer and one broker serve the module. Each test registers its own device, creates an enrollment
through the API as a technician would, and runs the real ``citypass`` commands (click's runner, or a
subprocess for ``gate run``). Failures must say what happened and leave no half-written home.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from citypass.bench.frames import write_frames
from citypass.cli import cli
from citypass.credential.setupcode import SetupCode
from citypass.gate.config import load_config
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.outbox import read_backlog
from citypass.issuer.api import create_app
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.issuer.tokens import create_token
from citypass.provisioning import device as layout
from citypass.provisioning.enroll import EnrollRequest, Environment, enroll
from citypass.provisioning.issuerclient import ProvisionError
from citypass.provisioning.selftest import _Probe, check_broker
from citypass.sync.broker import Broker, free_port
from citypass.sync.ca import CertificateAuthority, make_csr, new_key
from citypass.sync.home import BrokerHome
from citypass.wiring.issuer import BrokerAuthority

CITYPASS = Path(sys.executable).parent / "citypass"
SITES = [("west-lake", "scenic"), ("city-museum", "museum")]


@dataclass
class SkewClock:
    """The issuer's clock: real time plus ``offset`` (a test moves it to fake an expiry or a skewed device)."""

    offset: int = 0

    def __call__(self) -> int:
        return int(time.time()) + self.offset


@dataclass
class World:
    base: Path
    issuer_home: Path
    issuer: Issuer
    clock: SkewClock
    url: str
    technician: str
    broker: Broker
    broker_home: BrokerHome
    frames: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.technician}"}, timeout=10)

    def enrollment(self, device_id: str, *, site: int = 1, ttl: int = 3600) -> str:
        with self.api() as api:
            assert api.post("/v1/devices", json={"id": device_id, "site": site}).status_code == 201
            resp = api.post("/v1/enrollments", json={"device_id": device_id, "ttl_s": ttl})
            assert resp.status_code == 201, resp.text
            token: str = resp.json()["token"]
            return token

    def home(self, name: str) -> Path:
        return self.base / "devices" / name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("provisioning")
    broker_home = BrokerHome(base / "broker").init()
    frames = base / "frames"
    write_frames(frames, [(None, "no_code")] * 3, (320, 240), seed=1)
    now = int(time.time())
    issuer = Issuer.init(IssuerHome(base / "issuer"), SITES, now=now)
    clock = SkewClock()
    technician = create_token(issuer.store, "technician", now, label="test").text
    with Broker(broker_home) as broker:
        app = create_app(issuer, clock=clock, authority=BrokerAuthority(broker_home, f"{broker.host}:{broker.port}"))
        with BackgroundServer(app) as server:
            yield World(base, base / "issuer", issuer, clock, server.url, technician, broker, broker_home, frames)
    issuer.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def enroll_args(world: World, name: str, token: str, *extra: str) -> list[str]:
    return ["provision", "enroll", "--issuer", world.url, "--token", token, "--gate", name,
            "--home", str(world.home(name)), "--camera", f"dir:{world.frames}", "--pins", "mock",
            "--health-port", "0", "--root-kid", world.issuer.root_key().kid.hex(), *extra]


def assert_nothing_written(world: World, name: str) -> None:
    parent = world.home(name).parent
    assert not world.home(name).exists()
    assert not list(parent.glob(f".{name}.*")), "a temporary directory was left behind"


@pytest.fixture(scope="module")
def enrolled(world: World) -> tuple[Path, Result]:
    token = world.enrollment("gate-wl-e1")
    result = run(*enroll_args(world, "gate-wl-e1", token, "--site", "west-lake"))
    return world.home("gate-wl-e1"), result


def test_enroll_writes_a_home_that_loads_and_gate_run_starts(world: World, enrolled: tuple[Path, Result]) -> None:
    home, result = enrolled
    assert result.exit_code == 0, result.output
    for step in ("request", "home", "disk", "issuer", "check", "key", "redeem", "cert", "snapshot", "ledger", "config",
                 "commit", "network"):
        assert f"✓ {step}" in result.output
    # The gate unit may reach exactly the broker and the issuer (a drop-in under $CITYPASS_UNIT_DIR, never /etc).
    dropin = Path(os.environ["CITYPASS_UNIT_DIR"]) / "citypass-gate.service.d" / "50-citypass-network.conf"
    assert "\nIPAddressAllow=127.0.0.1\n" in dropin.read_text()
    assert oct((home / layout.KEY).stat().st_mode & 0o777) == "0o600"
    assert oct((home / layout.DEVICE).stat().st_mode & 0o777) == "0o600"
    cfg = load_config(home / layout.CONFIG)
    assert (cfg.gate_id, cfg.site, cfg.pins) == ("gate-wl-e1", "west-lake", "mock")
    record = layout.read_record(home)
    assert record.broker == f"{world.broker.host}:{world.broker.port}" and record.site == 1
    # The issuer signed the certificate with the broker's CA and put the device in the broker's ACL.
    assert "gate-wl-e1" in CertificateAuthority(world.broker_home.ca_dir).active("device")
    assert "user gate-wl-e1" in world.broker_home.acl_path.read_text()
    proc = subprocess.run([str(CITYPASS), "gate", "run", "--config", str(home / layout.CONFIG), "--max-frames", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_device_certificate_connects_and_the_acl_applies(enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    result = check_broker(home, layout.read_record(home))
    assert result.status == "ok", result.detail
    assert "ACL enforced" in result.detail


def test_enrolling_again_is_safe(world: World, enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    before = (home / layout.KEY).read_bytes()
    result = run(*enroll_args(world, "gate-wl-e1", "cpe_000000000000_" + "A" * 43))
    assert result.exit_code == 0, result.output
    assert "already enrolled as gate-wl-e1" in result.output
    assert (home / layout.KEY).read_bytes() == before


def test_selftest_passes_on_a_good_config(enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    result = run("selftest", "--config", str(home / layout.CONFIG))
    assert result.exit_code == 0, result.output
    for check in ("camera", "decoder", "gpio", "broker", "clock", "disk", "ledger"):
        assert check in result.output
    assert "all checks passed" in result.output


def test_selftest_fails_naming_a_missing_camera(world: World, enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    text = (home / layout.CONFIG).read_text().replace(f"dir:{world.frames}", f"dir:{world.base / 'no-such'}")
    bad = home / "badcam.toml"
    bad.write_text(text)
    try:
        result = run("selftest", "--config", str(bad))
    finally:
        bad.unlink()
    assert result.exit_code == 1, result.output
    assert "FAILED: camera" in result.output


def test_selftest_fails_naming_a_corrupt_ledger(world: World, enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    copy = world.base / "corrupt-copy"
    shutil.copytree(home, copy)
    ledger = copy / layout.LEDGER
    data = bytearray(ledger.read_bytes())
    for offset in range(4096, len(data), 512):  # every page after the header: garbage
        data[offset:offset + 64] = os.urandom(64)
    ledger.write_bytes(bytes(data))
    result = run("selftest", "--config", str(copy / layout.CONFIG))
    assert result.exit_code == 1, result.output
    assert "FAILED: ledger" in result.output


def test_an_expired_token_is_refused_and_nothing_is_written(world: World) -> None:
    token = world.enrollment("gate-expired", ttl=60)
    world.clock.offset += 120  # within the clock tolerance, past the token's life
    try:
        result = run(*enroll_args(world, "gate-expired", token))
    finally:
        world.clock.offset -= 120
    assert result.exit_code == 1
    assert "expired" in result.output and "new enrollment" in result.output
    assert_nothing_written(world, "gate-expired")


def test_a_used_token_is_refused_and_nothing_is_written(world: World) -> None:
    token = world.enrollment("gate-used")
    with httpx.Client(base_url=world.url) as anon:
        assert anon.post("/v1/enrollments/redeem", json={"token": token}).status_code == 201
    result = run(*enroll_args(world, "gate-used", token))
    assert result.exit_code == 1
    assert "used already" in result.output
    assert_nothing_written(world, "gate-used")


def test_an_unreachable_issuer_is_reported(world: World) -> None:
    args = enroll_args(world, "gate-nowhere", "cpe_000000000000_" + "A" * 43)
    args[args.index("--issuer") + 1] = f"http://127.0.0.1:{free_port()}"
    result = run(*args)
    assert result.exit_code == 1
    assert "cannot reach the issuer" in result.output
    assert_nothing_written(world, "gate-nowhere")


def test_a_skewed_clock_is_refused_before_the_token_is_spent(world: World) -> None:
    token = world.enrollment("gate-skew")
    world.clock.offset += 3600
    try:
        result = run(*enroll_args(world, "gate-skew", token))
    finally:
        world.clock.offset -= 3600
    assert result.exit_code == 1
    assert re.search(r"clock is 3[56]\d\d s behind the issuer", result.output), result.output
    assert_nothing_written(world, "gate-skew")
    # The token was not spent: with the clocks agreeing, the same command succeeds.
    assert run(*enroll_args(world, "gate-skew", token)).exit_code == 0


def _request(world: World, name: str, token: str) -> EnrollRequest:
    return EnrollRequest(issuer=world.url, token=token, home=world.home(name), device_id=name, pins="mock",
                         camera=f"dir:{world.frames}", health_port=0, root_kid=world.issuer.root_key().kid.hex())


def test_too_little_free_space_is_refused_before_anything(world: World) -> None:
    token = world.enrollment("gate-full")
    with pytest.raises(ProvisionError, match=r"the disk is full: 10 MB free"):
        enroll(_request(world, "gate-full", token), Environment(free_bytes=lambda path: 10 * 2**20))
    assert_nothing_written(world, "gate-full")


def test_a_disk_filling_up_mid_way_leaves_nothing_and_gives_the_enrollment_back(world: World) -> None:
    """A failure after the redeem: the issuer takes the enrollment back (device registered, certificate and
    token revoked), and the same token works once the cause is fixed."""
    token = world.enrollment("gate-enospc")

    def write(path: Path, data: bytes, mode: int) -> None:
        if path.name == layout.CONFIG:
            raise OSError(errno.ENOSPC, "No space left on device")
        layout.write_file(path, data, mode)

    with pytest.raises(ProvisionError, match=r"the disk is full \(writing gate.toml\)") as caught:
        enroll(_request(world, "gate-enospc", token), Environment(write=write))
    assert caught.value.step == "config"
    assert caught.value.recovery and "took the enrollment back" in caught.value.recovery
    assert_nothing_written(world, "gate-enospc")
    with world.api() as api:
        assert api.get("/v1/devices/gate-enospc").json()["status"] == "registered"
    assert "gate-enospc" not in CertificateAuthority(world.broker_home.ca_dir).active("device")
    assert not [t for t in world.issuer.store.tokens() if t.device_id == "gate-enospc" and t.revoked_at is None]
    again = run(*enroll_args(world, "gate-enospc", token))
    assert again.exit_code == 0, again.output
    with world.api() as api:
        assert api.get("/v1/devices/gate-enospc").json()["status"] == "enrolled"


def test_a_failure_after_the_redeem_says_how_to_recover_when_the_issuer_cannot_take_it_back(world: World) -> None:
    token = world.enrollment("gate-late")
    with httpx.Client(base_url=world.url) as anon:
        api_token = anon.post("/v1/enrollments/redeem", json={"token": token}).json()["api_token"]
        # Too late: the release window is over (the issuer's clock moved on).
        world.clock.offset += 16 * 60
        try:
            late = anon.post("/v1/enrollments/release", json={"token": token},
                             headers={"Authorization": f"Bearer {api_token}"})
        finally:
            world.clock.offset -= 16 * 60
        assert late.status_code == 409 and "too late" in late.json()["detail"]
        # Another device's token cannot give it back.
        other = world.enrollment("gate-late-2")
        other_api = anon.post("/v1/enrollments/redeem", json={"token": other}).json()["api_token"]
        stranger = anon.post("/v1/enrollments/release", json={"token": token},
                             headers={"Authorization": f"Bearer {other_api}"})
        assert stranger.status_code == 404


def test_a_token_of_the_wrong_kind_is_refused_before_a_key_is_made(world: World) -> None:
    result = run(*enroll_args(world, "gate-kind", "cpt_0123456789ab_" + "A" * 43))
    assert result.exit_code == 1
    assert "✗ request" in result.output and "not an enrollment token" in result.output
    assert "✓ key" not in result.output
    assert_nothing_written(world, "gate-kind")


def test_an_issuer_url_without_scheme_is_named_as_such(world: World) -> None:
    args = enroll_args(world, "gate-scheme", world.enrollment("gate-scheme"))
    args[args.index("--issuer") + 1] = world.url.removeprefix("http://")
    result = run(*args)
    assert result.exit_code == 1
    assert "has no http:// or https://" in result.output and "cannot reach" not in result.output


def test_plain_http_needs_a_pinned_root_key_or_insecure_tofu(world: World) -> None:
    token = world.enrollment("gate-tofu")
    args = enroll_args(world, "gate-tofu", token)
    at = args.index("--root-kid")
    del args[at:at + 2]
    refused = run(*args)
    assert refused.exit_code == 1 and "--insecure-tofu" in refused.output and "plain HTTP" in refused.output
    assert_nothing_written(world, "gate-tofu")
    accepted = run(*args, "--insecure-tofu")
    assert accepted.exit_code == 0, accepted.output
    assert "trusted on first use" in accepted.output


def test_a_wrong_root_key_is_refused_before_the_token_is_spent(world: World) -> None:
    token = world.enrollment("gate-kid")
    args = enroll_args(world, "gate-kid", token)
    args[args.index("--root-kid") + 1] = "00" * 8
    result = run(*args)
    assert result.exit_code == 1 and "is pinned" in result.output and "✗ check" in result.output
    assert "✓ redeem" not in result.output
    assert run(*enroll_args(world, "gate-kid", token)).exit_code == 0


def test_a_wrong_site_or_gate_is_refused_before_the_token_is_spent(world: World) -> None:
    token = world.enrollment("gate-site")
    wrong_site = run(*enroll_args(world, "gate-site", token, "--site", "city-museum"))
    assert wrong_site.exit_code == 1 and "not city-museum" in wrong_site.output
    assert "✗ check" in wrong_site.output and "nothing was written" in wrong_site.output
    assert _status(world, "gate-site") == "registered"
    world.enrollment("gate-sitf")  # another registered gate: the token is not for it
    wrong_gate = run(*enroll_args(world, "gate-sitf", token))
    assert wrong_gate.exit_code == 1 and "this token enrolls 'gate-site'" in wrong_gate.output
    assert run(*enroll_args(world, "gate-site", token, "--site", "1")).exit_code == 0
    assert _status(world, "gate-site") == "enrolled"


def _status(world: World, device_id: str) -> str:
    with world.api() as api:
        status: str = api.get(f"/v1/devices/{device_id}").json()["status"]
        return status


def test_devices_are_registered_by_site_name_or_number_under_the_one_id_rule(world: World) -> None:
    with world.api() as api:
        by_name = api.post("/v1/devices", json={"id": "gate-slug", "site": "city-museum"})
        assert by_name.status_code == 201 and by_name.json()["site"] == 2
        assert api.post("/v1/devices", json={"id": "gate-num", "site": 1}).json()["site"] == 1
        unknown = api.post("/v1/devices", json={"id": "gate-nosite", "site": "lost-lake"})
        assert unknown.status_code == 422 and "west-lake (#1)" in unknown.text
        # An id the certificate cannot carry is refused where it is first given, not at enrollment.
        for bad in ("Gate-WL:E3", "gate wl", "gate/1", "-gate"):
            assert api.post("/v1/devices", json={"id": bad, "site": 1}).status_code == 422, bad


def test_issuer_device_add_registers_without_curl(world: World) -> None:
    home = str(world.issuer_home)
    added = run("issuer", "device", "add", "--home", home, "gate-cli", "--site", "west-lake",
                "--description", "north lane")
    assert added.exit_code == 0, added.output
    assert "enrollment-qr" in added.output
    assert _status(world, "gate-cli") == "registered"
    bad = CliRunner().invoke(cli, ["issuer", "device", "add", "--home", home, "Gate:CLI", "--site", "1"])
    assert bad.exit_code == 2 and "unsafe device id" in bad.output
    listed = run("issuer", "device", "list", "--home", home, "--json")
    rows = {row["id"]: row for row in json.loads(listed.output)}
    assert rows["gate-cli"]["site"] == 1 and rows["gate-cli"]["description"] == "north lane"


def test_an_issuer_behind_a_private_ca_needs_issuer_ca(world: World) -> None:
    token = world.enrollment("gate-tls")
    tls = (str(world.broker_home.server_cert), str(world.broker_home.server_key))
    app = create_app(world.issuer, clock=world.clock,
                     authority=BrokerAuthority(world.broker_home, f"{world.broker.host}:{world.broker.port}"))
    with BackgroundServer(app, tls=tls) as server:
        args = enroll_args(world, "gate-tls", token)
        args[args.index("--issuer") + 1] = server.url
        untrusted = run(*args)
        assert untrusted.exit_code == 1 and "--issuer-ca" in untrusted.output, untrusted.output
        trusted = run(*args, "--issuer-ca", str(world.broker_home.ca_cert))
        assert trusted.exit_code == 0, trusted.output
        assert "HTTPS (private CA" in trusted.output


def _connects(tls_dir: Path, device_id: str, world: World) -> bool:
    probe = _Probe(tls_dir, device_id)
    try:
        return probe.connect(world.broker.host, world.broker.port, 3.0) is None
    finally:
        probe.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_decommission_revokes_the_certificate_and_wipes(world: World) -> None:
    token = world.enrollment("gate-dc")
    assert run(*enroll_args(world, "gate-dc", token)).exit_code == 0
    home = world.home("gate-dc")
    keep = world.base / "stolen" / "gate-dc"  # what a thief copied off the SD card before
    shutil.copytree(home / layout.TLS, keep / layout.TLS)
    assert _connects(keep, "gate-dc", world)
    result = run("provision", "decommission", "--home", str(home), "--token", world.technician, "--yes")
    assert result.exit_code == 0, result.output
    assert not home.exists()
    with world.api() as api:
        assert api.get("/v1/devices/gate-dc").json()["status"] == "retired"
    assert "gate-dc" not in CertificateAuthority(world.broker_home.ca_dir).active()
    assert wait_for(lambda: not _connects(keep, "gate-dc", world)), "the broker still accepts a revoked certificate"


def test_decommission_needs_a_token_or_local_only(world: World, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["provision", "decommission", "--home", str(tmp_path), "--yes"])
    assert result.exit_code == 2 and "--local-only" in result.output


def test_enroll_from_the_setup_qr_through_the_camera(world: World) -> None:
    with world.api() as api:
        assert api.post("/v1/devices", json={"id": "gate-qr", "site": 2}).status_code == 201
    camera = world.base / "setup-camera"
    camera.mkdir()
    result = run("issuer", "enrollment-qr", "--home", str(world.issuer_home), "--device", "gate-qr",
                 "--url", world.url, "--out", str(camera / "setup.png"))
    assert result.exit_code == 0, result.output
    code = SetupCode.parse(result.output.strip())
    assert code.device_id == "gate-qr" and code.root_kid == world.issuer.root_key().kid.hex()
    home = world.home("gate-qr")
    result = run("provision", "enroll", "--from-camera", "--camera", f"dir:{camera}", "--camera-timeout", "10",
                 "--home", str(home), "--pins", "mock", "--health-port", "0")
    assert result.exit_code == 0, result.output
    assert layout.read_record(home).site_name == "city-museum"
    assert load_config(home / layout.CONFIG).camera.source == f"dir:{camera}"


def test_a_bad_csr_is_refused_before_the_token_is_spent(world: World) -> None:
    token = world.enrollment("gate-csr")
    with httpx.Client(base_url=world.url) as anon:
        bad = anon.post("/v1/enrollments/redeem", json={"token": token, "csr": "-----BEGIN CERTIFICATE REQUEST-----"})
        assert bad.status_code == 422 and "csr" in bad.json()["detail"]
        stranger = make_csr(new_key(), "gate-not-registered").decode()
        refused = anon.post("/v1/enrollments/redeem", json={"token": token, "csr": stranger})
        assert refused.status_code == 422 and "not the device this enrollment is for" in refused.json()["detail"]
        csr = make_csr(new_key(), "gate-csr").decode()
        good = anon.post("/v1/enrollments/redeem", json={"token": token, "csr": csr})
        assert good.status_code == 201, good.text
        body = good.json()
        assert body["broker"] == f"{world.broker.host}:{world.broker.port}"
        assert body["site_settings"]["name"] == "west-lake"


def test_an_issuer_without_a_broker_home_answers_a_csr_with_503(world: World) -> None:
    token = world.enrollment("gate-noca")
    with BackgroundServer(create_app(world.issuer, clock=world.clock)) as server, \
            httpx.Client(base_url=server.url) as anon:
        csr = make_csr(new_key(), "gate-noca").decode()
        resp = anon.post("/v1/enrollments/redeem", json={"token": token, "csr": csr})
        assert resp.status_code == 503 and "--broker-home" in resp.json()["detail"]



def test_force_enrolls_again_and_the_old_certificate_is_revoked(world: World) -> None:
    token = world.enrollment("gate-force")
    assert run(*enroll_args(world, "gate-force", token)).exit_code == 0
    home = world.home("gate-force")
    old = world.base / "old" / "gate-force"
    shutil.copytree(home / layout.TLS, old / layout.TLS)
    with world.api() as api:
        again = api.post("/v1/enrollments", json={"device_id": "gate-force"}).json()["token"]
    result = run(*enroll_args(world, "gate-force", again, "--force"))
    assert result.exit_code == 0, result.output
    assert (home / layout.KEY).read_bytes() != (old / layout.KEY).read_bytes()
    assert not list(home.parent.glob(".gate-force.*"))
    assert wait_for(lambda: not _connects(old, "gate-force", world)), "the replaced certificate still connects"
    assert _connects(home, "gate-force", world)


def test_an_enrolled_gate_run_uploads_its_taps_over_mqtt(world: World) -> None:
    """The whole chain: enrolled config with [sync] → `citypass gate run` decides on camera frames → the
    sync thread uploads over the TLS broker → the issuer's ingest worker stores the taps and acks them."""
    from citypass.sync.endpoint import ClientFiles, Endpoint
    from citypass.sync.issuer_sync import IssuerSync

    name = "gate-wl-sync"
    code = world.issuer.mint_annual(["west-lake"], int(time.time()) - 60)
    frames = world.base / "frames-sync"
    write_frames(frames, [(code, "clean")] * 4 + [(None, "no_code")] * 20, (640, 480), seed=3)
    token = world.enrollment(name)
    result = run(*enroll_args(world, name, token, "--site", "west-lake"))
    assert result.exit_code == 0, result.output
    home = world.home(name)
    config = home / layout.CONFIG
    assert "[sync]" in config.read_text()
    config.write_text(config.read_text().replace(f"dir:{world.frames}", f"dir:{frames}"))

    def endpoint_for(cn: str) -> Endpoint:
        files = world.broker_home.add_service(cn, out_dir=world.base / "mqtt" / cn)
        assert isinstance(files, ClientFiles)
        return Endpoint(world.broker.host, world.broker.port, tls=files)

    before = world.issuer.store.tap_count()
    with IssuerSync(world.issuer, endpoint_for, workers=1, group="provision-test"):
        gate = subprocess.Popen([str(CITYPASS), "gate", "run", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            uploaded = wait_for(lambda: world.issuer.store.tap_count() > before, timeout=45)
        finally:
            gate.send_signal(signal.SIGTERM)
            _, err = gate.communicate(timeout=30)
        assert uploaded, err[-2000:]
        assert gate.returncode == 0 and '"decision": "allow"' in err
    stored = [t for t in world.issuer.store.taps() if t.gate_id == name]
    assert [(t.decision, t.site) for t in stored] == [("allow", 1)]


def test_a_csr_for_another_device_changes_nothing(world: World) -> None:
    """A mistyped --gate: the CSR names a working gate. Before the fix its certificate was revoked first, then
    the CSR refused, and the token spent."""
    token = world.enrollment("gate-real")
    assert run(*enroll_args(world, "gate-real", token)).exit_code == 0
    home = world.home("gate-real")
    assert _connects(home, "gate-real", world)
    typo = world.enrollment("gate-rea1")
    with httpx.Client(base_url=world.url) as anon:
        wrong = anon.post("/v1/enrollments/redeem",
                          json={"token": typo, "csr": make_csr(new_key(), "gate-real").decode()})
        assert wrong.status_code == 422 and "not the device this enrollment is for" in wrong.json()["detail"]
        time.sleep(0.5)  # a revocation would have reloaded the broker by now
        assert _connects(home, "gate-real", world), "the working gate was cut off"
        right = anon.post("/v1/enrollments/redeem",
                          json={"token": typo, "csr": make_csr(new_key(), "gate-rea1").decode()})
        assert right.status_code == 201, "the refused redeem spent the token"


def test_re_enrollment_and_retirement_revoke_every_earlier_device_token(world: World) -> None:
    tokens = []
    with httpx.Client(base_url=world.url) as anon, world.api() as api:
        world.enrollment("gate-tokens")
        for _ in range(3):
            secret = api.post("/v1/enrollments", json={"device_id": "gate-tokens"}).json()["token"]
            tokens.append(anon.post("/v1/enrollments/redeem", json={"token": secret}).json()["api_token"])

        def uploads(token: str) -> int:
            return anon.post("/v1/taps", json={"events": []}, headers={"Authorization": f"Bearer {token}"}).status_code

        assert [uploads(t) for t in tokens] == [401, 401, 200]
        live = [t for t in world.issuer.store.tokens() if t.device_id == "gate-tokens" and t.revoked_at is None]
        assert len(live) == 1
        assert api.delete("/v1/devices/gate-tokens").status_code == 200
        assert uploads(tokens[-1]) == 401


def _pending_taps(home: Path, count: int) -> None:
    with GateLedger.open(home / layout.LEDGER) as ledger:
        ledger.append_events([("tap", f"t-{i}", {"gate_id": "x"}, 0, 1000 + i) for i in range(count)])
        assert ledger.backlog() == count


def test_force_refuses_while_the_outbox_holds_taps_unless_discarded(world: World) -> None:
    token = world.enrollment("gate-outbox")
    assert run(*enroll_args(world, "gate-outbox", token)).exit_code == 0
    home = world.home("gate-outbox")
    _pending_taps(home, 7)
    key = (home / layout.KEY).read_bytes()
    with world.api() as api:
        again = api.post("/v1/enrollments", json={"device_id": "gate-outbox"}).json()["token"]
    refused = run(*enroll_args(world, "gate-outbox", again, "--force"))
    assert refused.exit_code == 1 and "7 event(s) not yet uploaded" in refused.output
    assert "--discard-outbox" in refused.output and "citypass gate run" in refused.output
    assert (home / layout.KEY).read_bytes() == key and read_backlog(home / layout.LEDGER) == 7
    assert run(*enroll_args(world, "gate-outbox", again, "--discard-outbox")).exit_code == 2  # needs --force
    replaced = run(*enroll_args(world, "gate-outbox", again, "--force", "--discard-outbox"))
    assert replaced.exit_code == 0, replaced.output  # the same token: the refusal did not spend it
    assert "7 un-uploaded event(s) will be wiped" in replaced.output
    assert (home / layout.KEY).read_bytes() != key and read_backlog(home / layout.LEDGER) == 0


def test_the_enrolled_home_is_private_whatever_the_umask(world: World) -> None:
    token = world.enrollment("gate-modes")
    old = os.umask(0o022)  # a technician working as root with the usual umask
    try:
        assert run(*enroll_args(world, "gate-modes", token)).exit_code == 0
    finally:
        os.umask(old)
    home = world.home("gate-modes")
    modes = {str(p.relative_to(home)): oct(p.stat().st_mode & 0o777) for p in [home, *home.rglob("*")]}
    assert modes.pop(".") == "0o700" and modes.pop(layout.TLS) == "0o700"
    assert modes and set(modes.values()) == {"0o600"}, modes  # gate.toml, ledger, keys, certificates, …


def test_enroll_writes_the_board_profile_and_explicit_pins(world: World) -> None:
    default = world.home("gate-wl-e1")  # the module's first enrollment: no --board given
    barrier = load_config(default / layout.CONFIG).barrier
    assert (barrier.relay_pin, barrier.relay_active_high, barrier.fire_alarm_active_low) == (17, False, False)
    assert barrier.fail_mode == "fail_secure"
    token = world.enrollment("gate-board")
    result = run(*enroll_args(world, "gate-board", token, "--board", "waveshare-rpi-relay", "--relay-active-high",
                              "--sensor-pin", "5", "--fire-alarm-contact", "no", "--fail-mode", "fail_safe"))
    assert result.exit_code == 0, result.output
    barrier = load_config(world.home("gate-board") / layout.CONFIG).barrier
    assert (barrier.relay_pin, barrier.relay_active_high, barrier.sensor_pin) == (26, True, 5)
    assert (barrier.fire_alarm_active_low, barrier.fail_mode) == (True, "fail_safe")
    clash = CliRunner().invoke(cli, enroll_args(world, "gate-board2", token, "--relay-pin", "27"))
    assert clash.exit_code == 2 and "board generic-active-low" in clash.output  # the sensor's pin: refused at once


def test_selftest_warns_about_mock_pins_and_names_lgpio_when_pins_cannot_load(world: World,
                                                                             enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    result = run("selftest", "--config", str(home / layout.CONFIG))
    assert result.exit_code == 0 and "MOCK pins" in result.output and "WARN" in result.output
    from citypass.provisioning.selftest import check_gpio

    native = load_config(home / layout.CONFIG).model_copy(update={"pins": "native"})
    row = check_gpio(native)  # this machine is no Raspberry Pi and has no lgpio
    import importlib.util

    hint = "install lgpio" if importlib.util.find_spec("lgpio") is None else "lgpio is installed but"
    assert row.status == "fail" and hint in row.detail and "BadPinFactory" in row.detail, row.detail
    assert "Falling back" not in row.detail


def test_enroll_and_selftest_answer_json(world: World, enrolled: tuple[Path, Result]) -> None:
    home, _ = enrolled
    selftest = run("selftest", "--json", "--config", str(home / layout.CONFIG))
    body = json.loads(selftest.output)
    assert selftest.exit_code == 0 and body["ok"] is True and body["gate_id"] == "gate-wl-e1"
    assert {c["name"]: c["status"] for c in body["checks"]}["gpio"] == "warn"
    refused = CliRunner().invoke(cli, enroll_args(world, "gate-json", "cpt_0123456789ab_" + "A" * 43, "--json"))
    failure = json.loads(refused.stdout)  # the ✗ lines went to stderr
    assert refused.exit_code == 1 and failure["failed_step"] == "request"
    assert "nothing was written" in failure["recovery"]
    token = world.enrollment("gate-json")
    done = run(*enroll_args(world, "gate-json", token, "--json"))
    success = json.loads(done.output)
    assert success["ok"] and success["device_id"] == "gate-json" and success["network_dropin"]["written"]
    assert [s["step"] for s in success["steps"]][:3] == ["request", "home", "disk"]


def test_list_commands_answer_json(world: World) -> None:
    tokens = json.loads(run("issuer", "token", "list", "--home", str(world.issuer_home), "--json").output)
    assert any(t["role"] == "technician" for t in tokens) and all("secret" not in t for t in tokens)
    keys = json.loads(run("issuer", "keys", "--home", str(world.issuer_home), "--json").output)
    assert {k["role"] for k in keys} >= {"issuer", "ledger"} and all(k["kid"] for k in keys)
    identities = json.loads(run("broker", "list", "--home", str(world.broker_home.path), "--json").output)
    assert any(i["cn"] == "gate-wl-e1" and i["kind"] == "device" and i["site"] == 1 for i in identities)
