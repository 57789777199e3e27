"""A gate's sync in a process of its own, for tests that SIGKILL it mid-upload.

    python -m tests.sync_gate_worker LEDGER DEVICE HOST PORT CA CERT KEY [BATCH]

Prints ``ready`` once the sync thread runs; runs until SIGTERM (clean stop: ``offline`` published) or
SIGKILL (no goodbye: the broker publishes the retained Last Will).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.gate_sync import GateSync, GateSyncConfig


def main(argv: list[str]) -> None:
    ledger, device, host, port, ca, cert, key = argv[:7]
    batch = int(argv[7]) if len(argv) > 7 else 500
    endpoint = Endpoint(host, int(port), tls=ClientFiles(Path(ca), Path(cert), Path(key)), max_backoff_s=2)
    config = GateSyncConfig(device_id=device, ledger_path=Path(ledger), site=1, batch_size=batch, ack_timeout_s=2.0,
                            status_interval_s=0.5)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sync = GateSync(endpoint, config).start()
    sync.ready.wait(10)
    print("ready", flush=True)
    done.wait()
    sync.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
