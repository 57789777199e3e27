"""``citypass broker …``: make a broker home, enrol and revoke gates, run Mosquitto in the foreground."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from citypass.sync.broker import Broker
from citypass.sync.endpoint import ClientFiles
from citypass.sync.files import write_atomic
from citypass.sync.home import BrokerError, BrokerHome, bridge_cn
from citypass.sync.sitebroker import SiteBrokerHome

#: How long `broker run` waits for Mosquitto to accept TLS after starting it.
STARTUP_TIMEOUT_S = 120.0
HOME_OPTION = click.option("--home", "home", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="Broker home directory (CA, server certificate, ACL, config, data, log).")
ID_HELP = "Certificate common name: a-z 0-9 . _ - (it becomes the MQTT username and client id)."


def _enrolled(home: BrokerHome, cn: str, cert: x509.Certificate | ClientFiles, csr: Path | None,
              out: Path | None) -> None:
    """Write a CSR-signed certificate where asked and tell the technician what goes to the device."""
    if isinstance(cert, ClientFiles):
        click.echo(f"{cn}: key {cert.key} (0600, keep on the device), certificate {cert.cert}, CA {cert.ca}")
    else:
        assert csr is not None
        target = out or csr.with_name(f"{cn}.pem")
        write_atomic(target, cert.public_bytes(Encoding.PEM))
        click.echo(f"{cn}: certificate {target}; give the device it and the CA certificate {home.ca_cert}")
    if home.running_pid():
        click.echo("reloaded the running broker")


@click.group()
def broker() -> None:
    """Run the MQTT broker (Mosquitto) with per-device TLS certificates, ACLs and a CRL.

    Start with `citypass broker init --home DIR`, enrol gates with `add-device`, the issuer with
    `add-service`, then `citypass broker run --home DIR`. See docs/broker.md.
    """


@broker.command()
@HOME_OPTION
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="Extra hostname or IP the broker's certificate is valid for (repeatable); "
                   "localhost, 127.0.0.1 and ::1 are always included.")
def init(home: Path, hosts: tuple[str, ...]) -> None:
    """Create the device CA (unless HOME has one), the broker's certificate, ACL and directories.

    Running it again keeps the CA and every enrolled device and re-issues the server certificate.
    """
    bh = BrokerHome(home)
    existed = (bh.ca_dir / "ca.pem").exists()
    bh.init(hostnames=hosts)
    click.echo(f"{'kept' if existed else 'created'} CA {bh.ca_cert}; server certificate {bh.server_cert}")


@broker.command("add-device")
@HOME_OPTION
@click.option("--id", "device_id", required=True, help=ID_HELP)
@click.option("--site", type=click.IntRange(min=0), required=True, help="The issuer's site number of the gate.")
@click.option("--csr", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The device's certificate signing request (PEM); its CN must equal --id.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate signed from --csr (default: ID.pem beside the CSR).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Development/test gates: make the key and CSR here too, and write ID.pem and ca.pem.")
def add_device(home: Path, device_id: str, site: int, csr: Path | None, out: Path | None,
               out_dir: Path | None) -> None:
    """Sign a gate's certificate and let it read its site's downstream topics.

    Give --csr (the key stays on the device) or --out-dir. Enrolling a gate again renews its certificate
    and moves it to --site. A running broker is reloaded.
    """
    bh = BrokerHome(home)
    if (csr is None) == (out_dir is None):
        raise click.UsageError("give exactly one of --csr or --out-dir")
    if csr is not None:
        _enrolled(bh, device_id, bh.add_device(device_id, site, csr.read_bytes()), csr, out)
    else:
        assert out_dir is not None
        _enrolled(bh, device_id, bh.add_device_with_key(device_id, site, out_dir), None, None)


@broker.command("add-service")
@HOME_OPTION
@click.option("--id", "cn", default="issuer", show_default=True, help=ID_HELP)
@click.option("--csr", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The service's certificate signing request (PEM); its CN must equal --id.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate signed from --csr (default: ID.pem beside the CSR).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Make the key and CSR here too, and write ID.pem and ca.pem.")
def add_service(home: Path, cn: str, csr: Path | None, out: Path | None, out_dir: Path | None) -> None:
    """Enrol a central service (the issuer) that may read and write every citypass/v1 topic.

    Each MQTT connection needs its own identity (the client id is forced to the CN), so give every
    ingest worker its own --id, e.g. issuer-ingest-1, issuer-ingest-2.
    """
    bh = BrokerHome(home)
    if (csr is None) == (out_dir is None):
        raise click.UsageError("give exactly one of --csr or --out-dir")
    result = bh.add_service(cn, csr_pem=csr.read_bytes() if csr else None, out_dir=out_dir)
    _enrolled(bh, cn, result, csr, out)


@broker.command("revoke-device")
@HOME_OPTION
@click.option("--id", "device_id", required=True, help="The gate (or service) to lock out.")
def revoke_device(home: Path, device_id: str) -> None:
    """Revoke a gate's certificates: the CRL refuses its next connection, the ACL mutes an open one.

    A running broker is reloaded at once.
    """
    bh = BrokerHome(home)
    count = bh.revoke(device_id)
    reloaded = " and reloaded the running broker" if bh.running_pid() else ""
    click.echo(f"revoked {count} certificate(s) of {device_id}{reloaded}")


@broker.command("list")
@HOME_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON array (for scripts).")
def list_identities(home: Path, as_json: bool) -> None:
    """List enrolled identities: CN, kind (device/service/revoked), site and certificate expiry."""
    bh = BrokerHome(home)
    active = bh.ca.active()
    rows = [(i.cn, i.kind, i.site, active[i.cn].not_after if i.cn in active else None) for i in bh.identities()]
    if as_json:
        click.echo(json.dumps([{"cn": cn, "kind": kind, "site": site, "not_after": expiry}
                               for cn, kind, site, expiry in rows], indent=1))
        return
    for cn, kind, site, expiry in rows:
        click.echo(f"{cn}\t{kind}\t{'-' if site is None else site}\t{expiry or '-'}")


@broker.command("site")
@HOME_OPTION
@click.option("--site", type=click.IntRange(min=0), required=True, help="The issuer's site number.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The site broker's home (created, or refreshed if it exists).")
@click.option("--central", required=True, metavar="HOST:PORT", help="Where the site's bridge dials the central broker.")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="Hostname or IP the site broker's certificate is valid for (repeatable); "
                   "localhost, 127.0.0.1 and ::1 are always included.")
def site(home: Path, site: int, out: Path, central: str, hosts: tuple[str, ...]) -> None:
    """Make or refresh a site broker's home from this (central) broker home.

    The site broker serves the lanes of one site and bridges to the central broker, so the lanes share their
    admissions over the site's network even while the city link is down (docs/broker.md, "Site brokers").
    Its bridge identity is enrolled here; run it with `citypass broker run --home OUT`. Run this again after
    enrolling, moving or revoking a gate of the site: it copies the gate list and the CRL and reloads it.
    """
    host, _, port = central.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter("expected HOST:PORT", param_hint="--central")
    sh = SiteBrokerHome.export(BrokerHome(home), site, out, (host.strip("[]"), int(port)), hostnames=hosts)
    gates = [i.cn for i in sh.identities() if i.kind == "device"]
    click.echo(f"site {site}: site broker home {sh.path}; bridge {bridge_cn(site)} to {central}; "
               f"{len(gates)} gate(s): {', '.join(gates) or 'none yet'}")
    if sh.running_pid():
        click.echo("reloaded the running site broker")


def _stamp(paths: list[Path]) -> tuple[int, ...]:
    return tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in paths)


@broker.command()
@HOME_OPTION
@click.option("--port", type=click.IntRange(1, 65535), default=8883, show_default=True, help="TLS port.")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--dev-insecure", is_flag=True,
              help="INSECURE local development mode: plaintext, anonymous, no ACL, 127.0.0.1 only.")
def run(home: Path, port: int, bind: str, dev_insecure: bool) -> None:
    """Run Mosquitto in the foreground until SIGTERM or Ctrl-C; SIGHUP reloads ACL and CRL.

    The config is regenerated from HOME first (a site broker's home adds its bridge to the central broker).
    Logs go to HOME/log/mosquitto.log.
    """
    bh = SiteBrokerHome(home) if SiteBrokerHome.is_site_home(home) else BrokerHome(home)
    if dev_insecure:
        click.secho("WARNING: --dev-insecure: NO TLS, NO AUTHENTICATION, NO ACL. Anyone on this machine can "
                    "read and forge every message. Never use this for real gates.", fg="red", bold=True, err=True)
    done = threading.Event()
    hup = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        hup.set()

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    # Mosquitto restores every persisted session before it listens: with 10,000 gates that took 15 s on a loaded
    # 2-core machine (docs/broker.md, "One Mosquitto at fleet size"); Broker's default 10 s would kill it.
    proc = Broker(bh, port=port, bind=bind, dev_insecure=dev_insecure, startup_timeout=STARTUP_TIMEOUT_S)
    try:
        proc.start()
        mode = "PLAINTEXT (insecure)" if dev_insecure else "TLS, client certificates required"
        click.echo(f"broker listening on {bind if not dev_insecure else '127.0.0.1'}:{port} ({mode}); "
                   f"pid {proc.pid}; log {bh.log_path}", err=True)
        # Another account (the issuer, acting as the device CA) rewrites the ACL and the CRL without being able
        # to signal this process: a change of either file reloads mosquitto just as SIGHUP does.
        watched = [bh.acl_path, bh.ca_dir / "crl.pem"]
        stamp = _stamp(watched)
        while not done.wait(0.2):
            if (now := _stamp(watched)) != stamp:
                stamp = now
                proc.reload()
            if hup.is_set():
                hup.clear()
                if not dev_insecure:
                    bh.write_acl()
                proc.reload()
            if not proc.running:
                raise BrokerError(f"mosquitto exited unexpectedly (status {proc.wait()}); see {bh.log_path}")
    finally:
        status = proc.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"broker stopped (mosquitto exit status {status})", err=True)
