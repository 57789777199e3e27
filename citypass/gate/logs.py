"""Structured logs: one JSON object per event, one line each, to stderr (journald keeps them).

The daemon writes its own events with :meth:`EventLog.event`. Everything else in the process that logs —
the camera grabber, the barrier, the MQTT sync thread — uses the standard ``logging`` module on a
``citypass.*`` logger; :func:`library_logs` routes all of those into the same event log, once, so stderr
carries one JSON object per line and nothing else. A record may name its event and fields
(``extra={"event": "sync_disconnected", "fields": {...}}``); otherwise it becomes a ``library_log`` event
with the logger's name and the message.

Every line carries its ``level``; under systemd (``JOURNAL_STREAM`` set: stderr is the journal) each line also
starts with the syslog priority in journald's ``<N>`` form (``<6>`` info, ``<4>`` warning, ``<3>`` error,
``<7>`` debug), so ``journalctl -p warning -u citypass-gate`` shows exactly the warnings and errors.

    >>> import io
    >>> out = io.StringIO()
    >>> log = EventLog(out, gate_id="wl-e1", clock=lambda: 1800000000.5)
    >>> log.event("decision", decision="allow")
    >>> out.getvalue()
    '{"ts": 1800000000.5, "gate": "wl-e1", "event": "decision", "level": "info", "decision": "allow"}\\n'
    >>> journal = io.StringIO()
    >>> EventLog(journal, gate_id="wl-e1", clock=lambda: 0.0, journald=True).event("camera", "warning", state="lost")
    >>> journal.getvalue()
    '<4>{"ts": 0.0, "gate": "wl-e1", "event": "camera", "level": "warning", "state": "lost"}\\n'
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
#: syslog priorities, as journald reads them from a ``<N>`` line prefix (sd-daemon(3)).
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3}


def under_journald() -> bool:
    """Whether stderr is systemd's journal stream (systemd sets ``JOURNAL_STREAM`` for a unit's output)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


class EventLog:
    """Thread-safe JSON-lines event log."""

    def __init__(self, stream: TextIO | None = None, *, gate_id: str = "", level: str = "info",
                 clock: Callable[[], float] = time.time, journald: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.journald = under_journald() if journald is None else journald
        self.gate_id = gate_id
        self.threshold = LEVELS[level]
        self.clock = clock
        self._lock = threading.Lock()

    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        record: dict[str, Any] = {"ts": round(self.clock(), 6), "gate": self.gate_id, "event": name, "level": level}
        record.update(fields)
        line = json.dumps(record, ensure_ascii=False, default=str)
        if self.journald:
            line = f"<{PRIORITIES[level]}>{line}"
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log stream must never stop the gate


class LibraryLogHandler(logging.Handler):
    """A ``logging`` handler that writes each record into an :class:`EventLog` as one JSON event."""

    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}.get(record.levelno,
                                                                                                  "error")
            event, fields = getattr(record, "event", None), getattr(record, "fields", None)
            if isinstance(event, str) and isinstance(fields, dict):
                self.log.event(event, level, **fields)
                return
            extra = {"exception": self.format(record).split("\n", 1)[1]} if record.exc_info else {}
            self.log.event("library_log", level, logger=record.name, message=record.getMessage(), **extra)
        except Exception:  # a log line must never stop the gate
            self.handleError(record)


@contextmanager
def library_logs(log: EventLog, logger: str = "citypass") -> Iterator[None]:
    """Route every record of ``logger`` and its children (all of the project's loggers) into ``log``, and
    nowhere else (no propagation to the root logger, so nothing is printed twice or as plain text).

        >>> import io, logging
        >>> out = io.StringIO()
        >>> with library_logs(EventLog(out, gate_id="g1", clock=lambda: 1.0)):
        ...     logging.getLogger("citypass.sync.gate_sync").warning("link down", extra={
        ...         "event": "sync_disconnected", "fields": {"reason": "keepalive"}})
        >>> out.getvalue()
        '{"ts": 1.0, "gate": "g1", "event": "sync_disconnected", "level": "warning", "reason": "keepalive"}\\n'
    """
    target = logging.getLogger(logger)
    handler = LibraryLogHandler(log)
    previous = target.propagate, target.level
    target.addHandler(handler)
    target.setLevel(log.threshold)
    target.propagate = False
    try:
        yield
    finally:
        target.removeHandler(handler)
        target.propagate, target.level = previous
