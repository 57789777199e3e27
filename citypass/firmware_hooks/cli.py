"""``citypass hooks …``: the commands the device's init system and updater call.

Thin wrappers: each loads the gate config, calls :mod:`citypass.firmware_hooks.lifecycle`,
:mod:`citypass.firmware_hooks.bundle` or :mod:`citypass.firmware_hooks.health`, prints a table, and turns the result
into an exit status (0 = every step ok). ``install-check`` exits 10 for a refused bundle, the code a
RAUC install-check hook uses to reject a bundle with its message. See docs/operations.md for how each
command maps onto systemd units, RAUC handlers and Mender state scripts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from citypass.firmware_hooks.lifecycle import GATE_UNIT, Step, render
from citypass.gate.barrier.config import BarrierConfig
from citypass.gate.configfile import ConfigError, Pins, read_barrier
from citypass.gate.paths import GATE_CONFIG

if TYPE_CHECKING:
    from citypass.gate.config import GateConfig

DEFAULT_CONFIG = GATE_CONFIG
REFUSED_EXIT = 10

CONFIG_OPTION = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
    show_default=True, help="The gate's TOML config (pins, barrier wiring, ledger path, health port).")
PID_OPTION = click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path),
                          help="Stop the daemon whose pid this file holds (outside systemd).")
TIMEOUT_OPTION = click.option("--timeout", type=click.FloatRange(0.1, 120), show_default=True,
                              help="Seconds the daemon gets to stop after SIGTERM before SIGKILL.")


def _stops_the_daemon(unit: str | None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options of a hook that stops the daemon first: --config, --pid-file, --unit (default ``unit``)
    and --timeout."""
    if unit is None:
        unit_option = click.option("--unit", help=f"Stop the main process of this systemd unit (e.g. {GATE_UNIT}).")
    else:
        unit_option = click.option("--unit", default=unit, show_default=True, help="The gate daemon's systemd unit.")

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        for option in (TIMEOUT_OPTION, unit_option, PID_OPTION, CONFIG_OPTION):
            command = option(command)
        return command

    return apply


def _config(path: Path) -> GateConfig:
    from citypass.gate.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _barrier(path: Path) -> tuple[Pins, BarrierConfig]:
    """Only ``pins`` and ``[barrier]``: the hooks that park the barrier read no more of the config, so a
    broken camera or sync section cannot stop them, and they start without loading those models."""
    try:
        return read_barrier(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _finish(steps: Sequence[Step], good: str = "ok", bad: str = "failed") -> None:
    ok = all(s.ok for s in steps)
    if click.get_current_context().meta.get(JSON_META):
        click.echo(json.dumps({"ok": ok, "result": good if ok else bad,
                               "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in steps]}))
    else:
        click.echo(render(steps))
        click.echo(good if ok else bad)
    if not ok:
        raise SystemExit(1)


JSON_META = "citypass.hooks.json"


def _json_option() -> click.Option:
    """``--json`` on every hook: one JSON object ({"ok", "result", "steps": [{"name", "ok", "detail"}]}) instead of
    the table, for an update agent or a fleet tool to parse; the exit status is the same."""
    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        ctx.meta[JSON_META] = value
        return value

    return click.Option(["--json"], is_flag=True, expose_value=False, callback=remember,
                        help="Print one JSON object instead of the table.")


@click.group()
def hooks() -> None:
    """Boot, shutdown, power-fail and update hooks for the device's OS (systemd, RAUC, Mender).

    Each prints a table of steps and exits non-zero if any failed. See docs/operations.md.
    """


@hooks.command()
@CONFIG_OPTION
def boot(config_path: Path) -> None:
    """Put the barrier into its configured safe state (at boot, before the gate daemon starts)."""
    from citypass.firmware_hooks.lifecycle import boot as run_boot

    pins, barrier = _barrier(config_path)
    _finish(run_boot(barrier, pins=pins))


@hooks.command("safe-state")
@CONFIG_OPTION
def safe_state(config_path: Path) -> None:
    """Park the barrier after the daemon stopped (systemd ExecStopPost=; reports how it ended)."""
    from citypass.firmware_hooks.lifecycle import park_barrier

    pins, barrier = _barrier(config_path)
    result = os.environ.get("SERVICE_RESULT")  # set by systemd for ExecStopPost=: "success", "signal", …
    if result is not None:
        click.echo(f"daemon ended: {result} ({os.environ.get('EXIT_CODE', '?')} {os.environ.get('EXIT_STATUS', '')})")
    _finish([park_barrier(barrier, pins=pins)])


def _shutdown(config_path: Path, pid_file: Path | None, unit: str | None, timeout: float) -> None:
    from citypass.firmware_hooks.lifecycle import shutdown as run_shutdown

    _finish(run_shutdown(_config(config_path), pid_file=pid_file, unit=unit, timeout=timeout))


@hooks.command()
@_stops_the_daemon(unit=None)
def shutdown(config_path: Path, pid_file: Path | None, unit: str | None, timeout: float | None) -> None:
    """Stop accepting codes, make the tap outbox durable (WAL checkpoint), park the barrier."""
    _shutdown(config_path, pid_file, unit, 10.0 if timeout is None else timeout)


@hooks.command("power-fail")
@_stops_the_daemon(unit=None)
def power_fail(config_path: Path, pid_file: Path | None, unit: str | None, timeout: float | None) -> None:
    """Like shutdown, with a short timeout: the supercapacitor or UPS gives seconds, not minutes."""
    _shutdown(config_path, pid_file, unit, 3.0 if timeout is None else timeout)


def _installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("citypass")
    except PackageNotFoundError:
        return None


@hooks.command("install-check")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@CONFIG_OPTION
@click.option("--root-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The pinned root public key (default: root_key from the config).")
@click.option("--installed-version", help="The running version (default: the installed citypass package).")
def install_check(bundle: Path, config_path: Path, root_key: Path | None, installed_version: str | None) -> None:
    """Verify an update bundle: release-key signature, every file's SHA-256, and no downgrade.

    Exits 0 when the bundle may be installed, 10 when it is refused (the reason is printed).
    """
    from citypass.credential.keys import read_public_key
    from citypass.firmware_hooks.bundle import BundleRefused, verify_bundle
    from citypass.gate.ledger import GateLedger
    from citypass.gate.ledger.connection import LedgerError

    cfg = _config(config_path)
    try:
        root = read_public_key(root_key or cfg.root_key)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the root key: {exc}") from None
    trust, min_trust = None, 0
    if cfg.ledger.path.exists():
        try:  # the device's own trust list: a fallback, and a floor against replaying an older one
            with GateLedger.open(cfg.ledger.path, root=root) as ledger:
                if ledger.trust_error is None and ledger.trust.version > 0:
                    trust, min_trust = ledger.trust, ledger.trust.version
        except LedgerError as exc:
            click.echo(f"warning: the ledger's trust list is unavailable ({exc})", err=True)
    installed = installed_version or _installed_version()
    try:
        manifest = verify_bundle(bundle, root, installed=installed, trust=trust, min_trust_version=min_trust)
    except BundleRefused as exc:
        click.echo(f"refused ({exc.reason}): {exc}", err=True)
        raise SystemExit(REFUSED_EXIT) from None
    click.echo(f"bundle {bundle.name}: version {manifest.version} (installed {installed}), "
               f"{len(manifest.files)} files verified, signed by a release key")


@hooks.command("pre-install")
@_stops_the_daemon(unit=GATE_UNIT)
def pre_install(config_path: Path, pid_file: Path | None, unit: str, timeout: float | None) -> None:
    """Quiesce the gate before an update: stop the daemon, flush and back up the ledger, park the barrier."""
    from citypass.firmware_hooks.lifecycle import pre_install as run_pre_install

    cfg = _config(config_path)
    _finish(run_pre_install(cfg, pid_file=pid_file, unit=None if pid_file else unit,
                            timeout=10.0 if timeout is None else timeout))


@hooks.command("post-install")
@CONFIG_OPTION
def post_install(config_path: Path) -> None:
    """Migrate the ledger with the new software and check its integrity."""
    from citypass.firmware_hooks.lifecycle import post_install as run_post_install

    _finish(run_post_install(_config(config_path)))


@hooks.command()
@_stops_the_daemon(unit=GATE_UNIT)
def rollback(config_path: Path, pid_file: Path | None, unit: str, timeout: float | None) -> None:
    """After a rolled-back update: restore the pre-update ledger if this software cannot open the migrated one."""
    from citypass.firmware_hooks.lifecycle import rollback as run_rollback

    cfg = _config(config_path)
    _finish(run_rollback(cfg, pid_file=pid_file, unit=None if pid_file else unit,
                         timeout=10.0 if timeout is None else timeout))


@hooks.command("health-check")
@CONFIG_OPTION
@click.option("--url", help="The daemon's /healthz (default: from the config's health section).")
@click.option("--grace", type=click.FloatRange(0, 600), default=60.0, show_default=True,
              help="Seconds to keep retrying while the daemon starts.")
@click.option("--broker-within", type=click.FloatRange(0, 3600), default=120.0, show_default=True,
              help="Seconds a gate with a [sync] broker has to be connected to it (buffering longer fails).")
def health_check(config_path: Path, url: str | None, grace: float, broker_within: float) -> None:
    """After an update's reboot: daemon READY, fresh frames, ledger intact, broker connected (a gate with a
    [sync] broker must reach it within --broker-within seconds; one without [sync] passes that row).

    Prints a table and `mark-good` (exit 0) or `mark-bad` (exit 1).
    """
    from citypass.firmware_hooks.health import healthz_url, wait_for_health

    cfg = _config(config_path)
    steps = wait_for_health(url or healthz_url(cfg), cfg.ledger.path, grace_s=grace,
                            broker_configured=cfg.sync is not None, broker_within_s=broker_within)
    _finish(steps, good="mark-good", bad="mark-bad")


@hooks.command("make-bundle")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle to write.")
@click.option("--version", "bundle_version", required=True, help="The release's version, like 1.4.0.")
@click.option("--release-key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The release signing key (PEM); the trust list must name it with role release.")
@click.option("--trust-list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The root-signed trust list to ship inside the bundle.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def make_bundle(out: Path, bundle_version: str, release_key: Path, trust_list: Path | None,
                files: tuple[Path, ...]) -> None:
    """Build and sign an update bundle from FILES (stored under their base names)."""
    from citypass.credential.keys import read_private_key
    from citypass.firmware_hooks.bundle import make_bundle as build

    passphrase = os.environ.get("CITYPASS_KEY_PASSPHRASE")  # the same variable the issuer's keys use
    try:
        key = read_private_key(release_key, passphrase.encode() if passphrase else None)
    except (OSError, ValueError, TypeError) as exc:
        raise click.ClickException(f"cannot read the release key {release_key}: {exc}") from None
    try:
        manifest = build(out, {f.name: f for f in files}, bundle_version, key,
                         trust_signed=trust_list.read_bytes() if trust_list else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out}: version {manifest.version}, {len(manifest.files)} files, kid {key.kid.hex()}")


for _command in hooks.commands.values():
    if _command.name != "make-bundle":
        _command.params.append(_json_option())
