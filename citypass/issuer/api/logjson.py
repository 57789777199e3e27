"""The issuer's log lines as JSON, like the gate's (:mod:`citypass.gate.logs`): one object per line on
stderr, with ``ts``, ``level``, ``logger`` and ``msg`` — for uvicorn's access log ``client``, ``method``,
``path``, ``http`` and ``status`` instead of ``msg`` — and under systemd (``JOURNAL_STREAM`` set) journald's
``<N>`` priority prefix.

    >>> import logging
    >>> record = logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, "slow %s", ("disk",), None)
    >>> record.created = 0.0
    >>> JsonFormatter(journald=True).format(record)
    '<4>{"ts": 0.0, "level": "warning", "logger": "uvicorn.error", "msg": "slow disk"}'
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: Any, journald: bool | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.journald = bool(os.environ.get("JOURNAL_STREAM")) if journald is None else journald

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        out: dict[str, Any] = {"ts": round(record.created, 6), "level": level, "logger": record.name}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # The access line's fields, each once (no msg repeating them: a log reader counts one per request).
            out.update(zip(("client", "method", "path", "http", "status"), record.args, strict=True))
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        line = json.dumps(out, ensure_ascii=False, default=str)
        return f"<{PRIORITY.get(level, 6)}>{line}" if self.journald else line
