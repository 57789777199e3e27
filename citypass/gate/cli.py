"""``citypass gate …``: the gate's commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from citypass.clitools import ISO_TIME, LazyGroup
from citypass.credential.keys import VerifyKey, read_public_key
from citypass.credential.snapshot import SnapshotError, read_snapshot
from citypass.credential.timefmt import utc_now
from citypass.gate.check import CheckInput, check_inputs
from citypass.gate.decision import GateContext
from citypass.gate.memory_ledger import MemoryLedger
from citypass.gate.paths import GATE_CONFIG
from citypass.gate.policy import Direction

#: Where the gate's own config lives on an installed gate (systemd/citypass-gate.service).
DEFAULT_GATE_CONFIG = GATE_CONFIG
UNPINNED = ("the snapshot is not pinned to a root key: it vouches for itself, so a forged one would verify too "
            "(give --root-key, --issuer-home or --config)")


@click.group(cls=LazyGroup)
def gate() -> None:
    """Run and check a gate."""


@gate.command()
@click.option("--snapshot", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Signed ledger snapshot from `citypass issuer export`.")
@click.option("--site", required=True, help="The site this gate stands at (name or number).")
@click.option("--at", type=ISO_TIME, help="Decide as if it were this time (default: now).")
@click.option("--direction", type=click.Choice([d.value for d in Direction]), default="entry", show_default=True)
@click.option("--root-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pin this root public key (PEM).")
@click.option("--issuer-home", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Pin the root key of this issuer home (HOME/root.pub).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"Pin the root key of this gate config (its root_key). Default: {DEFAULT_GATE_CONFIG}, when "
                   "it exists and neither --root-key nor --issuer-home is given.")
@click.option("--unpinned", is_flag=True,
              help="Trust the root key inside the snapshot itself: any snapshot then verifies (said loudly).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=50_000_000, show_default=True,
              help="Refuse, undecoded, an image with more pixels than this (its header says how many).")
@click.option("--text", "texts", multiple=True, help="Code text to check (repeatable).")
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
def check(snapshot: Path, site: str, at: int | None, direction: str, root_key: Path | None, issuer_home: Path | None,
          config_path: Path | None, unpinned: bool, max_pixels: int, texts: tuple[str, ...],
          images: tuple[str, ...]) -> None:
    """Check codes (--text) and QR images (IMAGE…) offline; print one JSON line per input.

    The snapshot is verified against a pinned root key: --root-key, --issuer-home, --config, or the gate
    config at its default place. Without any (or with --unpinned) the snapshot's own copy of the root is
    used, so a forged snapshot would verify too: the command says so on stderr and in every line
    ("root_pinned": false).

    Fields: input, decoded, decision (allow/deny/null), reason, credential_id, product, root_pinned and more.
    The exit status is 0 whatever the decisions; it is non-zero only for usage errors and unreadable or
    forged snapshots.
    """
    if not texts and not images:
        raise click.UsageError("give at least one --text CODE or IMAGE")
    pinned = None if unpinned else _pinned_root(root_key, issuer_home, config_path)
    if pinned is None:
        click.echo(f"WARNING: {UNPINNED}", err=True)
    try:
        snap = read_snapshot(snapshot, pinned)
    except SnapshotError as exc:
        raise click.ClickException(f"snapshot refused: {exc}") from None
    settings = snap.site(site)
    if settings is None:
        known = ", ".join(s.name for s in snap.sites)
        raise click.BadParameter(f"site {site!r} is not in the snapshot (known: {known})", param_hint="--site")
    inputs = [CheckInput("text", t) for t in texts] + [CheckInput("image", i) for i in images]
    reader = None
    if images:
        from citypass.gate.imagefile import read_image_file  # opencv and the decoders load only when needed

        def reader(path: str) -> tuple[list[str], str, float, str | None]:
            return read_image_file(path, max_pixels=max_pixels)
    ctx = GateContext("check", settings, Direction(direction))
    # With --at the caller chooses the time on purpose, so the snapshot's time is not used as a clock floor.
    ledger = MemoryLedger(snap, clock_floor=0 if at is not None else None)
    pin = {"root_pinned": True} if pinned is not None else {"root_pinned": False, "warning": UNPINNED}
    for line in check_inputs(inputs, ledger, ctx, utc_now() if at is None else at, read_image=reader):
        click.echo(json.dumps(line | pin, ensure_ascii=False))



def _pinned_root(root_key: Path | None, issuer_home: Path | None, config_path: Path | None) -> VerifyKey | None:
    """The root key to pin, from the first of the options given, else the gate config at its default place."""
    if sum(x is not None for x in (root_key, issuer_home, config_path)) > 1:
        raise click.UsageError("give one of --root-key, --issuer-home and --config")
    if root_key is not None:
        return read_public_key(root_key)
    if issuer_home is not None:
        if not (issuer_home / "root.pub").is_file():
            raise click.BadParameter(f"{issuer_home} has no root.pub: not an issuer home", param_hint="--issuer-home")
        return read_public_key(issuer_home / "root.pub")
    path = config_path if config_path is not None else (DEFAULT_GATE_CONFIG if DEFAULT_GATE_CONFIG.exists() else None)
    if path is None:
        return None
    from citypass.gate.config import load_config

    return read_public_key(load_config(path).root_key)
