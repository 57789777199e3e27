"""The issuer program's one wiring point: ``citypass issuer serve``.

It composes what the issuer package keeps apart: the HTTP API (:func:`citypass.issuer.api.create_app`) with the
broker home's certificate authority behind its :class:`~citypass.issuer.authority.DeviceAuthority` interface
(:class:`BrokerAuthority`), and, with ``--mqtt-workers``, the MQTT ingest workers and ledger publisher
(:class:`citypass.sync.issuer_sync.IssuerSync`) beside it.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import uvicorn
from cryptography.hazmat.primitives import serialization

from citypass.errors import InvalidInput
from citypass.issuer.api import create_app
from citypass.issuer.api.limits import CapLength
from citypass.issuer.api.logjson import JsonFormatter
from citypass.issuer.authority import AuthorityError
from citypass.issuer.cli import DATABASE_OPTION, HOME_OPTION, open_home
from citypass.issuer.service import Issuer
from citypass.sync.ca import CAError
from citypass.sync.endpoint import MQTT_VERSIONS, Endpoint, MqttVersion
from citypass.sync.home import BrokerError, BrokerHome
from citypass.sync.issuer_sync import IssuerSync
from citypass.sync.workqueue import WorkQueue, parse_servers

_NODE = re.compile(r"[A-Za-z0-9-]{1,32}")


@dataclass(frozen=True)
class BrokerAuthority:
    """The issuer's :class:`~citypass.issuer.authority.DeviceAuthority` over a broker home: certificates signed
    by its CA, devices added to (and revoked from) its ACL and CRL, a running broker reloaded."""

    home: BrokerHome
    broker: str | None = None  # "host:port" as devices should dial it

    def ca_certificate(self) -> str:
        return self.home.ca_cert.read_text(encoding="ascii")

    def has_certificate(self, device_id: str) -> bool:
        return device_id in self.home.ca.active("device")

    def certify(self, device_id: str, site: int, csr_pem: bytes) -> str:
        try:
            cert = self.home.add_device(device_id, site, csr_pem)
        except (CAError, BrokerError) as exc:
            raise AuthorityError(str(exc)) from None
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def revoke(self, device_id: str) -> int:
        try:
            return self.home.revoke(device_id)
        except (CAError, BrokerError) as exc:
            raise AuthorityError(str(exc)) from None


@click.command()
@HOME_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@click.option("--broker-home", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A broker home (`citypass broker init`): the issuer then signs device certificates when an "
                   "enrollment is redeemed with a CSR, and revokes them when a device is retired.")
@click.option("--broker", "broker_address", metavar="HOST:PORT", default=None,
              help="The broker address enrolled devices are told to dial (with --broker-home).")
@click.option("--mqtt-workers", type=click.IntRange(0, 32), default=0, show_default=True,
              help="With --broker-home and --broker: run this many MQTT ingest workers (shared subscription) and "
                   "the ledger publisher beside the API (docs/mqtt.md). 0: HTTP only.")
@click.option("--mqtt-group", default=None,
              help="The shared-subscription group name; keep it a deployment secret (see docs/broker.md). "
                   "Default: the random one `issuer init` made for HOME.")
@click.option("--mqtt-version", type=click.Choice(MQTT_VERSIONS), default="5", show_default=True,
              help="MQTT 3.1.1 for an engine without MQTT 5 (a NATS cluster, docs/broker.md 'A clustered engine'): "
                   "the ingest workers then subscribe plainly; each gets every batch, the store keeps each tap once.")
@click.option("--broker-node", "broker_nodes", metavar="HOST:PORT", multiple=True,
              help="Another node of a clustered broker (repeat for each): every reconnection dials the next one.")
@click.option("--ingest", type=click.Choice(["mqtt", "jetstream"]), default="mqtt", show_default=True,
              help="Where the ingest workers take the gates' batches: their MQTT subscription, or the NATS cluster's "
                   "JetStream work queue (with --nats and --mqtt-version 3.1.1): each batch to one worker, held "
                   "while none runs (docs/broker.md 'A clustered engine').")
@click.option("--nats", "nats_servers", metavar="URL[,URL…]", multiple=True,
              help="With --ingest jetstream: the cluster's NATS client ports, e.g. nats://n1:4222,nats://n2:4222 "
                   "(name every node: the queue is replicated over as many, at most three). The workers connect "
                   "with their MQTT identities' certificates.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Serve HTTPS with this certificate (PEM, with its chain); needs --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The private key of --tls-cert (PEM).")
@click.option("--insecure-http", is_flag=True,
              help="Allow plain HTTP on an address other than loopback (only on a network you trust).")
@click.option("--wallet-url", default=None, metavar="URL",
              help="The wallet page's public address, for claim links (default: the address a request came to, "
                   "+ /wallet/). Set it behind a reverse proxy (docs/wallet.md).")
@DATABASE_OPTION
@click.option("--node", default=None, metavar="NAME",
              help="This node's name, when several serve one issuer (one PostgreSQL --database): its MQTT identities "
                   "become issuer-NAME and issuer-NAME-ingest-K, so nodes do not take over each other's sessions.")
def serve(home: Path, host: str, port: int, log_level: str, broker_home: Path | None,
          broker_address: str | None, mqtt_workers: int, mqtt_group: str | None, tls_cert: Path | None,
          tls_key: Path | None, insecure_http: bool, wallet_url: str | None, database: str | None,
          node: str | None, mqtt_version: MqttVersion, broker_nodes: tuple[str, ...], ingest: str,
          nats_servers: tuple[str, ...]) -> None:
    """Run the issuer's HTTP API (FastAPI on uvicorn) over HOME. See docs/issuer.md.

    Create a token first: `citypass issuer token create --home HOME --role admin`. It listens on
    127.0.0.1 by default, for a TLS proxy in front of it; on any other address it serves HTTPS
    (--tls-cert, --tls-key), or plain HTTP only with --insecure-http.

    Several nodes can serve one issuer: give each a copy of HOME's keys and the same PostgreSQL --database
    (docs/issuer.md, "Several nodes").
    """
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    if tls_cert is None and not insecure_http and not _loopback(host):
        raise click.UsageError(f"--host {host} is not a loopback address: serve HTTPS (--tls-cert, --tls-key) or "
                               "keep the default 127.0.0.1 behind a TLS proxy (--insecure-http to override)")
    queue = _work_queue(ingest, nats_servers, mqtt_workers, mqtt_version)
    if broker_address is not None and broker_home is None:
        raise click.UsageError("--broker needs --broker-home")
    bhome = None
    if broker_home is not None:
        bhome = BrokerHome(broker_home)
        try:
            _ = bhome.ca  # fail now, not at the first enrollment, when there is no CA there
        except Exception as exc:
            raise BrokerError(f"{broker_home} is not a broker home ({exc}): run `citypass broker init`") from None
    if mqtt_workers and (bhome is None or broker_address is None):
        raise click.UsageError("--mqtt-workers needs --broker-home and --broker")
    iss = Issuer.open(open_home(home), database=database)
    iss.root_key()  # fail now, not on the first request, when the passphrase is wrong
    group = mqtt_group or iss.ingest_group()
    if node is not None and not _NODE.fullmatch(node):
        raise click.BadParameter("use 1-32 letters, digits and dashes", param_hint="--node")
    fallbacks = tuple(_address(a, "--broker-node") for a in broker_nodes)
    try:
        mqtt = (_start_mqtt(iss, bhome, broker_address, mqtt_workers, group, home, node, mqtt_version, fallbacks,
                            queue) if mqtt_workers else None)
    except BaseException:
        iss.close()
        raise
    try:
        authority = None if bhome is None else BrokerAuthority(bhome, broker_address)
        uvicorn.run(create_app(iss, authority=authority, wallet_url=wallet_url), host=host, port=port,
                    log_level=log_level, ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None, log_config=_log_config())
    finally:
        if mqtt is not None:
            mqtt.stop()
        iss.close()


def _log_config() -> dict[str, Any]:
    """uvicorn's own logging config as JSON lines (:class:`~citypass.issuer.api.logjson.JsonFormatter`), with every
    line's arguments cut to a bounded length (CapLength): the access line carries the path as the client sent it."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in config["formatters"]:  # JSON lines with level (and journald's <N> prefix under systemd)
        config["formatters"][name] = {"()": JsonFormatter}
    config.setdefault("filters", {})["cap"] = {"()": CapLength}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("cap")
    return config


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address(value: str, option: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host, int(port)


def _work_queue(ingest: str, nats_servers: tuple[str, ...], workers: int,
                mqtt_version: MqttVersion) -> WorkQueue | None:
    """The JetStream work queue ``--ingest jetstream --nats …`` asks for, or None; a usage error for options that
    do not go together."""
    if ingest == "mqtt":
        if nats_servers:
            raise click.UsageError("--nats is for --ingest jetstream")
        return None
    if not nats_servers:
        raise click.UsageError("--ingest jetstream needs --nats URL[,URL…] (the cluster's NATS client ports)")
    if not workers:
        raise click.UsageError("--ingest jetstream needs --mqtt-workers N (the workers that take the queue)")
    if mqtt_version != "3.1.1":
        raise click.UsageError("--ingest jetstream runs on a NATS cluster, whose MQTT is 3.1.1: "
                               "add --mqtt-version 3.1.1")
    try:
        return WorkQueue(parse_servers(nats_servers))
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="--nats") from None


def _start_mqtt(iss: Issuer, bhome: BrokerHome | None, address: str | None, workers: int, group: str,
                home: Path, node: str | None, mqtt_version: MqttVersion = "5",
                fallbacks: tuple[tuple[str, int], ...] = (), queue: WorkQueue | None = None) -> IssuerSync:
    """Enrol the issuer's MQTT identities — made at the first start, the same key and certificate at every
    later one (renewed when due) — and start the sync beside the API."""
    assert bhome is not None and address is not None
    host, _, port = address.rpartition(":")

    def endpoint_for(cn: str) -> Endpoint:
        return Endpoint(host, int(port), tls=bhome.service_files(cn, home / "mqtt" / cn), fallbacks=fallbacks,
                        mqtt_version=mqtt_version)

    publisher = "issuer" if node is None else f"issuer-{node}"
    if queue is not None:  # the workers take the NATS cluster's work queue; nats-py is needed only then
        from citypass.sync.ingest_queue import QueueWorker

        return IssuerSync(iss, endpoint_for, workers=workers, publisher_id=publisher,
                          worker_prefix=f"{publisher}-ingest-", subscription="queue",
                          make_worker=lambda cn, endpoint: QueueWorker(iss, endpoint, cn, queue)).start()
    return IssuerSync(iss, endpoint_for, workers=workers, group=group, publisher_id=publisher,
                      worker_prefix=f"{publisher}-ingest-",
                      subscription="plain" if mqtt_version == "3.1.1" else "shared").start()
