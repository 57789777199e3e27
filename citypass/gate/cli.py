"""``citypass gate …``: the gate's commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from citypass.clitools import ISO_TIME, LazyGroup
from citypass.credential.keys import read_public_key
from citypass.credential.snapshot import SnapshotError, read_snapshot
from citypass.credential.timefmt import utc_now
from citypass.gate.check import CheckInput, check_inputs
from citypass.gate.decision import GateContext
from citypass.gate.memory_ledger import MemoryLedger
from citypass.gate.policy import Direction


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
              help="Pin this root public key (recommended). Without it the copy inside the snapshot is used.")
@click.option("--text", "texts", multiple=True, help="Code text to check (repeatable).")
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
def check(snapshot: Path, site: str, at: int | None, direction: str, root_key: Path | None,
          texts: tuple[str, ...], images: tuple[str, ...]) -> None:
    """Check codes (--text) and QR images (IMAGE…) offline; print one JSON line per input.

    Fields: input, decoded, decision (allow/deny/null), reason, credential_id, product and more. The
    exit status is 0 whatever the decisions; it is non-zero only for usage errors and unreadable or
    forged snapshots.
    """
    if not texts and not images:
        raise click.UsageError("give at least one --text CODE or IMAGE")
    try:
        snap = read_snapshot(snapshot, read_public_key(root_key) if root_key else None)
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

        reader = read_image_file
    ctx = GateContext("check", settings, Direction(direction))
    # With --at the caller chooses the time on purpose, so the snapshot's time is not used as a clock floor.
    ledger = MemoryLedger(snap, clock_floor=0 if at is not None else None)
    for line in check_inputs(inputs, ledger, ctx, utc_now() if at is None else at, read_image=reader):
        click.echo(json.dumps(line, ensure_ascii=False))
