"""One site of lanes, for `citypass bench site` and the tests: a central Mosquitto and issuer, a site broker
bridged to it, and N lanes with their own ledgers and sync threads. Every part is real.

::

    central broker (TLS, ACL) ◄── city link (LinkRelay: cut it) ── site broker (its bridge)
          ▲                                                            ▲   ▲        ▲
     issuer's MQTT side                                          lane-1  lane-2 … lane-N   (GateSync each;
     (publisher, ingest workers)                                 (own LinkRelay each: isolate one lane)

:class:`SiteWorld` enrols the lanes (site ``hall``, a museum with the given capacity) and the issuer's
identities with the central broker's CA, exports the site broker's home from it (bridge to the central broker
through :attr:`city_link`), registers the lanes with the issuer and installs its snapshot in each lane's
ledger. :meth:`lane` starts a lane's sync thread; :meth:`decider` opens a lane's ledger for deciding (what the
decision loop does, on the caller's thread). With ``site_broker=False`` the lanes talk to the central broker
directly (a site without a broker of its own: the lanes still share, while the city link is up).
"""

from __future__ import annotations

import time
from pathlib import Path

from citypass.bench.syncworld import ISSUER_IDS
from citypass.credential.keys import VerifyKey
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.gate.ledger import GateLedger
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Device
from citypass.issuer.service import Issuer
from citypass.sync.broker import Broker
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.gate_lanes import LaneSettings
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.home import BrokerHome
from citypass.sync.issuer_sync import IssuerSync
from citypass.sync.relay import LinkRelay
from citypass.sync.sitebroker import SiteBrokerHome

SITE_NAME = "hall"


class SiteWorld:
    def __init__(self, path: Path, lanes: int = 2, *, capacity: int | None = None, site_broker: bool = True,
                 others: tuple[str, ...] = ()) -> None:
        self.path = path
        self.now = int(time.time()) - 60
        self.gates = tuple(f"lane-{i}" for i in range(1, lanes + 1))
        self.issuer = Issuer.init(IssuerHome(path / "issuer"), [("west-lake", "scenic")], now=self.now)
        self.site = self.issuer.store.next_site_number()
        self.issuer.add_site(SiteSettings(number=self.site, name=SITE_NAME, kind=SiteKind.MUSEUM, capacity=capacity),
                             self.now)
        self.central_home = BrokerHome(path / "central").init()
        self.files: dict[str, ClientFiles] = {}
        for gate in self.gates:
            self.files[gate] = self.central_home.add_device_with_key(gate, self.site, path / "keys")
            self.issuer.store.add_device(Device(gate, self.site, "entry", "test lane", "enrolled", self.now))
        for gate in others:  # gates of another site (west-lake), for the tests of foreign lanes
            self.files[gate] = self.central_home.add_device_with_key(gate, 1, path / "keys")
        for cn in ISSUER_IDS:
            files = self.central_home.add_service(cn, out_dir=path / "keys")
            assert isinstance(files, ClientFiles)
            self.files[cn] = files
        self.central = Broker(self.central_home).start()
        self.city_link = LinkRelay(self.central.host, self.central.port).start()
        self.site_broker: Broker | None = None
        if site_broker:
            home = SiteBrokerHome.export(self.central_home, self.site, path / "site-broker",
                                         (self.city_link.listen_host, self.city_link.port))
            self.site_broker = Broker(home).start()
        self.links: dict[str, LinkRelay] = {}  # a lane's own link to its broker, made by lane(isolatable=True)
        self._syncs: list[GateSync] = []

    @property
    def root(self) -> VerifyKey:
        return self.issuer.root_key().public

    @property
    def syncs(self) -> list[GateSync]:
        """The lanes' sync threads, in the order :meth:`lane` started them."""
        return list(self._syncs)

    def broker_for_lanes(self) -> Broker:
        return self.site_broker or self.central

    def endpoint(self, cn: str) -> Endpoint:
        """A lane's way to its broker (through its own link, if it has one); the issuer's to the central one."""
        broker = self.central if cn in ISSUER_IDS else self.broker_for_lanes()
        host, port = broker.host, broker.port
        if cn in self.links:
            host, port = self.links[cn].listen_host, self.links[cn].port
        return Endpoint(host, port, tls=self.files[cn], min_backoff_s=1, max_backoff_s=1)

    def issuer_endpoint(self, cn: str) -> Endpoint:
        return Endpoint(self.central.host, self.central.port, tls=self.files[cn], min_backoff_s=1, max_backoff_s=2)

    def issuer_sync(self, workers: int = 1) -> IssuerSync:
        """Not started: ``with world.issuer_sync() as s:``."""
        return IssuerSync(self.issuer, self.issuer_endpoint, workers=workers, group="lanes-g9", tick_s=0.2,
                          poll_s=0.05)

    def ledger_path(self, gate: str) -> Path:
        """The lane's ledger file, created with the issuer's current snapshot on first use."""
        path = self.path / f"{gate}.sqlite3"
        if not path.exists():
            with GateLedger.open(path, root=self.root) as ledger:
                ledger.load_snapshot(self.issuer.export(int(time.time())))
                ledger.set_identity(gate, self.site, Direction.ENTRY)
        return path

    def decider(self, gate: str) -> GateLedger:
        """The lane's ledger as its decision loop holds it (50 ms busy timeout), for the calling thread."""
        return GateLedger.open(self.ledger_path(gate), root=self.root)

    def lane(self, gate: str, *, isolatable: bool = False, settings: LaneSettings | None = None,
             **config: object) -> GateSync:
        """Start ``gate``'s sync thread (stopped by :meth:`close`). ``isolatable``: through a link of its own."""
        if isolatable and gate not in self.links:
            broker = self.broker_for_lanes()
            self.links[gate] = LinkRelay(broker.host, broker.port).start()
        options: dict[str, object] = {"ack_timeout_s": 2.0, "status_interval_s": 0.5, "catch_up_interval_s": 0.5}
        options.update(config)
        cfg = GateSyncConfig(device_id=gate, ledger_path=self.ledger_path(gate), root=self.root, site=self.site,
                             lane_settings=settings or LaneSettings(), **options)  # type: ignore[arg-type]
        sync = GateSync(self.endpoint(gate), cfg).start()
        self._syncs.append(sync)
        return sync

    def close(self) -> None:
        for sync in self._syncs:
            sync.stop()
        for link in self.links.values():
            link.stop()
        if self.site_broker is not None:
            self.site_broker.kill()
        self.city_link.stop()
        self.central.kill()
        self.issuer.close()
