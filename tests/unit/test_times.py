"""The one time parser (receiver.times): the merged behaviour of the CLI's, the API's and the
dashboard's former copies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from receiver.times import BadTime, MissingZone, parse_since, parse_span, parse_time

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("2 sec", 2),
        ("15m", 900),
        ("15min", 900),
        ("2H", 7200),
        ("1.5h", 5400),
        ("3d", 259200),
        ("1w", 604800),
        (" 30m ", 1800),
    ],
)
def test_spans(text: str, seconds: float) -> None:
    assert parse_span(text) == timedelta(seconds=seconds)
    assert parse_since(text, NOW) == NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "m", "-5m", "5y", "soon", "1h30m"])
def test_not_spans(text: str) -> None:
    with pytest.raises(BadTime, match="not a duration"):
        parse_span(text)


def test_times_with_a_zone() -> None:
    assert parse_time("2026-11-23T18:00Z") == datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    plus_one = parse_time("2026-11-23T19:00+01:00")
    assert plus_one.utcoffset() == timedelta(hours=1)
    assert plus_one == datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert parse_since("2026-11-23T18:00:00Z", NOW) == datetime(2026, 11, 23, 18, tzinfo=UTC)


def test_a_bare_date_is_midnight_utc() -> None:
    """As the CLI documented (its copy refused it; the dashboard's took it as UTC)."""
    assert parse_time("2026-11-23") == datetime(2026, 11, 23, tzinfo=UTC)
    assert parse_since("2026-11-23", NOW) == datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(BadTime):
        parse_time("2026-13-45")


def test_a_time_of_day_without_a_zone_is_refused() -> None:
    """The stricter of the drifted copies (the dashboard's took it as UTC)."""
    with pytest.raises(MissingZone, match="needs a zone"):
        parse_time("2026-11-23T18:00")
    with pytest.raises(MissingZone, match="needs a zone"):
        parse_since("2026-11-23T18:00", NOW)


@pytest.mark.parametrize("text", ["yesterday-ish", "sometime", "", "2026-11-23T25:00Z"])
def test_neither_time_nor_span(text: str) -> None:
    with pytest.raises(BadTime, match="is not a time"):
        parse_since(text, NOW)


def test_aware_times_keep_their_zone() -> None:
    tz = timezone(timedelta(hours=-5))
    assert parse_time("2026-11-23T13:00-05:00") == datetime(2026, 11, 23, 13, tzinfo=tz)
