"""Logging: one JSON object per line on stdout (what PaaS log drains expect), or plain text.

Records carry their ``extra`` fields (``job_id``, ``task_id``, ``delivery_id``, ``request_id``…)
as keys. Secrets never reach a log: callers log ids and outcomes only.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

#: The id of the HTTP request being served in this context (set by the web app around each
#: request); every record logged meanwhile carries it as ``request_id``, as error bodies do.
request_id_var: ContextVar[str | None] = ContextVar("relay_request_id", default=None)

#: A safety net behind "log ids, never secrets": an extra whose key names a secret is written
#: as ``[redacted]``, and a ``whsec_`` secret inside any text is masked.
_SECRET_KEY_PARTS = (
    "secret",
    "token",
    "password",
    "authorization",
    "cookie",
    "replyref",
    "reply_ref",
)
_SECRET_TEXT = re.compile(r"whsec_[A-Za-z0-9+/=_-]{6,}")


def scrub(text: str) -> str:
    """``text`` with any ``whsec_…`` secret masked."""
    return _SECRET_TEXT.sub("whsec_[redacted]", text)


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """A record's ``extra`` fields plus the current ``request_id``, with secrets redacted."""
    out: dict[str, Any] = {}
    request_id = request_id_var.get()
    if request_id:
        out["request_id"] = request_id
    for key, value in record.__dict__.items():
        if key in _STANDARD or key.startswith("_"):
            continue
        if any(part in key.lower() for part in _SECRET_KEY_PARTS):
            value = "[redacted]"
        elif isinstance(value, str):
            value = scrub(value)
        out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``time``, ``level``, ``logger``, ``message``, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        out.update(record_extras(record))
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value …`` for local development."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record_extras(record).items())
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: "
            f"{scrub(record.getMessage())}"
        )
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
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


class LogSampler:
    """Lets through at most ``burst`` log lines (of one kind) per ``window`` seconds (a fixed
    window that starts with its first line); thread-safe. The number held back is handed to the
    next line let through, so that the log says how many it did not show.

    :param burst: lines per window.
    :param window: seconds.
    :param clock: monotonic seconds.
    """

    def __init__(
        self,
        burst: int = 20,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._started = -math.inf
        self._shown = 0
        self._held = 0

    def allow(self) -> tuple[bool, int]:
        """(whether to log this line, how many lines were held back since the last one)."""
        now = self._clock()
        with self._lock:
            if now - self._started >= self.window:
                self._started, self._shown = now, 0
            if self._shown >= self.burst:
                self._held += 1
                return False, 0
            self._shown += 1
            held, self._held = self._held, 0
            return True, held
