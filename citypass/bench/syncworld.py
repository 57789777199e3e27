"""A sync world for `citypass bench sync` and the tests: a real Mosquitto, a real issuer home, real gate ledgers.

:class:`SyncWorld` enrols gates (site 1) and issuer identities with the broker's CA, registers the gates
with the issuer, and gives each gate a ledger file with the issuer's snapshot installed.
:func:`fill_outbox` puts taps into a gate's outbox fast (one transaction through
:meth:`~citypass.gate.ledger.GateLedger.append_events`, rows exactly as the gate writes them), so a week
offline is seconds to set up. It composes the gate, the issuer and the broker, so it lives at the top, with
the benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from citypass.credential.keys import VerifyKey
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.outbox import new_id, read_backlog
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import Device
from citypass.issuer.service import Issuer
from citypass.sync.broker import Broker
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.home import BrokerHome

SITES = (("west-lake", "scenic"), ("lingyin", "scenic"), ("zhejiang-museum", "museum"))
ISSUER_IDS = ("issuer", "issuer-ingest-1", "issuer-ingest-2", "issuer-ingest-3", "issuer-ingest-4")


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class SyncWorld:
    def __init__(self, path: Path, gates: tuple[str, ...] = ("gate-a", "gate-b")) -> None:
        self.path = path
        self.now = int(time.time()) - 60
        self.home = BrokerHome(path / "broker").init()
        self.files: dict[str, ClientFiles] = {}
        for gate in gates:
            self.files[gate] = self.home.add_device_with_key(gate, 1, path / "keys")
        for cn in ISSUER_IDS:
            files = self.home.add_service(cn, out_dir=path / "keys")
            assert isinstance(files, ClientFiles)
            self.files[cn] = files
        self.broker = Broker(self.home).start()
        self.issuer = Issuer.init(IssuerHome(path / "issuer"), SITES, now=self.now)
        for gate in gates:
            self.issuer.store.add_device(Device(gate, 1, "entry", "test gate", "enrolled", self.now))

    @property
    def root(self) -> VerifyKey:
        return self.issuer.root_key().public

    def endpoint(self, cn: str) -> Endpoint:
        return Endpoint(self.broker.host, self.broker.port, tls=self.files[cn], min_backoff_s=1, max_backoff_s=2)

    def gate_ledger(self, gate: str) -> Path:
        """The gate's ledger file, created with the issuer's current snapshot on first use."""
        return seeded_gate_ledger(self.path, gate, self.issuer, self.root)

    def close(self) -> None:
        self.broker.kill()
        self.issuer.close()


def seeded_gate_ledger(folder: Path, gate: str, issuer: Issuer, root: VerifyKey) -> Path:
    """``folder/<gate>.sqlite3``: a gate ledger at site 1 (entry), created with ``issuer``'s current snapshot the
    first time it is asked for."""
    path = folder / f"{gate}.sqlite3"
    if not path.exists():
        with GateLedger.open(path, root=root) as ledger:
            ledger.load_snapshot(issuer.export(int(time.time())))
            ledger.set_identity(gate, 1, Direction.ENTRY)
    return path


def fill_outbox(path: Path, gate: str, count: int, *, start: int = 0) -> list[str]:
    """Append ``count`` tap events for ``gate`` to the outbox of the ledger at ``path``; their tap ids."""
    at = int(time.time())
    events, tap_ids = [], []
    for i in range(start, start + count):
        # UUIDv7, as the gate makes them: time-ordered, so the issuer's indexes grow at the right edge.
        tap_id = new_id(at * 1000 + i)
        fields = {"gate_id": gate, "site": 1, "direction": "entry", "decision": "allow", "reason": None,
                  "flags": [], "credential_id": f"{i:016x}", "product": 1, "persons": 1, "kind": "entry",
                  "presentation_id": None, "at": at, "stages": {"decided": float(at)}}
        events.append(("tap", tap_id, fields, at, at * 1000 + i))
        tap_ids.append(tap_id)
    with GateLedger.open(path) as ledger:
        ledger.append_events(events)
    return tap_ids


def backlog(path: Path) -> int:
    """Outbox rows not yet acknowledged, read without taking any lock."""
    return read_backlog(path)
