"""A lane in a process of its own — its decision loop and its sync thread — for tests that SIGKILL it mid-way.

    python -m tests.site_lane_worker LEDGER DEVICE SITE HOST PORT CA CERT KEY [CODES]

Starts the lane's sync thread, then decides each code in the file CODES (one per line) at this lane, 20 ms
apart, recording each tap and poking the sync thread as the daemon does. Prints ``ready`` once the sync
thread runs, ``decided N`` after each tap, and runs until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from citypass.gate.decision import decide
from citypass.gate.ledger import GateLedger
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.gate_sync import GateSync, GateSyncConfig


def main(argv: list[str]) -> None:
    ledger_path, device, site, host, port, ca, cert, key = argv[:8]
    codes = Path(argv[8]).read_text().splitlines() if len(argv) > 8 else []  # Base45 has spaces
    endpoint = Endpoint(host, int(port), tls=ClientFiles(Path(ca), Path(cert), Path(key)), max_backoff_s=1)
    config = GateSyncConfig(device_id=device, ledger_path=Path(ledger_path), site=int(site), ack_timeout_s=2.0,
                            status_interval_s=0.5)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sync = GateSync(endpoint, config).start()
    sync.ready.wait(10)
    print("ready", flush=True)
    with GateLedger.open(Path(ledger_path)) as ledger:
        ctx = ledger.context()
        for n, code in enumerate(codes, 1):
            if done.is_set():
                break
            ledger.record(decide(code, ledger, ctx, int(time.time())), ctx, {"decided": time.time()})
            sync.poke()
            print(f"decided {n}", flush=True)
            time.sleep(0.02)
    done.wait()
    sync.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
