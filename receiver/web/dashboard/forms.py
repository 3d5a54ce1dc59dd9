"""Reading the dashboard's query strings and forms, and answering a form: the helpers every
page shares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol, TypeVar

from flask import flash, redirect, request
from flask.typing import ResponseReturnValue

from receiver.web.dashboard.blueprint import PAGE_SIZE, DashboardError


def safe_next(target: str | None) -> str | None:
    """A local dashboard path to return to after sign-in, or None (no open redirects)."""
    if not target or not target.startswith("/dashboard") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):
        return None
    return target


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|min|h|d|w)$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(raw: str, now: datetime) -> datetime | None:
    """``""`` (no limit), a span back from ``now`` (``30m``, ``2h``, ``7d``, ``1w``) or an
    ISO-8601 time (UTC when it names no zone).

    :raise DashboardError 400: anything else.
    """
    raw = raw.strip()
    if not raw:
        return None
    match = _DURATION.match(raw)
    if match:
        number, unit = match.groups()
        return now - timedelta(seconds=float(number) * _UNIT_SECONDS[unit.lower()])
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise DashboardError(
            400, f"'{raw[:40]}' is not a time: use e.g. 2h, 7d or 2026-11-23T18:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def choice(name: str, allowed: Iterable[str]) -> str | None:
    """The query-string argument ``name`` (None when absent or empty).

    :raise DashboardError 400: a value not in ``allowed``.
    """
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise DashboardError(400, f"unknown {name} '{value[:40]}'")
    return value


def back_to(default: str) -> str:
    """Where a form goes back to: its local ``back`` field, else ``default``."""
    return safe_next(request.form.get("back")) or default


def done(message: str, default: str) -> ResponseReturnValue:
    """A form's success: flash ``message`` and redirect (303) to :func:`back_to`."""
    flash(message, "ok")
    return redirect(back_to(default), 303)


def not_found(what: str) -> NoReturn:
    """:raise DashboardError 404: "No ``what`` here." (always)."""
    raise DashboardError(404, f"No {what} here.")


class _Row(Protocol):
    @property
    def id(self) -> Any: ...


R = TypeVar("R", bound=_Row)


def one_page(rows: Sequence[R]) -> tuple[list[R], Any]:
    """The first :data:`PAGE_SIZE` of ``rows`` (read with one more, to know whether another page
    follows) and the ``before`` id of the next page (None on the last page)."""
    page = list(rows[:PAGE_SIZE])
    return page, page[-1].id if len(rows) > PAGE_SIZE and page else None
