"""Man pages and shell completion come from the CLI itself (scripts/build-man): every command has a page that
man renders without a warning, and the completion answers what the CLI has."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from citypass.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CITYPASS = Path(sys.executable).parent / "citypass"


def commands(command: click.Command, path: list[str]) -> list[str]:
    names = ["-".join(path)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                names += commands(sub, [*path, name])
    return names


def test_every_command_has_a_man_page_that_renders(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build-man"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    pages = {p.name.removesuffix(".1.gz") for p in (tmp_path / "man1").iterdir()}
    assert set(commands(cli, ["citypass"])) == pages
    enroll = gzip.decompress((tmp_path / "man1" / "citypass-provision-enroll.1.gz").read_bytes()).decode()
    assert "\\-\\-board" in enroll and ".SH OPTIONS" in enroll
    if shutil.which("man"):
        shown = subprocess.run(["man", "-l", str(tmp_path / "man1" / "citypass-provision-enroll.1.gz")],
                               capture_output=True, text=True, timeout=60, env={**os.environ, "MANWIDTH": "100"})
        assert shown.returncode == 0 and shown.stderr == "" and "--insecure-tofu" in shown.stdout, shown.stderr
    for shell in ("bash", "zsh", "fish"):
        assert "_CITYPASS_COMPLETE" in (tmp_path / "completion" / f"citypass.{shell}").read_text(), shell


def test_completion_answers_from_the_cli() -> None:
    env = {**os.environ, "_CITYPASS_COMPLETE": "bash_complete", "COMP_WORDS": "citypass provision en",
           "COMP_CWORD": "2"}
    out = subprocess.run([str(CITYPASS)], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "plain,enroll" in out.split()
    env["COMP_WORDS"], env["COMP_CWORD"] = "citypass provision enroll --boa", "3"
    assert "plain,--board" in subprocess.run([str(CITYPASS)], capture_output=True, text=True, env=env,
                                             timeout=60).stdout.split()
