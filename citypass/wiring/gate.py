"""The gate program's one wiring point: build every adapter from a :class:`~citypass.gate.config.GateConfig`,
and the MQTT sync client beside the daemon (``citypass gate run``).

Everything that touches the outside world is created here and nowhere else — the ledger file, the
camera, the decoder, the pins, the health port, systemd's notify socket, signal handlers — so the rest of
the daemon can be driven by injected fakes in tests.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import click

from citypass.credential.keys import VerifyKey, read_public_key
from citypass.gate.barrier.gpio import Barrier
from citypass.gate.camera import open_camera
from citypass.gate.config import ConfigError, GateConfig, SyncConfig, load_config
from citypass.gate.daemon import GateDaemon, Outcome
from citypass.gate.decision import GateContext
from citypass.gate.decoders import make_decoder
from citypass.gate.health import HealthServer
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.connection import LedgerError
from citypass.gate.logs import EventLog, library_logs
from citypass.gate.metrics import GateMetrics
from citypass.gate.screen.display import LaneScreen
from citypass.gate.screen.hub import ScreenHub
from citypass.gate.screen.texts import SHIPPED, ScreenTexts
from citypass.sync.endpoint import ClientFiles, Endpoint, HttpLedgerSource
from citypass.sync.gate_lanes import LaneSettings
from citypass.sync.gate_sync import GateSync, GateSyncConfig


def systemd_notifier(environ: dict[str, str] | None = None) -> Callable[[str], None]:
    """``sd_notify`` over the socket systemd names in NOTIFY_SOCKET (a no-op when it names none)."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return lambda _msg: None
    target = "\0" + address[1:] if address.startswith("@") else address
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def notify(message: str) -> None:
        try:
            sock.sendto(message.encode(), target)
        except OSError:
            pass  # losing a status line must never stop the gate

    return notify


def open_ledger(cfg: GateConfig, root: VerifyKey, log: EventLog) -> GateLedger:
    """Open (and migrate) the ledger; on first boot load the configured snapshot."""
    ledger = GateLedger.from_config(cfg.ledger, root=root)
    if ledger.seq is None:
        if cfg.snapshot is None:
            ledger.close()
            raise ConfigError(f"{cfg.ledger.path} holds no snapshot yet and no 'snapshot' is configured")
        try:
            ledger.load_snapshot(cfg.snapshot.read_bytes(), root)
        except (OSError, LedgerError) as exc:
            ledger.close()
            raise ConfigError(f"cannot load snapshot {cfg.snapshot}: {exc}") from None
        log.event("snapshot_loaded", path=str(cfg.snapshot), seq=ledger.seq)
    return ledger


def build_daemon(cfg: GateConfig, *, log: EventLog | None = None, pin_factory: object | None = None,
                 observer: Callable[[Outcome], None] | None = None) -> GateDaemon:
    """Build a ready-to-run daemon. ``pin_factory`` overrides the configured pins (the demo drives its
    own gpiozero ``MockFactory``); ``observer`` sees every outcome."""
    log = log or EventLog(gate_id=cfg.gate_id, level=cfg.log_level)
    try:
        root = read_public_key(cfg.root_key)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the root key {cfg.root_key}: {exc}") from None
    ledger = open_ledger(cfg, root, log)
    site = ledger.site(cfg.site)
    if site is None:
        known = ", ".join(s.name for s in ledger.sites())
        ledger.close()
        raise ConfigError(f"site_not_configured: site {cfg.site!r} is not in the ledger (known: {known})")
    ledger.set_identity(cfg.gate_id, site.number, cfg.direction)
    if pin_factory is None and cfg.pins == "mock":
        from citypass.gate.barrier.mockpins import resting_mock_pins

        pin_factory = resting_mock_pins(cfg.barrier)
    barrier = Barrier(cfg.barrier, pin_factory=pin_factory)  # claims pins straight into the safe state
    camera = open_camera(cfg.camera)
    policy = cfg.policy.to_policy()
    screen = None
    if cfg.screen.enabled and cfg.health.enabled:  # the screen is served on the health address
        titles = {"zh": site.title, "en": site.title_en}  # a site's names in both languages, from the ledger
        title = {lang: cfg.screen.title.get(lang) or titles.get(lang) or site.title or site.name
                 for lang in cfg.screen.languages}
        texts = ScreenTexts(SHIPPED, cfg.screen.languages, title, arrow=cfg.screen.arrow,
                            exit_arrow=cfg.screen.exit_arrow, hold_s=cfg.screen.hold_s)
        screen = LaneScreen(ScreenHub(), texts, site, policy)
    return GateDaemon(
        cfg,
        GateContext(cfg.gate_id, site, cfg.direction),
        camera=camera,
        decoder=make_decoder(cfg.decoder),
        barrier=barrier,
        ledger=ledger,
        log=log,
        metrics=GateMetrics(),
        notify=systemd_notifier(),
        observer=observer,
        display=screen,
    )


@contextmanager
def serving(daemon: GateDaemon, *, signals: bool = True) -> Iterator[HealthServer | None]:
    """Run the health endpoint (if enabled, with the lane's screen) and, with ``signals``, stop the daemon on
    SIGTERM / SIGINT (only the main thread may set signal handlers: a daemon run on another thread, as the demo
    and the tests do, passes ``signals=False`` and is stopped with ``daemon.stop()``)."""
    cfg = daemon.config.health
    screen = daemon.display if isinstance(daemon.display, LaneScreen) else None
    server = (HealthServer(cfg.host, cfg.port, daemon.status, daemon.metrics,
                           screen.endpoint() if screen is not None else None).start() if cfg.enabled else None)
    if server is not None:
        base = f"http://{cfg.host}:{server.port}"
        daemon.log.event("health", url=f"{base}/healthz", screen=f"{base}/screen" if screen is not None else None)
    previous = ({sig: signal.signal(sig, lambda *_: daemon.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
                if signals else {})
    try:
        yield server
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if screen is not None:
            screen.close()  # ends the screens' event streams: they reconnect to the next daemon
        if server is not None:
            server.close()


def sync_endpoint(sync: SyncConfig) -> Endpoint:
    """Where the gate's sync client connects: the broker (and a cluster's other nodes), its TLS files, the
    MQTT version."""
    return Endpoint(sync.broker_host, sync.broker_port, tls=ClientFiles(sync.ca, sync.cert, sync.key),
                    max_backoff_s=sync.reconnect_max_s, fallbacks=sync.node_addresses, mqtt_version=sync.mqtt_version,
                    keepalive=sync.keepalive_s)


def build_sync(cfg: GateConfig, daemon: GateDaemon) -> GateSync | None:
    """The MQTT sync thread for this gate, or None when the config has no enabled ``[sync]``."""
    sync = cfg.sync
    if sync is None or not sync.enabled:
        return None
    fetcher = None
    if sync.issuer_url and sync.token_file is not None:
        try:
            token = sync.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read sync.token_file {sync.token_file}: {exc.strerror}") from None
        fetcher = HttpLedgerSource(sync.issuer_url, token)
    endpoint = sync_endpoint(sync)
    settings = GateSyncConfig(
        device_id=cfg.gate_id, ledger_path=cfg.ledger.path, root=read_public_key(cfg.root_key),
        site=daemon.ctx.site.number, batch_size=sync.batch_size, ack_timeout_s=sync.ack_timeout_s,
        status_interval_s=sync.status_interval_s, clock_alarm_s=sync.clock_alarm_s, lanes=sync.lanes,
        lane_settings=LaneSettings(rate_per_s=sync.lane_rate_per_s),
    )
    gate_sync = GateSync(endpoint, settings, fetcher=fetcher, fps=lambda: daemon.camera.status().fps)
    daemon.on_recorded = gate_sync.poke  # the site's other lanes hear of each tap as soon as it is committed
    return gate_sync


def run_from_file(path: Path, max_frames: int | None = None) -> None:
    """Load the config at ``path`` and run the gate with its sync client until stopped."""
    cfg = load_config(path)
    log = EventLog(gate_id=cfg.gate_id, level=cfg.log_level)
    with library_logs(log):
        daemon = build_daemon(cfg, log=log)
        sync = build_sync(cfg, daemon)
        if sync is not None:
            daemon.sync_state = lambda: asdict(sync.state)
        with serving(daemon):
            if sync is not None:
                sync.start()
            try:
                daemon.run(max_frames=max_frames)
            finally:
                if sync is not None:
                    sync.stop()


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The gate's TOML config (see docs/gate-config.md).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Stop after this many frames (for tests and trials).")
def run(config_path: Path, max_frames: int | None) -> None:
    """Run the gate daemon: camera, decoder, ledger, barrier, /healthz and /metrics.

    Stops cleanly on SIGTERM or Ctrl-C, leaving the barrier in its configured safe state.
    """
    try:
        run_from_file(config_path, max_frames)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
