"""Reading the dashboard's query strings and forms, and answering a form: the helpers every
page shares."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NoReturn

from flask import flash, redirect, request
from flask.typing import ResponseReturnValue

from receiver import times
from receiver.web.dashboard.blueprint import DashboardError


def safe_next(target: str | None) -> str | None:
    """A local dashboard path to return to after sign-in, or None (no open redirects)."""
    if not target or not target.startswith("/dashboard") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):
        return None
    return target


def parse_since(raw: str, now: datetime) -> datetime | None:
    """``""`` (no limit), or what :func:`receiver.times.parse_since` reads: a span back from
    ``now`` (``30m``, ``2h``, ``7d``, ``1w``) or an ISO-8601 time with a zone (a bare date means
    midnight UTC).

    :raise DashboardError 400: anything else, a time without a zone included.
    """
    if not raw.strip():
        return None
    try:
        return times.parse_since(raw, now)
    except times.BadTime as exc:
        raise DashboardError(400, f"{exc}: use e.g. 2h, 7d or 2026-11-23T18:00Z") from None


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
