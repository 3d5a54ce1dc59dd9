"""The dashboard's template filters: times, durations, JSON, percentages, safe links."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from receiver import times
from receiver.web.dashboard.blueprint import bp


@bp.app_template_filter("utc_time")
def utc_time(value: datetime | None) -> Markup:
    """A ``<time>`` element: UTC in the markup, the viewer's zone after our script runs, UTC
    on hover. An em dash for None."""
    if value is None:
        return Markup("&mdash;")
    value = value.astimezone(UTC)
    iso = times.format_time(value) or ""
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{0}" title="{1}" data-local>{1}</time>').format(
        escape(iso), escape(text)
    )


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """``950 ms``, ``42 s``, ``3 min 12 s``, ``5 h 03 min``, ``2 d 4 h``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


@bp.app_template_filter("pretty_json")
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@bp.app_template_filter("percent")
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


@bp.app_template_filter("safe_link")
def safe_link(url: Any) -> str | None:
    """``url`` when it is an absolute http(s) URL (a vendor body is not trusted), else None."""
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) < 4096:
        return url
    return None
