"""Logging: one JSON object per line on stdout (what PaaS log drains expect), or plain text.

Records carry their ``extra`` fields (``job_id``, ``task_id``, ``delivery_id``, ``request_id``…)
as keys. Secrets never reach a log: callers log ids and outcomes only.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``time``, ``level``, ``logger``, ``message``, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` for local development."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        )
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(fmt: str, level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send the root logger to ``stream`` (default stdout) in ``fmt`` (``json`` or ``text``).

    Idempotent: calling it again replaces our handler instead of adding one.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_relay", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler._relay = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(level)
