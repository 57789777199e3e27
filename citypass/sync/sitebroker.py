"""A site broker: a Mosquitto at one site, bridged to the central broker, so the site's lanes share their
admissions over the site's own network whether or not the city link is up.

Why a site broker and not lane-to-lane exchange (the argument is in docs/broker.md, "Site brokers"): every lane
already speaks MQTT over TLS with its device certificate, the ACL already says who may publish what, Mosquitto's
own bridge queues both ways while the central link is down, and one connection per lane (not one per pair of
lanes) keeps an eight-lane hall at eight connections. Lanes publish their taps to the site broker exactly as
they would to the central one; the bridge carries them up, and acks, signed deltas and ticks down.

A site broker home is generated from the central broker home, like the rest of the broker config::

    central = BrokerHome(Path("/srv/citypass-broker"))
    site = SiteBrokerHome.export(central, 7, Path("/srv/site-7"), ("broker.city.example", 8883),
                                 hostnames=("site7.local",))
    with Broker(site):                 # serves the site's gates; its bridge dials the central broker
        ...

``export`` again after a gate of the site is enrolled, moved or revoked: it keeps the site's keys and
certificates and rewrites the gate list, the CA's CRL and the ACL (and reloads a running site broker).

Layout (inside the site home)::

    site.json          site number, the central broker's address, the bridge's CN
    ca/ca.pem, crl.pem the device CA's certificate and CRL (copies: the CA's key stays central)
    server/            the site broker's TLS identity, issued by the central CA
    bridge/            the bridge's key (0600) and certificate: its identity at the central broker
    identities.json    the site's gates (and revoked names), from the central registry
    acl, mosquitto.conf, data/, log/, run/   as in a central broker home
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from citypass.sync.brokerconf import BridgeSettings, BrokerSettings, Identity, render_bridge, render_config
from citypass.sync.ca import CertificateAuthority
from citypass.sync.files import write_atomic
from citypass.sync.home import BrokerError, BrokerHome, bridge_cn


class SiteBrokerHome(BrokerHome):
    """The home of one site's broker (see the module). Open one with ``SiteBrokerHome(path)``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.site_file = self.path / "site.json"
        self.bridge_dir = self.path / "bridge"

    @staticmethod
    def is_site_home(path: Path) -> bool:
        return (path / "site.json").exists()

    @classmethod
    def export(cls, central: BrokerHome, site: int, path: Path, central_address: tuple[str, int], *,
               hostnames: tuple[str, ...] = ()) -> SiteBrokerHome:
        """Create or refresh the site broker home of ``site`` at ``path`` from the ``central`` broker home."""
        home = cls(path)
        for sub in ("data", "log", "run", "server", "ca"):
            (home.path / sub).mkdir(parents=True, exist_ok=True)
        cn = bridge_cn(site)
        if not (home.bridge_dir / f"{cn}.pem").exists():
            central.add_bridge(site, home.bridge_dir)  # its key is made here, in the site's home
        if not home.server_cert.exists():
            central.ca.issue_server(home.server_key, home.server_cert, hostnames)
        write_atomic(home.site_file, json.dumps({"site": site, "central_host": central_address[0],
                                                 "central_port": central_address[1], "bridge": cn},
                                                indent=1).encode())
        home.refresh(central)
        return home

    def refresh(self, central: BrokerHome) -> bool:
        """Copy the CA certificate and CRL and this site's gates from ``central``, rewrite the ACL, reload a
        running site broker. True if one was reloaded."""
        site = self.site
        ca = CertificateAuthority(central.ca_dir)
        if ca.crl_due():
            ca.write_crl()
        shutil.copyfile(central.ca_cert, self.ca_cert)
        shutil.copyfile(ca.crl_path, self.ca_dir / "crl.pem")
        registry = {i.cn: {"kind": i.kind, "site": i.site} for i in central.identities()
                    if i.kind == "revoked" or (i.kind == "device" and i.site == site)}
        write_atomic(self.registry_path, json.dumps(registry, indent=1, sort_keys=True).encode())
        return self.apply()

    # -- what a site home holds ----------------------------------------------------------------------
    def _settings_file(self) -> dict[str, object]:
        if not self.site_file.exists():
            raise BrokerError(f"{self.path} is not a site broker home: run `citypass broker site`")
        data: dict[str, object] = json.loads(self.site_file.read_text())
        return data

    @property
    def site(self) -> int:
        value = self._settings_file()["site"]
        assert isinstance(value, int)
        return value

    def bridge_settings(self) -> BridgeSettings:
        data = self._settings_file()
        host, port, cn = data["central_host"], data["central_port"], data["bridge"]
        assert isinstance(host, str) and isinstance(port, int) and isinstance(cn, str)
        return BridgeSettings(cn, self.site, host, port)

    @property
    def ca(self) -> CertificateAuthority:
        raise BrokerError("a site broker home holds no CA: enrol devices at the central broker home, then "
                          "`citypass broker site` again")

    def _check(self) -> None:
        self._settings_file()
        if not self.ca_cert.exists() or not self.server_cert.exists():
            raise BrokerError(f"{self.path} is incomplete: run `citypass broker site` again")

    def identities(self) -> list[Identity]:
        """The site's gates and the revoked names, as last copied from the central broker home."""
        self._check()
        entries = json.loads(self.registry_path.read_text()) if self.registry_path.exists() else {}
        return [Identity(cn, str(e["kind"]), e.get("site")) for cn, e in sorted(entries.items())]

    def write_config(self, settings: BrokerSettings) -> None:
        if settings.dev_insecure:
            raise BrokerError("a site broker always runs with TLS and the ACL")
        self._check()
        self.write_acl()
        for sub in ("data", "log", "run"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        text = render_config(settings, self.path) + render_bridge(self.bridge_settings(), self.path)
        write_atomic(self.config_path, text.encode())
