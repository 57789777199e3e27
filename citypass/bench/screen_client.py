"""A screen's connection, for ``citypass bench gate --screen-client``: reads ``/screen/events`` like the kiosk
browser does (one HTTP connection, server-sent events) and, when the stream ends, prints what it received as
JSON. Run as ``python -m citypass.bench.screen_client URL`` in a process of its own, as a browser would be."""

from __future__ import annotations

import json
import sys
import urllib.request


def main(url: str) -> None:
    counts: dict[str, int] = {}
    with urllib.request.urlopen(url, timeout=600) as stream:
        for raw in stream:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
                counts[name] = counts.get(name, 0) + 1
    print(json.dumps({"events": counts}))


if __name__ == "__main__":
    main(sys.argv[1])
