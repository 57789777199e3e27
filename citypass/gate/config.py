"""The gate daemon's configuration: one TOML file, typed, every field described, unknown keys rejected.

Loaded once by the daemon's wiring point (:mod:`citypass.gate.daemon`); nothing else reads files or the
environment for settings. docs/gate-config.md is generated from these models' descriptions (a test checks
that it is current), and ``examples/gate.toml`` is a complete example.

    >>> cfg = GateConfig.model_validate({"gate_id": "wl-e1", "site": "west-lake", "root_key": "/etc/cp/root.pub",
    ...                                  "ledger": {"path": "/var/lib/citypass/ledger.db"}})
    >>> cfg.direction, cfg.decoder, cfg.pins
    (<Direction.ENTRY: 'entry'>, 'retry', 'native')
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from citypass.credential.policy import VerifyPolicy
from citypass.errors import InvalidInput
from citypass.gate.barrier.config import BarrierConfig
from citypass.gate.camera.config import CameraConfig
from citypass.gate.configfile import ConfigError as ConfigError  # re-exported: load_config raises it
from citypass.gate.configfile import problems, read_toml
from citypass.gate.decoders import DECODER_NAMES, DEFAULT_DECODER
from citypass.gate.ledger.config import LedgerConfig
from citypass.gate.policy import Direction, GatePolicy
from citypass.gate.screen.config import ScreenConfig


class PolicyConfig(BaseModel):
    """How the gate decides when conditions are not normal (see docs/credential-format.md §8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dynamic_window_s: int = Field(
        30, ge=1, le=600, description="How long a dynamic code stays valid after the phone made it."
    )
    clock_skew_s: int = Field(10, ge=0, le=600, description="Tolerance between the phone's clock and the gate's.")
    validity_leeway_s: int = Field(
        120, ge=0, le=3600,
        description=(
            "Clock leeway for the validity start of credentials and their keys: a start up to this far after the "
            "gate's clock is admitted and flagged clock_leeway (a pass bought a moment ago at a gate whose clock "
            "is behind). Expiry and dynamic-code freshness get no leeway."
        ),
    )
    stale_ledger: Literal["allow_flag", "deny"] = Field(
        "allow_flag", description="When the ledger is older than the site's staleness limit: allow and flag, or deny."
    )
    untrusted_clock_static: Literal["allow_flag", "deny"] = Field(
        "allow_flag", description="Static codes while the clock is behind the last-known-time floor."
    )
    untrusted_clock_dynamic: Literal["allow_flag", "deny"] = Field(
        "deny", description="Dynamic codes while the clock is untrusted (their freshness cannot be judged)."
    )
    metro_max_journey_minutes: int = Field(
        240, ge=1, description="A metro tap-in older than this no longer blocks a new one."
    )
    exit_requires_tap_in: bool = Field(
        False, description="Deny a metro exit without a tap-in known to this gate (only where all tap-ins reach it)."
    )

    def to_policy(self) -> GatePolicy:
        return GatePolicy(
            verify=VerifyPolicy(self.dynamic_window_s, self.clock_skew_s, self.validity_leeway_s),
            stale_ledger=self.stale_ledger,
            untrusted_clock_static=self.untrusted_clock_static,
            untrusted_clock_dynamic=self.untrusted_clock_dynamic,
            metro_max_journey_minutes=self.metro_max_journey_minutes,
            exit_requires_tap_in=self.exit_requires_tap_in,
        )


class DecisionConfig(BaseModel):
    """Timing of presentations and decisions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    leave_after_s: float = Field(
        1.5, ge=0, le=60, description="A code must be out of view this long before it counts as presented again."
    )
    deadline_ms: int = Field(
        250,
        ge=10,
        le=5000,
        description=(
            "A decision slower than this (ledger commit included) is logged as decision_slow. Waiting on a "
            "locked ledger is bounded by ledger.busy_timeout_ms, after which the fallback applies."
        ),
    )
    fallback: Literal["deny", "allow"] = Field(
        "deny", description="What the gate does when a decision cannot be made in its deadline (recorded either way)."
    )
    entry_budget_s: float = Field(
        20.0,
        gt=0,
        description="Per-entry budget from presentation to barrier closed ('20秒入园'); overruns are logged.",
    )


class HealthConfig(BaseModel):
    """The local health and metrics endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to listen on (keep it local; a reverse proxy may expose it).")
    port: int = Field(9120, ge=0, le=65535, description="TCP port for /healthz and /metrics; 0 picks a free port.")
    enabled: bool = Field(True, description="Serve /healthz and /metrics.")


class SyncConfig(BaseModel):
    """Reconciliation with the issuer over MQTT (docs/mqtt.md): taps up, signed ledger updates down.

    Runs on its own thread with its own ledger connection; the decision loop never waits on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the sync thread (false: buffer taps in the outbox only).")
    broker_host: str = Field(description="The MQTT broker's host name or address.")
    broker_port: int = Field(8883, ge=1, le=65535, description="The broker's TLS port.")
    broker_nodes: list[str] = Field(
        default_factory=list,
        description=(
            "The other nodes of a clustered broker, as host:port: each reconnection attempt dials the next one "
            "(docs/broker.md, 'A clustered engine')."
        ),
    )
    keepalive_s: int = Field(
        30, ge=5, le=600,
        description=(
            "MQTT keepalive: a silent connection, or a CONNECT left unanswered, is given up after this long "
            "(lower it on a clustered engine, docs/broker.md)."
        ),
    )
    mqtt_version: Literal["5", "3.1.1"] = Field(
        "5",
        description=(
            "MQTT protocol version: '5', or '3.1.1' for an engine without MQTT 5 such as NATS (the degraded mode "
            "of docs/mqtt.md: no session expiry, the session kept until a clean connect)."
        ),
    )
    ca: Path = Field(description="The device CA certificate (PEM) the broker's certificate must chain to.")
    cert: Path = Field(description="This gate's certificate (PEM); its CN is the gate id.")
    key: Path = Field(description="This gate's private key (PEM, 0600; it never leaves the device).")
    issuer_url: str | None = Field(None, description="The issuer's HTTP base URL, for snapshot catch-up.")
    token_file: Path | None = Field(None, description="File holding the device's API token (for issuer_url).")
    batch_size: int = Field(500, ge=1, le=1000, description="Outbox events per upload message.")
    ack_timeout_s: float = Field(30.0, gt=0, description="Resend a batch the issuer has not acknowledged by then.")
    status_interval_s: float = Field(30.0, gt=0, description="How often the retained status is refreshed.")
    clock_alarm_s: float = Field(10.0, gt=0, description="Clock offset against the issuer that raises an alarm.")
    reconnect_max_s: int = Field(
        30, ge=1, le=600, description="Longest wait between reconnect attempts (backoff doubles from 1 s up to this)."
    )
    lanes: bool = Field(
        True,
        description=(
            "Share this lane's admissions with the other lanes of its site, signed with the device key, and apply "
            "theirs: a screenshot admitted at the next lane is refused here (docs/gate.md, 'One site, one gate')."
        ),
    )
    lane_rate_per_s: float = Field(
        20.0, gt=0, le=1000,
        description="Most messages per second taken from any one sibling lane; more are dropped and counted.",
    )

    @model_validator(mode="after")
    def _nodes_are_addresses(self) -> SyncConfig:
        for node in self.broker_nodes:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"broker_nodes: {node!r} is not host:port")
        return self

    @property
    def node_addresses(self) -> tuple[tuple[str, int], ...]:
        """``broker_nodes`` as (host, port) pairs."""
        return tuple((n.rpartition(":")[0], int(n.rpartition(":")[2])) for n in self.broker_nodes)


class GateConfig(BaseModel):
    """Everything one gate daemon needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="This gate's unique id (taps carry it)."
    )
    site: str = Field(description="The site this gate stands at: its name or number in the ledger.")
    direction: Direction = Field(Direction.ENTRY, description="entry or exit.")
    root_key: Path = Field(description="The pinned root public key (PEM) that every ledger update must chain to.")
    snapshot: Path | None = Field(
        None, description="A signed snapshot to load at start when the ledger holds none (first boot)."
    )
    ledger: LedgerConfig = Field(description="The durable offline ledger (SQLite).")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="Where frames come from.")
    decoder: str = Field(DEFAULT_DECODER, description=f"QR decoder: one of {', '.join(DECODER_NAMES)}.")
    barrier: BarrierConfig = Field(default_factory=BarrierConfig, description="Barrier wiring and timings.")
    pins: Literal["native", "mock"] = Field(
        "native", description="GPIO backend: 'native' (gpiozero's default for the board) or 'mock' (no hardware)."
    )
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="Degraded-condition policies.")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Presentation and decision timing.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Health and metrics endpoint.")
    screen: ScreenConfig = Field(default_factory=ScreenConfig, description="The lane's result screen at /screen.")
    sync: SyncConfig | None = Field(None, description="MQTT sync with the issuer; absent: taps stay in the outbox.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Structured log level.")

    @model_validator(mode="after")
    def _check(self) -> GateConfig:
        if self.decoder not in DECODER_NAMES:
            raise InvalidInput(f"decoder must be one of {', '.join(DECODER_NAMES)}")
        if self.barrier.passage_timeout_s >= self.decision.entry_budget_s:
            raise InvalidInput("barrier.passage_timeout_s must be shorter than decision.entry_budget_s")
        return self


def load_config(path: Path) -> GateConfig:
    """Read and validate a TOML config; relative paths in it are taken relative to the file."""
    data = read_toml(path)
    try:
        cfg = GateConfig.model_validate(data)
    except ValidationError as exc:
        raise problems(path, exc) from None
    base = path.parent
    updates: dict[str, object] = {"root_key": base / cfg.root_key}
    if cfg.snapshot is not None:
        updates["snapshot"] = base / cfg.snapshot
    updates["ledger"] = cfg.ledger.model_copy(update={"path": base / cfg.ledger.path})
    if cfg.sync is not None:
        paths = {k: base / getattr(cfg.sync, k) for k in ("ca", "cert", "key")}
        if cfg.sync.token_file is not None:
            paths["token_file"] = base / cfg.sync.token_file
        updates["sync"] = cfg.sync.model_copy(update=paths)
    camera = cfg.camera
    if camera.kind in ("images", "file") and not Path(camera.target).is_absolute():
        text = camera.source.strip()
        prefix = text[: text.index(":") + 1] if camera.kind == "images" else ""
        updates["camera"] = camera.model_copy(update={"source": prefix + str(base / camera.target)})
    return cfg.model_copy(update=updates)
