"""The CLI contract, command by command, as technicians and scripts use it."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from citypass.cli import cli
from citypass.credential import Reason
from tests.helpers.codes import QR_TEXT_RE

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "issuer"
    run("issuer", "init", "--home", str(path), "--site", "west-lake", "--site", "lingyin",
        "--site", "zhejiang-museum:museum", "--site", "longxiangqiao:metro", "--site", "bus-k7:bus")
    return path


def mint(home: Path, *args: str) -> str:
    out = run("issuer", "mint", "--home", str(home), *args).output
    lines = out.splitlines()
    assert len(lines) == 1, out  # exactly one line: the code text
    assert QR_TEXT_RE.match(lines[0])
    return lines[0]


def check(snapshot: Path, site: str, *inputs: str, at: str | None = None) -> list[dict[str, object]]:
    args = ["gate", "check", "--snapshot", str(snapshot), "--site", site]
    if at:
        args += ["--at", at]
    out = run(*args, *inputs).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_init_writes_private_keys_0600(home: Path) -> None:
    for key in (home / "keys").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    result = run("issuer", "init", "--home", str(home), ok=False)
    assert result.exit_code == 1 and "refusing to overwrite" in result.output


def test_every_product_mints_checks_and_inspects(home: Path, tmp_path: Path) -> None:
    annual = mint(home, "--product", "annual", "--sites", "west-lake,lingyin", "--valid-from", "2030-01-01")
    reservation = mint(home, "--product", "reservation", "--venue", "zhejiang-museum",
                       "--slot-start", "2030-05-01T10:00", "--slot-end", "2030-05-01T12:00", "--party", "3")
    transit = mint(home, "--product", "transit", "--account", "A1", "--modes", "metro,bus",
                   "--valid-to", "2030-05-02")
    group = mint(home, "--product", "group", "--site", "lingyin", "--party", "20",
                 "--valid-from", "2030-05-01", "--valid-to", "2030-05-02")
    inspected = json.loads(run("code", "inspect", reservation).output)
    assert inspected["product"] == "reservation" and inspected["party"] == 3 and inspected["verified"] is False
    assert re.fullmatch(r"[0-9a-f]{16}", inspected["credential_id"])
    snap = tmp_path / "snap.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(snap))
    lines = check(snap, "west-lake", "--text", annual, "--text", group, at="2030-05-01T10:30")
    assert [(line["decision"], line["reason"], line["product"]) for line in lines] == [
        ("allow", None, "annual"), ("deny", "wrong_site", "group")]
    assert {"input", "decoded", "decision", "reason", "credential_id", "product"} <= set(lines[0])
    lines = check(snap, "zhejiang-museum", "--text", reservation, "--text", reservation, at="2030-05-01T10:30")
    assert [(line["decision"], line["reason"], line["persons"]) for line in lines] == [
        ("allow", None, 3), ("deny", "already_used", 0)]
    lines = check(snap, "longxiangqiao", "--text", transit, at="2030-05-01T10:30")
    assert lines[0]["decision"] == "allow" and lines[0]["kind"] == "tap_in"
    lines = check(snap, "lingyin", "--text", group, at="2030-05-01T10:30")
    assert lines[0]["decision"] == "allow" and lines[0]["persons"] == 20


def test_holder_keygen_present_and_dynamic_check(home: Path, tmp_path: Path) -> None:
    key = tmp_path / "phone.key"
    run("holder", "keygen", "--out", str(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and (tmp_path / "phone.key.pub").exists()
    credential = mint(home, "--product", "annual", "--sites", "west-lake", "--valid-from", "2030-01-01",
                      "--holder-key", str(tmp_path / "phone.key.pub"))
    live = run("holder", "present", "--key", str(key), "--credential", credential,
               "--at", "2030-05-01T10:00:00").output.strip()
    snap = tmp_path / "snap.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(snap))
    lines = check(snap, "west-lake", "--text", live, "--text", live, "--text", credential, at="2030-05-01T10:00:05")
    assert [(line["decision"], line["reason"]) for line in lines] == [
        ("allow", None), ("deny", "replayed_presentation"), ("deny", "dynamic_required")]
    lines = check(snap, "west-lake", "--text", live, at="2030-05-01T10:05")
    assert lines[0]["reason"] == "presentation_expired"


def test_revoke_by_id_then_export_denies(home: Path, tmp_path: Path) -> None:
    code = mint(home, "--product", "annual", "--sites", "west-lake", "--valid-from", "2030-01-01")
    cred_id = json.loads(run("code", "inspect", code).output)["credential_id"]
    assert run("issuer", "revoke", "--home", str(home), cred_id).output.strip() == f"revoked {cred_id}"
    snap = tmp_path / "snap.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(snap))
    assert check(snap, "west-lake", "--text", code, at="2030-05-01T10:00")[0]["reason"] == "revoked"


def test_qr_render_then_check_the_image(home: Path, tmp_path: Path) -> None:
    code = mint(home, "--product", "annual", "--sites", "west-lake", "--valid-from", "2030-01-01")
    png, dark = tmp_path / "code.png", tmp_path / "dark.png"
    assert "QR version 7" in run("qr", "render", code, "--out", str(png), "--scale", "4").output
    run("qr", "render", code, "--out", str(dark), "--dark-mode")
    snap = tmp_path / "snap.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(snap))
    noise = tmp_path / "noise.png"
    noise.write_bytes(b"not an image at all")
    lines = check(snap, "west-lake", str(png), str(dark), str(noise), at="2030-05-01T10:00")
    assert [(line["decoded"], line["decision"]) for line in lines] == [(True, "allow"), (True, "deny"), (False, None)]
    assert lines[1]["reason"] == Reason.PASSBACK  # the same pass again, read from the dark-mode image
    assert lines[0]["decoder"] and "decode" in lines[0]["ms"]


def test_rotation_and_keys_listing(home: Path) -> None:
    before = run("issuer", "keys", "--home", str(home)).output
    assert before.count("issuer ") == 1 or before.count("issuer") >= 1
    out = run("issuer", "rotate", "--home", str(home), "--retire-old-at", "2031-01-01").output
    assert out.startswith("new issuer key") and "verifies until 2031-01-01" in out
    listing = run("issuer", "keys", "--home", str(home)).output
    assert len([line for line in listing.splitlines() if line.startswith("issuer")]) == 2


def test_forged_snapshot_is_refused_with_nonzero_exit(home: Path, tmp_path: Path) -> None:
    snap = tmp_path / "snap.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(snap))
    data = bytearray(snap.read_bytes())
    data[-10] ^= 0xFF
    snap.write_bytes(bytes(data))
    result = run("gate", "check", "--snapshot", str(snap), "--site", "west-lake", "--text", "CP1:X", ok=False)
    assert result.exit_code == 1 and "snapshot refused" in result.output
    pinned = run("gate", "check", "--snapshot", str(snap), "--site", "west-lake", "--text", "x",
                 "--root-key", str(home / "root.pub"), ok=False)
    assert pinned.exit_code == 1


def test_usage_errors_are_nonzero_and_clear(home: Path, tmp_path: Path) -> None:
    assert run("issuer", "mint", "--home", str(home), "--product", "annual", ok=False).exit_code == 2
    bad_site = run("issuer", "mint", "--home", str(home), "--product", "annual", "--sites", "atlantis", ok=False)
    assert bad_site.exit_code == 1 and "unknown site 'atlantis'" in bad_site.output
    bad_time = run("issuer", "mint", "--home", str(home), "--product", "reservation", "--venue", "zhejiang-museum",
                   "--slot-start", "tomorrow", "--slot-end", "x", ok=False)
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.output
    missing = run("issuer", "export", "--home", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s"), ok=False)
    assert missing.exit_code == 1 and "not an issuer home" in missing.output
    assert run("code", "inspect", "CP1:????", ok=False).exit_code == 1


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


def test_every_command_has_help_and_is_documented_in_docs_cli() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    for path in _commands(cli):
        result = run(*path, "--help")
        assert "Usage:" in result.output
        command = cli
        for part in path:
            assert isinstance(command, click.Group)
            command = command.get_command(click.Context(command), part)  # type: ignore[assignment]
        assert command.help, f"citypass {' '.join(path)} has no help text"
        assert f"citypass {' '.join(path)}" in doc, f"docs/cli.md does not document citypass {' '.join(path)}"


def test_every_reason_is_documented_in_the_format_spec() -> None:
    doc = (ROOT / "docs" / "credential-format.md").read_text()
    for reason in Reason:
        assert f"`{reason.value}`" in doc


def test_the_installed_console_script_runs() -> None:
    exe = Path(sys.executable).parent / "citypass"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0 and "issuer" in result.stdout


def test_check_pins_the_root_key_or_says_loudly_that_it_does_not(home: Path, tmp_path: Path) -> None:
    """A snapshot from another issuer (a foreign code "allowed") is refused when pinned: by --root-key, by
    --issuer-home, by a gate config; unpinned, every line and stderr say so."""
    other = tmp_path / "other-issuer"
    run("issuer", "init", "--home", str(other), "--site", "west-lake")
    foreign = run("issuer", "mint", "--home", str(other), "--product", "annual", "--sites", "west-lake").output.strip()
    snap = tmp_path / "foreign.cbor"
    run("issuer", "export", "--home", str(other), "--out", str(snap))
    base = ["gate", "check", "--snapshot", str(snap), "--site", "west-lake", "--text", foreign]
    loose = run(*base)
    [line] = [json.loads(x) for x in loose.stdout.splitlines()]
    assert line["decision"] == "allow" and line["root_pinned"] is False and "not pinned" in line["warning"]
    assert "WARNING" in loose.stderr and "not pinned" in loose.stderr
    for pin in (["--root-key", str(home / "root.pub")], ["--issuer-home", str(home)]):
        refused = run(*base, *pin, ok=False)
        assert refused.exit_code == 1 and "snapshot refused" in refused.output and "WARNING" not in refused.output
    gate_toml = tmp_path / "gate.toml"
    gate_toml.write_text(f'gate_id = "g1"\nsite = "west-lake"\nroot_key = "{home / "root.pub"}"\n')
    assert run(*base, "--config", str(gate_toml), ok=False).exit_code == 1
    ours = tmp_path / "ours.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(ours))
    code = mint(home, "--product", "annual", "--sites", "west-lake")
    pinned = run("gate", "check", "--snapshot", str(ours), "--site", "west-lake", "--issuer-home", str(home),
                 "--text", code)
    [good] = [json.loads(x) for x in pinned.stdout.splitlines()]
    assert good["decision"] == "allow" and good["root_pinned"] is True and pinned.stderr == ""


def test_a_huge_image_is_refused_before_decoding_and_later_images_still_checked(home: Path, tmp_path: Path) -> None:
    """A 661-byte PNG declaring 60000 × 60000 pixels made OpenCV raise out of `gate check`, and the images after
    it were never reported."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 60001 * 4)) + chunk(b"IEND", b""))
    assert bomb.stat().st_size < 2000
    code = mint(home, "--product", "annual", "--sites", "west-lake", "--valid-from", "2030-01-01")
    png = tmp_path / "code.png"
    run("qr", "render", code, "--out", str(png), "--scale", "4")
    snap = tmp_path / "snap.cbor"
    run("issuer", "export", "--home", str(home), "--out", str(snap))
    lines = check(snap, "west-lake", str(bomb), str(png), at="2030-05-01T10:00")
    assert [(x["decoded"], x["decision"]) for x in lines] == [(False, None), (True, "allow")]
    assert str(lines[0]["error"]).startswith("no code: image too large: 60000 × 60000")
    small = run("gate", "check", "--snapshot", str(snap), "--site", "west-lake", "--at", "2030-05-01T10:00",
                "--max-pixels", "10000", str(png)).stdout
    assert "image too large" in json.loads(small.splitlines()[0])["error"]
