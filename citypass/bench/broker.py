"""``citypass bench broker``: one Mosquitto, with the project's own config, at a fleet's size.

Method (a scratch directory, deleted afterwards; every part real except that a gate is a light simulation):

1. **Identities.** A fresh broker home (:class:`citypass.sync.home.BrokerHome`): its CA, server certificate,
   generated TLS + ACL + persistence config. Every simulated gate is a real device identity: its own EC P-256
   key and CSR, signed by the home's CA and enrolled at a site (``gate-00000`` … at sites 1–50) — in one batch
   (:meth:`~citypass.sync.home.BrokerHome.add_devices`: one index write, one ACL rewrite), so the ACL has a
   block per gate exactly as ``citypass broker add-device`` writes it one by one.
2. **Broker.** :class:`citypass.sync.broker.Broker` starts Mosquitto from that home on a free port. This
   process's open-file limit is raised to its hard limit first; Mosquitto inherits it.
3. **Issuer.** A real issuer home, its :class:`~citypass.sync.issuer_sync.LedgerPublisher` (the issuer's MQTT
   identity, its defaults: the ledger polled every 0.5 s, a signed time tick every 10 s) in this process.
4. **Fleet.** ``--processes`` worker processes, each one asyncio event loop holding its share of the gates
   (:mod:`citypass.bench.fleet`, :class:`~citypass.bench.fleet_session.GateSession`): TLS with the gate's
   certificate, ``clean_start=false``, a week's session expiry, a retained Last Will, the gate's five
   subscriptions, its retained status, PUBACKs and pings, and the gate's reconnect policy (paho's doubling
   backoff with the project's per-client jitter). Each process starts at most 32 handshakes at once.
5. **Held.** Sessions connected; Mosquitto's resident memory (``/proc/PID/status``) idle and holding them.
6. **Revocation fan-out.** The operator revokes (:meth:`citypass.issuer.service.Issuer.revoke`, committed);
   the publisher sees the new sequence and publishes the signed delta on ``all/ledger``, exactly as in
   production; each session timestamps the delta's arrival. Times are from the revoke call to arrival, per
   gate: p50 / p99 / max. Every 10th gate's copy (and any copy unlike those) is verified as a gate verifies it
   — :func:`citypass.credential.delta.load_delta` against the trust list, itself checked against the pinned
   root key — and must revoke that credential; the other copies must be byte-identical to a verified one.
   **Applied**, beside it: ``--real-gates`` real gates (default 10; :mod:`citypass.bench.real_gates`) share the
   broker with the light sessions — each the production :class:`~citypass.sync.gate_sync.GateSync` with its
   own device identity enrolled in the same home (``gate-real-00`` … at site 1, registered with the issuer)
   and its own SQLite gate ledger, seeded with the issuer's snapshot before the first revocation. Per real gate:
   from the revoke call to the moment its ledger has committed the delta (noted on its sync thread, after
   :meth:`~citypass.gate.ledger.GateLedger.apply_delta`), p50 / max; then a lookup in each ledger
   (:meth:`~citypass.gate.ledger.GateLedger.is_revoked`) must find the credential revoked. The real gates are
   heavy — two threads and a SQLite connection each, all in one worker process, one GIL on two cores — so they
   are few, and not counted in ``--gates``. They connect **after** the light fleet is held and its memory read
   (the connection and memory figures are the light sessions' alone), so their subscriptions are Mosquitto's
   newest: it delivers a message to a topic's subscribers in the order they subscribed, and the real gates
   get the first revocations last — the fan-out's tail. (After the restart the order is whatever Mosquitto
   restored from its persistence.) Their figure is an upper bound for gates that are devices of their own.
7. **Restart.** SIGTERM (Mosquitto writes its persistence), start again on the same port; every session
   reconnects on its own backoff. Per gate: from the broker accepting again to its SUBACK; whether the broker
   still had its session (``session present``). The real gates reconnect on their own (paho, the same policy).
   Then one more revocation, through the restored sessions, timed to arrival and to the real gates' ledgers.

Example::

    citypass bench broker                           # 1,000 / 5,000 / 10,000 gates, side by side
    citypass bench broker --gates 2000 --processes 2
    citypass bench broker --gates 1000 --real-gates 0   # arrival at the light sessions only
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from citypass.bench.broker_figures import FanOut, SizeResult, markdown, table
from citypass.bench.fleet import Connected, Fleet, raise_nofile, split
from citypass.bench.machine import load_average
from citypass.bench.real_gates import RealGates, RealGateSpec
from citypass.bench.report import Progress, Row, percentile, print_rows, scratch_dir
from citypass.bench.syncworld import SITES, seeded_gate_ledger
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Device
from citypass.issuer.service import Issuer
from citypass.sync.broker import Broker, free_port
from citypass.sync.ca import make_csr, new_key
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.home import BrokerHome
from citypass.sync.issuer_sync import LedgerPublisher

SITE_COUNT = 50
VERIFY_EVERY = 10
#: The real gates' site (:func:`~citypass.bench.syncworld.seeded_gate_ledger` makes site-1 entry lanes).
REAL_SITE = 1


class TimedPublisher(LedgerPublisher):
    """The issuer's ledger publisher, noting when it handed each delta to its MQTT client."""

    def __init__(self, issuer: Issuer, endpoint: Endpoint) -> None:
        super().__init__(issuer, endpoint)
        self.published: list[float] = []

    def publish_changes(self) -> int:
        count = super().publish_changes()
        if count:
            self.published.append(time.monotonic())
        return count


def proc_status(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (``ListenOverflows`` in
    ``/proc/net/netstat``, the whole machine: Mosquitto listens with a backlog of 100)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    if len(lines) < 2 or "ListenOverflows" not in lines[0]:
        return 0
    return int(lines[1][lines[0].index("ListenOverflows")])


def phases(connections: list[Connected]) -> dict[str, list[float]]:
    """How long each step of the connections took (seconds), by step."""
    out: dict[str, list[float]] = {"waited": [], "tcp": [], "tls": [], "connack": [], "suback": []}
    for c in connections:
        if c.lost is not None:  # backoff delays and the attempts that failed, until the one that succeeded
            out["waited"].append(c.began - c.lost)
        out["tcp"].append(c.tcp - c.began)
        out["tls"].append(c.tls - c.tcp)
        out["connack"].append(c.connack - c.tls)
        out["suback"].append(c.subscribed - c.connack)
    return out


def open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{int(soft):,} / {int(hard):,}"
    return "unknown"


def enrol_fleet(home: BrokerHome, gates: int, out_dir: Path) -> list[tuple[str, int, Path]]:
    """Make ``gates`` device keys and CSRs, enrol them in one batch, write each gate's certificate + key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [(f"gate-{i:05d}", 1 + i % SITE_COUNT) for i in range(gates)]
    keys = [new_key() for _ in ids]
    certs = home.add_devices([(cn, site, make_csr(key, cn)) for (cn, site), key in zip(ids, keys, strict=True)])
    fleet = []
    for (cn, site), key, cert in zip(ids, keys, certs, strict=True):
        pem = out_dir / f"{cn}.pem"
        # Scratch files: no fsync (write_atomic's would cost more than minting all the certificates).
        with os.fdopen(os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        fleet.append((cn, site, pem))
    return fleet


def enrol_real_gates(home: BrokerHome, issuer: Issuer, count: int, folder: Path) -> list[RealGateSpec]:
    """``count`` real gates at site 1: each enrolled in the broker home with its own key (as ``citypass broker
    add-device`` enrols one), registered with the issuer, and given a ledger with the issuer's current snapshot."""
    now = int(time.time())
    ids = [f"gate-real-{i:02d}" for i in range(count)]
    files = [home.add_device_with_key(device_id, REAL_SITE, folder / "keys") for device_id in ids]
    for device_id in ids:
        issuer.store.add_device(Device(device_id, REAL_SITE, "entry", "real gate (bench broker)", "enrolled", now))
    root = issuer.root_key().public
    return [RealGateSpec(device_id, REAL_SITE, f, seeded_gate_ledger(folder, device_id, issuer, root))
            for device_id, f in zip(ids, files, strict=True)]


def _count(fleet: Fleet, since: float) -> tuple[int, int]:
    """Sessions connected since ``since``, and sessions that received a ledger delta since then."""
    answers = fleet.call("count", since)
    return sum(a[0] for a in answers), sum(a[1] for a in answers)


def _wait_count(fleet: Fleet, since: float, which: int, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = _count(fleet, since)[which]
        if got >= target or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def fan_out(label: str, issuer: Issuer, publisher: TimedPublisher, fleet: Fleet, expected: int,
            timeout: float, real: RealGates | None = None) -> FanOut:
    """One revocation by the operator, timed to every connected gate, and to every real gate's ledger having
    applied it (see the module, step 6)."""
    credential = os.urandom(8)
    started = time.monotonic()
    issuer.revoke(credential.hex(), int(time.time()), "lost phone (bench broker)")
    seq = issuer.store.ledger_seq()  # the sequence that revocation made: a real gate has applied it at this one
    _wait_count(fleet, started, 1, expected, timeout)
    applied = []
    if real is not None:
        real.wait_applied(started, seq, max(1.0, started + timeout - time.monotonic()))
        applied = real.applied(started, seq, credential)
    now = int(time.time())
    root_pem = issuer.root_key().public.pem()
    trust_signed = issuer.trust_list(now).sign(issuer.root_key())
    receipts = fleet.call("receipts", started, trust_signed, root_pem, credential, VERIFY_EVERY)
    times = [t for r in receipts for t in r.times]
    published = [t for t in publisher.published if t >= started]
    return FanOut(label, [t - started for t in times if t is not None], sum(t is None for t in times),
                  published[0] - started if published else None, receipts, applied)


def _log_fan_out(f: FanOut, log: Progress) -> None:
    real = f.applied_latencies
    arrival = f"arrival p99 {percentile(f.latencies, 0.99):.2f} s" if f.latencies else "no arrival"
    applied = (f"; applied in {len(real)} of {len(f.applied)} real gate ledgers, the last {max(real):.2f} s"
               if real else f"; applied in 0 of {len(f.applied)} real gate ledgers" if f.applied else "")
    log(f"{f.label}: {arrival}{applied}")


def run_size(gates: int, processes: int, rounds: int, work: Path, log: Progress, real_gates: int = 0,
             ) -> SizeResult:
    """Everything the module describes, for one fleet size (and ``real_gates`` real ones), in ``work``."""
    result = SizeResult(gates, processes, load_before=load_average(), real_gates=real_gates)
    result.nofile = raise_nofile()
    if gates + 100 > result.nofile[0]:
        result.notes.append(f"the open-file limit ({result.nofile[0]:,}) is below {gates:,} sessions + slack")
    started = time.perf_counter()
    home = BrokerHome(work / "broker").init()
    fleet_files = enrol_fleet(home, gates, work / "gates")
    issuer_files = home.add_service("issuer", out_dir=work / "keys")
    assert isinstance(issuer_files, ClientFiles)
    result.enrol_s = time.perf_counter() - started
    log(f"{gates:,} gates enrolled in {result.enrol_s:.1f} s")
    issuer = Issuer.init(IssuerHome(work / "issuer"), SITES, now=int(time.time()) - 60)
    real_specs = enrol_real_gates(home, issuer, real_gates, work / "real-gates")
    # Mosquitto restores 10,000 sessions from its persistence file before it listens: give it time.
    broker = Broker(home, port=free_port(), startup_timeout=300)
    fleet: Fleet | None = None
    publisher: TimedPublisher | None = None
    real: RealGates | None = None
    try:
        began = time.monotonic()
        broker.start()
        result.start_s = time.monotonic() - began
        assert broker.pid is not None
        result.broker_nofile = open_files_limit(broker.pid)
        time.sleep(0.5)
        result.rss_idle_kb = proc_status(broker.pid, "VmRSS")
        publisher = TimedPublisher(issuer, Endpoint(broker.host, broker.port, tls=issuer_files))
        publisher.start()
        if not publisher.connected.wait(30):
            raise click.ClickException("the issuer's ledger publisher did not connect")
        fleet = Fleet(split(broker.host, broker.port, home.ca_cert, fleet_files, processes))
        result.prepare_s = max(fleet.call("prepare"))
        log(f"TLS contexts ready ({result.prepare_s:.1f} s in the slowest process)")

        cpu, overflows, fleet_cpu = cpu_seconds(broker.pid), listen_overflows(), fleet.cpu_seconds()
        began = time.monotonic()
        fleet.call("connect")
        connected = _wait_count(fleet, began, 0, gates, 60 + gates * 0.02)
        firsts = [c for answer in fleet.call("connects", began) for c in answer if c is not None]
        result.connected = connected
        result.connect_s = max(c.subscribed for c in firsts) - began if firsts else 0.0
        result.first_phases = phases(firsts)
        result.overflows_connect = listen_overflows() - overflows
        result.broker_cpu_connect_s = cpu_seconds(broker.pid) - cpu
        result.fleet_cpu_connect_s = fleet.cpu_seconds() - fleet_cpu
        state = fleet.state()
        result.attempts, result.refusals = state["attempts"], state["refusals"]
        log(f"{connected:,} of {gates:,} sessions connected in {result.connect_s:.1f} s")
        if connected < gates:
            result.notes.append(f"only {connected:,} of {gates:,} sessions connected within the wait "
                                f"({state['attempts']:,} attempts, {state['refusals']} refused)")
        time.sleep(3.0)  # held: pings, the retained statuses, a time tick or so
        result.rss_held_kb = proc_status(broker.pid, "VmRSS")
        held = fleet.state()["connected"]
        timeout = 30 + gates * 0.002
        if real_specs:  # last: the light sessions' figures above are their own, and see the module (step 6)
            began = time.monotonic()
            real = RealGates(broker.host, broker.port, real_specs, issuer.root_key().public.pem())
            result.real_connected = real.wait_connected(began, 60)
            log(f"{result.real_connected} of {real_gates} real gates connected")
            if result.real_connected < real_gates:
                result.notes.append(f"only {result.real_connected} of {real_gates} real gates connected")

        for i in range(rounds):
            result.fanouts.append(fan_out(f"revocation {i + 1}", issuer, publisher, fleet, held, timeout, real))
            _log_fan_out(result.fanouts[-1], log)

        overflows, fleet_cpu = listen_overflows(), fleet.cpu_seconds()
        stopping = time.monotonic()
        broker.stop()
        stopped = time.monotonic()
        broker.start()
        ready = time.monotonic()
        assert broker.pid is not None
        result.stop_s, result.down_s = stopped - stopping, ready - stopping
        reconnected = _wait_count(fleet, stopping, 0, held, 120 + gates * 0.02)
        answers = [c for answer in fleet.call("connects", stopping) for c in answer if c is not None]
        result.overflows_reconnect = listen_overflows() - overflows
        result.fleet_cpu_reconnect_s = fleet.cpu_seconds() - fleet_cpu
        result.reconnect = [c.subscribed - ready for c in answers]
        result.sessions_present = sum(c.session_present for c in answers)
        result.reconnect_phases = phases(answers)
        result.reconnect_attempts = fleet.state()["attempts"] - result.attempts
        result.broker_cpu_reconnect_s = cpu_seconds(broker.pid)  # a new process: all of it since it started
        result.rss_restored_kb = proc_status(broker.pid, "VmRSS")
        log(f"{reconnected:,} reconnected after the restart, the last {max(result.reconnect, default=0):.1f} s "
            "after the broker was back")
        if real is not None:
            result.real_reconnected = real.wait_connected(stopping, max(1.0, ready + 120 + gates * 0.02
                                                                        - time.monotonic()))
            log(f"{result.real_reconnected} of {real_gates} real gates reconnected")
            if result.real_reconnected < real_gates:
                result.notes.append(f"only {result.real_reconnected} of {real_gates} real gates reconnected after "
                                    "the restart")
        if not publisher.connected.wait(60):
            raise click.ClickException("the issuer's ledger publisher did not reconnect")
        result.fanouts.append(fan_out("after the restart", issuer, publisher, fleet, reconnected, timeout, real))
        _log_fan_out(result.fanouts[-1], log)
    finally:
        if real is not None:
            real.close()
        if fleet is not None:
            fleet.close()
        if publisher is not None:
            publisher.stop()
        broker.stop()
        issuer.close()
    for f in result.fanouts:
        applied, revoked = len(f.applied_latencies), sum(a.revoked for a in f.applied)
        if applied < len(f.applied) or revoked < len(f.applied):
            result.notes.append(f"{f.label}: applied in {applied} of {len(f.applied)} real gate ledgers, revoked "
                                f"on lookup in {revoked}")
    result.load_after = load_average()
    return result


def run(sizes: list[int], processes: int, rounds: int, log: Progress, real_gates: int = 0) -> list[SizeResult]:
    results = []
    for gates in sizes:
        with scratch_dir("citypass-bench-broker-") as work:
            results.append(run_size(gates, processes, rounds, work, log, real_gates))
    return results


@click.command("broker")
@click.option("--gates", "sizes", default="1000,5000,10000", show_default=True,
              help="Fleet sizes to run one after another (comma-separated), each with a fresh broker home.")
@click.option("--processes", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes holding the simulated gates (one asyncio event loop each).")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1, 20),
              help="Revocations timed before the restart (one more after it).")
@click.option("--real-gates", default=10, show_default=True, type=click.IntRange(0, 100),
              help="Real gates (GateSync + its own SQLite ledger each) beside the simulated ones, timed to the "
                   "delta applied in their ledgers; 0: none.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Also print the table as Markdown.")
def broker_command(sizes: str, processes: int, rounds: int, real_gates: int, as_markdown: bool) -> None:
    """Sessions one Mosquitto holds, its memory, revocation fan-out and reconnection after a restart."""
    from rich.console import Console

    try:
        counts = [int(part.replace("_", "")) for part in sizes.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of gate counts, e.g. 1000,5000,10000") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("at least one gate per size")
    console = Console()
    results = run(counts, processes, rounds, lambda msg: console.log(f"  {msg}", highlight=False), real_gates)
    rows = [Row(name, " | ".join(cells)) for name, cells in table(results)]
    print_rows(f"one Mosquitto at fleet size ({', '.join(f'{n:,}' for n in counts)} gates; "
               f"{processes} client processes; {real_gates} real gates beside them)", rows, console)
    for r in results:
        for note in r.notes:
            console.print(f"[yellow]{r.gates:,} gates: {note}[/yellow]")
    if as_markdown:
        console.print(markdown(results), markup=False, highlight=False, soft_wrap=True)
