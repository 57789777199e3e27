"""``citypass provision …`` (enroll, decommission) and ``citypass selftest``: the technician's commands."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Literal, cast

import click
from rich.console import Console
from rich.table import Table

from citypass.credential.setupcode import PREFIX, SetupCode, SetupCodeError
from citypass.errors import InvalidInput
from citypass.gate.barrier.boards import BOARDS, DEFAULT_BOARD, board_settings
from citypass.gate.camera import CameraConfig
from citypass.gate.config import ConfigError, load_config
from citypass.gate.decoders import DECODER_NAMES, DEFAULT_DECODER
from citypass.gate.paths import STATE_DIR, UNIT_DIR, UNIT_DIR_ENV
from citypass.provisioning import device as layout
from citypass.provisioning.decommission import decommission as run_decommission
from citypass.provisioning.enroll import EnrollRequest
from citypass.provisioning.enroll import enroll as run_enroll
from citypass.provisioning.issuerclient import ProvisionError
from citypass.provisioning.network import write_dropin
from citypass.provisioning.selftest import CheckResult, run_selftest
from citypass.provisioning.setupcode import read_from_camera

DEFAULT_HOME = STATE_DIR
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@click.group()
def provision() -> None:
    """Turn a blank device into an enrolled gate, or retire one. See docs/provisioning.md."""


@provision.command()
@click.option("--issuer", "issuer_url", metavar="URL", help="The issuer's base URL (https://…).")
@click.option("--token", metavar="TOKEN",
              help="The one-time enrollment token (cpe_…), or the whole setup code text (CPENROLL:1|…).")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_HOME, show_default=True,
              help="Where the device's key, certificate, config and ledger go (written all at once).")
@click.option("--gate", "gate_id", metavar="ID", help="The device id the enrollment was created for (its CN).")
@click.option("--site", metavar="SITE", help="Refuse unless the issuer places this device at SITE (name or number).")
@click.option("--camera", metavar="SRC", help="camera.source for the gate config (and for --from-camera). [0]")
@click.option("--pins", type=click.Choice(["native", "mock"]), default="native", show_default=True,
              help="GPIO backend for the gate config: mock where there is no hardware.")
@click.option("--decoder", type=click.Choice(list(DECODER_NAMES)), default=DEFAULT_DECODER, show_default=True)
@click.option("--health-port", type=click.IntRange(0, 65535), default=9120, show_default=True,
              help="Port of the gate's /healthz and /metrics (0: any free port).")
@click.option("--board", type=click.Choice(list(BOARDS)), default=DEFAULT_BOARD, show_default=True,
              help="Relay board profile for [barrier] (docs/provisioning.md, 'Boards').")
@click.option("--relay-pin", type=int, metavar="BCM", help="Override the profile: the barrier relay's GPIO.")
@click.option("--relay-active-high/--relay-active-low", "relay_active_high", default=None,
              help="Override the profile: whether driving the relay pin high energises it.")
@click.option("--sensor-pin", type=int, metavar="BCM", help="Override the profile: the passage beam's GPIO.")
@click.option("--fire-alarm-pin", type=int, metavar="BCM", help="Override the profile: the fire-panel contact's GPIO.")
@click.option("--fire-alarm-contact", type=click.Choice(["nc", "no"]), default=None,
              help="Override the profile: normally-closed (alarm or cut wire reads high) or normally-open contact.")
@click.option("--fail-mode", type=click.Choice(["fail_secure", "fail_safe"]), default=None,
              help="Where the barrier rests without software: closed (fail_secure) or free (fail_safe). "
                   "[profile: fail_secure]")
@click.option("--root-kid", metavar="HEX", help="Pin the issuer's root key id (the setup code carries it).")
@click.option("--issuer-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Trust only this CA certificate (PEM) for the issuer's HTTPS: an issuer behind a private CA.")
@click.option("--insecure-tofu", is_flag=True,
              help="Allow plain http:// with no pinned root key: the first root key seen is trusted (a lab only).")
@click.option("--from-camera", is_flag=True, help="Read the setup QR through the camera instead of typing.")
@click.option("--camera-timeout", type=click.FloatRange(1, 600), default=60.0, show_default=True,
              help="How long --from-camera watches for the setup QR (seconds).")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), envvar=UNIT_DIR_ENV, default=UNIT_DIR,
              show_default=True, help="Where the gate unit's network drop-in goes (env CITYPASS_UNIT_DIR).")
@click.option("--no-network-dropin", is_flag=True,
              help="Do not write the drop-in that lets the gate unit reach its broker and issuer.")
@click.option("--force", is_flag=True, help="Enroll again over an enrolled home (the old key is shredded). Refused "
                                           "while its outbox holds taps not yet uploaded.")
@click.option("--discard-outbox", is_flag=True,
              help="With --force: replace the home even though its outbox holds un-uploaded taps (they are lost).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object at the end (steps, result or error and what to do) instead of lines.")
def enroll(issuer_url: str | None, token: str | None, home: Path, gate_id: str | None, site: str | None,
           camera: str | None, pins: str, decoder: str, health_port: int, board: str, relay_pin: int | None,
           relay_active_high: bool | None, sensor_pin: int | None, fire_alarm_pin: int | None,
           fire_alarm_contact: str | None, fail_mode: str | None, root_kid: str | None,
           issuer_ca: Path | None, insecure_tofu: bool, from_camera: bool, camera_timeout: float, unit_dir: Path,
           no_network_dropin: bool, force: bool, discard_outbox: bool, as_json: bool) -> None:
    """Enroll this device: key, certificate, ledger snapshot and gate config, each step verified.

    \b
    citypass provision enroll --issuer https://issuer.example --token cpe_… --gate gate-wl-e1 --home DIR
    citypass provision enroll --from-camera --camera /dev/video0 --home DIR
    """
    console = _console() if not as_json else Console(file=io.StringIO())  # --json: the lines are not shown
    steps: list[dict[str, str]] = []

    def step(name: str, detail: str) -> None:
        steps.append({"step": name, "detail": detail})
        console.print(f"[green]✓[/] {name:<9} {detail}")

    if discard_outbox and not force:
        raise click.UsageError("--discard-outbox only goes with --force")
    try:
        barrier = board_settings(board, {
            "relay_pin": relay_pin, "relay_active_high": relay_active_high, "sensor_pin": sensor_pin,
            "fire_alarm_pin": fire_alarm_pin, "fail_mode": fail_mode,
            "fire_alarm_active_low": None if fire_alarm_contact is None else fire_alarm_contact == "no"})
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None
    try:
        code = None
        if from_camera:
            console.print(f"[bold]camera[/]  show the setup QR to {camera or '0'} …")
            code = read_from_camera(CameraConfig(source=camera or "0"), decoder, timeout_s=camera_timeout)
            step("setup", f"read the setup code for {code.device_id} at {code.issuer}")
        elif token is not None and token.startswith(PREFIX):
            code = SetupCode.parse(token)
        if code is not None:
            issuer_url, token = issuer_url or code.issuer, code.token
            gate_id, root_kid = gate_id or code.device_id, root_kid or code.root_kid or None
        if not issuer_url or not token:
            raise click.UsageError("give --issuer and --token (or a setup code: --token 'CPENROLL:1|…', "
                                   "or --from-camera)")
        if not gate_id:
            raise click.UsageError("give --gate: the device id the enrollment was created for (the setup "
                                   "code carries it)")
        request = EnrollRequest(issuer=issuer_url, token=token, home=home, device_id=gate_id, site=site,
                                root_kid=root_kid, camera=camera,
                                pins=cast(Literal["native", "mock"], pins), decoder=decoder,
                                health_port=health_port, force=force, discard_outbox=discard_outbox,
                                insecure_tofu=insecure_tofu, issuer_ca=issuer_ca, barrier=barrier)
        result = run_enroll(request, on_step=step)
    except (ProvisionError, SetupCodeError) as exc:
        failed = getattr(exc, "step", None) or "enroll"
        recovery = getattr(exc, "recovery", None) or "nothing was written: fix the cause and run the same command again"
        errors = Console(stderr=True, highlight=False, soft_wrap=True)  # errors on stderr, as every command's
        errors.print(f"[bold red]✗[/] {failed:<9} {exc}")
        errors.print(recovery)
        if as_json:
            click.echo(json.dumps({"ok": False, "steps": steps, "failed_step": failed, "error": str(exc),
                                   "recovery": recovery}, ensure_ascii=False))
        raise SystemExit(1) from None
    network = None
    if not result.already:
        if not no_network_dropin:
            network = _network(console, result.home, unit_dir)
        console.print(f"[bold green]enrolled[/] {result.device_id}; next: citypass selftest --config "
                      f"{result.home / layout.CONFIG}")
    if as_json:
        click.echo(json.dumps({"ok": True, "device_id": result.device_id, "home": str(result.home),
                               "already_enrolled": result.already, "steps": steps, "network_dropin": network,
                               "config": str(result.home / layout.CONFIG)}, ensure_ascii=False))


def _network(console: Console, home: Path, units: Path) -> dict[str, str | bool]:
    try:
        path, summary = write_dropin(layout.read_record(home), units)
    except ProvisionError as exc:
        console.print(f"[yellow]![/] network   {exc}")
        return {"written": False, "detail": str(exc)}
    console.print(f"[green]✓[/] network   {summary}")
    return {"written": True, "path": str(path), "detail": summary}


@provision.command()
@click.option("--home", type=click.Path(file_okay=False, exists=True, path_type=Path), default=DEFAULT_HOME,
              show_default=True, help="The enrolled device home (its device.json names broker and issuer).")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), envvar=UNIT_DIR_ENV, default=UNIT_DIR,
              show_default=True, help="Where the gate unit's drop-in goes (env CITYPASS_UNIT_DIR).")
def network(home: Path, unit_dir: Path) -> None:
    """(Re)write the gate unit's drop-in allowing exactly its broker and issuer (after either moved)."""
    if not layout.is_enrolled(home):
        raise click.ClickException(f"{home} is not an enrolled device home")
    if not _network(_console(), home, unit_dir)["written"]:
        raise SystemExit(1)


@provision.command()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_HOME, show_default=True,
              help="The enrolled device home to wipe.")
@click.option("--issuer", "issuer_url", metavar="URL", help="The issuer (default: the one the device enrolled with).")
@click.option("--token", metavar="TOKEN", help="A technician or admin API token: retire the device at the issuer.")
@click.option("--local-only", is_flag=True, help="Wipe without telling the issuer (retire it there yourself).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def decommission(home: Path, issuer_url: str | None, token: str | None, local_only: bool, yes: bool) -> None:
    """Retire this device at the issuer (its certificate is revoked) and wipe its keys, ledger and config."""
    console = _console()
    if token is None and not local_only:
        raise click.UsageError("give --token (technician or admin) to revoke the device at the issuer, "
                               "or --local-only to only wipe it")
    if not yes:
        click.confirm(f"Wipe {home} (keys, ledger, config)?", abort=True)
    try:
        done = run_decommission(home, issuer=issuer_url, token=token, on_step=lambda step, detail: console.print(
            f"[green]✓[/] {step:<7} {detail}"))
    except ProvisionError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]✗[/] {exc}")
        Console(stderr=True, highlight=False).print("nothing was wiped")
        raise SystemExit(1) from None
    console.print(f"[bold]decommissioned[/] {done.device_id}")


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_HOME / layout.CONFIG, show_default=True, help="The gate config to test.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def selftest(config_path: Path, as_json: bool) -> None:
    """Test camera, decoder, GPIO, broker, clock, disk and ledger; exit 1 if any check fails.

    Stop the gate service first (systemctl stop citypass-gate): the self-test drives the barrier's pins.
    """
    console = _console()
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    def show(result: CheckResult) -> None:
        console.print(f"  {result.name:<8} [{STYLE[result.status]}]{result.status}[/]", highlight=False)

    if as_json:
        results = run_selftest(cfg, config_path)
        failed = [r.name for r in results if r.status == "fail"]
        click.echo(json.dumps({"gate_id": cfg.gate_id, "config": str(config_path), "ok": not failed,
                               "checks": [{"name": r.name, "status": r.status, "detail": r.detail} for r in results]}))
        if failed:
            raise SystemExit(1)
        return
    console.print(f"self-test of {cfg.gate_id} ({config_path})")
    results = run_selftest(cfg, config_path, on_result=show)
    table = Table(title=f"citypass selftest: {cfg.gate_id}")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{STYLE[r.status]}]{r.status.upper()}[/]", r.detail)
    console.print(table)
    failed = [r.name for r in results if r.status == "fail"]
    if failed:
        console.print(f"[bold red]FAILED[/]: {', '.join(failed)}")
        raise SystemExit(1)
    console.print("[bold green]all checks passed[/]")
