"""The one parser of times and spans that people type: ``--since`` and ``--older-than`` of the
CLI, ``since`` of the API and the dashboard.

- a time: ISO-8601 with a zone (``2026-11-23T18:00Z``, ``…+01:00``); a bare date
  (``2026-11-23``) means midnight UTC; a date and time without a zone is refused (whose
  midnight would it be?);
- a span: a number with an optional unit, ``90`` or ``90s``, ``15m``/``15min``, ``2h``,
  ``3d``, ``1w`` (case-insensitive, fractions allowed);
- ``since``: either of them, a span counting back from ``now``.

And the one way a time is written out (:func:`format_time`): ISO-8601 UTC with a ``Z``.

Pure: no clock read (``now`` is an argument), no framework; callers turn :class:`BadTime`
into their own refusal (a 400, a usage error).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadTime(ValueError):
    """The text is not a time (or span) we read; the message says what would be."""


class MissingZone(BadTime):
    """A date and time of day without a zone."""


def parse_span(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` as a timedelta (a bare number is
    seconds).

    :raises BadTime: anything else.
    """
    match = _SPAN.match(text.strip())
    if not match:
        raise BadTime(f"{text[:40]!r} is not a duration such as 30m, 2h or 1d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[(unit or "s").lower()])


def parse_time(text: str) -> datetime:
    """An ISO-8601 time with a zone, or a bare date (midnight UTC), as an aware datetime.

    :raises MissingZone: a time of day without a zone.
    :raises BadTime: not ISO-8601.
    """
    text = text.strip()
    if _BARE_DATE.match(text):
        try:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        except ValueError:
            raise BadTime(f"{text[:40]!r} is not a date") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadTime(f"{text[:40]!r} is not an ISO-8601 time, e.g. 2026-11-23T18:00Z") from None
    if parsed.tzinfo is None:
        raise MissingZone(f"{text[:40]!r} needs a zone, e.g. {text[:40]}Z")
    return parsed


def parse_since(text: str, now: datetime) -> datetime:
    """A time (:func:`parse_time`) or a span back from ``now`` (:func:`parse_span`).

    :param now: the current time, aware UTC.
    :raises BadTime: neither (the message gives an example of each).
    """
    text = text.strip()
    if _SPAN.match(text):
        return now - parse_span(text)
    try:
        return parse_time(text)
    except MissingZone:
        raise
    except BadTime:
        raise BadTime(
            f"{text[:40]!r} is not a time: use e.g. 2h, 7d or 2026-11-23T18:00Z"
        ) from None


def format_time(value: datetime | None) -> str | None:
    """``value`` as ISO-8601 with a ``Z`` for UTC (``2026-11-23T18:00:00Z``; microseconds when
    it has any), or None for None. How the API, the CLI and the dashboard write a time."""
    return value.isoformat().replace("+00:00", "Z") if value else None
