"""Structured logs: one JSON object per event, one line each, to stderr (journald keeps them).

    >>> import io
    >>> out = io.StringIO()
    >>> log = EventLog(out, gate_id="wl-e1", clock=lambda: 1800000000.5)
    >>> log.event("decision", decision="allow", reason=None)
    >>> out.getvalue()
    '{"ts": 1800000000.5, "gate": "wl-e1", "event": "decision", "decision": "allow", "reason": null}\\n'
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class EventLog:
    """Thread-safe JSON-lines event log."""

    def __init__(self, stream: TextIO | None = None, *, gate_id: str = "", level: str = "info",
                 clock: Callable[[], float] = time.time) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.gate_id = gate_id
        self.threshold = LEVELS[level]
        self.clock = clock
        self._lock = threading.Lock()

    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        record: dict[str, Any] = {"ts": round(self.clock(), 6), "gate": self.gate_id, "event": name}
        if level != "info":
            record["level"] = level
        record.update(fields)
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log stream must never stop the gate
