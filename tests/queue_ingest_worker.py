"""An issuer ingest worker on the JetStream work queue, in a process of its own, for a test that SIGKILLs it.

    python -m tests.queue_ingest_worker ISSUER_HOME CN MQTT_HOST:PORT[,…] CA CERT KEY NATS_URLS ACK_WAIT_S DELAY_S

Prints ``ready`` once its consumer is bound, then ``stored SEQ LEAF`` for each message of a fetch it has handled
(its batches stored together, its requests answered), after which it waits DELAY_S a message before it acks them: slow
enough to be killed with stored but unacknowledged batches in hand.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from nats.aio.msg import Msg

from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.ingest_queue import QueueWorker
from citypass.sync.workqueue import WorkQueue, parse_servers


class SlowWorker(QueueWorker):
    delay_s = 0.0

    def process(self, messages: list[Msg]) -> list[bool]:
        done = super().process(messages)  # a fetch's batches stored together, its requests answered
        for message in messages:
            print("stored", message.metadata.sequence.stream, message.subject.rsplit(".", 1)[-1], flush=True)
        time.sleep(self.delay_s * len(messages))  # acked together after this returns: a window to die in
        return done


def main(argv: list[str]) -> None:
    home, cn, mqtt, ca, cert, key, nats_urls, ack_wait, delay = argv[:9]
    addresses = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in mqtt.split(","))]
    endpoint = Endpoint(*addresses[0], tls=ClientFiles(Path(ca), Path(cert), Path(key)), min_backoff_s=0.5,
                        max_backoff_s=1, keepalive=5, fallbacks=tuple(addresses[1:]), mqtt_version="3.1.1")
    issuer = Issuer.open(IssuerHome(Path(home)))
    worker = SlowWorker(issuer, endpoint, cn, WorkQueue(parse_servers(nats_urls), ack_wait_s=float(ack_wait),
                                                        fetch_batch=4))
    worker.delay_s = float(delay)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    worker.start()
    print("ready", flush=True)
    done.wait()
    worker.stop()
    issuer.close()


if __name__ == "__main__":
    main(sys.argv[1:])
