"""The dashboard's operator pages: subscribers, deliveries (retry, recover) and the log of
refused callbacks."""

from __future__ import annotations

from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue

from receiver import services, times, views
from receiver.clock import utcnow
from receiver.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES
from receiver.store.repositories import Subscriber
from receiver.web.context import runtime
from receiver.web.dashboard.blueprint import (
    DELIVERY_STATUSES,
    PAGE_SIZE,
    DashboardError,
    bp,
    log,
)
from receiver.web.dashboard.forms import choice, done, parse_since

# -- subscribers ----------------------------------------------------------------------------


def _subscribers_page(
    *, status: int = 200, shown: Subscriber | None = None, error: str | None = None
) -> tuple[str, int]:
    rows = [
        (row.subscriber, row.deliveries, row.success_rate)
        for row in views.subscriber_stats(runtime().engine)
    ]
    page = render_template(
        "dashboard/subscribers.html",
        page="subscribers",
        rows=rows,
        shown=shown,
        error=error,
        event_types=EVENT_TYPES,
        default_types=DEFAULT_EVENT_TYPES,
        form=request.form if error else {},
    )
    return page, status


@bp.get("/subscribers")
def subscribers() -> tuple[str, int]:
    """Subscribers with their success rate and last error; add, disable, rotate, remove."""
    return _subscribers_page()


@bp.post("/subscribers")
def add_subscriber() -> tuple[str, int]:
    """Register a subscriber; the page shows its secret this once.

    :raise 422: the URL or an option is refused (the form comes back with the reason).
    """
    rt = runtime()
    description = request.form.get("description", "").strip()[:500] or None
    try:
        sub = services.create_subscriber(
            rt.engine,
            url=request.form.get("url", "").strip(),
            event_types=request.form.getlist("event_types") or None,
            description=description,
            max_in_flight=rt.settings.subscriber_max_in_flight,
            allow_private=rt.settings.allow_private_urls,
            now=utcnow(),
        )
    except services.InvalidSubscriber as exc:
        return _subscribers_page(status=422, error=str(exc))
    log.info("subscriber added from the dashboard", extra={"subscriber_id": sub.id})
    return _subscribers_page(shown=sub)


@bp.post("/subscribers/<subscriber_id>/rotate-secret")
def rotate_secret(subscriber_id: str) -> tuple[str, int]:
    """New secret, shown this once; the old one keeps signing beside it for the grace period.

    :raise 404: no such subscriber.
    """
    rt = runtime()
    sub = services.rotate_secret(
        rt.engine, subscriber_id, rt.settings.secret_rotation_grace_seconds, utcnow()
    )
    log.info("subscriber secret rotated from the dashboard", extra={"subscriber_id": sub.id})
    return _subscribers_page(shown=sub)


@bp.post("/subscribers/<subscriber_id>/disable")
def disable_subscriber(subscriber_id: str) -> ResponseReturnValue:
    services.set_subscriber_enabled(runtime().engine, subscriber_id, False, utcnow())
    return done(f"Subscriber {subscriber_id} disabled.", url_for("dashboard.subscribers"))


@bp.post("/subscribers/<subscriber_id>/enable")
def enable_subscriber(subscriber_id: str) -> ResponseReturnValue:
    services.set_subscriber_enabled(runtime().engine, subscriber_id, True, utcnow())
    return done(f"Subscriber {subscriber_id} enabled.", url_for("dashboard.subscribers"))


@bp.post("/subscribers/<subscriber_id>/remove")
def remove_subscriber(subscriber_id: str) -> ResponseReturnValue:
    """Remove it (kept as history) and cancel its pending deliveries. :raise 404:"""
    services.remove_subscriber(runtime().engine, subscriber_id, utcnow())
    return done(f"Subscriber {subscriber_id} removed.", url_for("dashboard.subscribers"))


# -- deliveries -----------------------------------------------------------------------------


@bp.get("/deliveries")
def deliveries() -> str:
    """Deliveries by status (failed ones first), each with its last attempt."""
    status = choice("status", (*DELIVERY_STATUSES, "all")) or "failed"
    before = request.args.get("before") or None
    board = views.delivery_board(
        runtime().engine,
        views.DeliveryFilter(status=None if status == "all" else status),
        before=before,
        limit=PAGE_SIZE,
    )
    return render_template(
        "dashboard/deliveries.html",
        page="deliveries",
        status=status,
        statuses=DELIVERY_STATUSES,
        counts=board.counts,
        items=board.page.items,
        last=board.last,
        events=board.events,
        subscribers=board.subscribers,
        active=board.active,
        before=before,
        next_before=board.page.next_before,
    )


@bp.post("/deliveries/<delivery_id>/retry")
def retry_delivery(delivery_id: str) -> ResponseReturnValue:
    """Send a finished delivery again now (same ``webhook-id``). :raise 404: :raise 409:"""
    services.retry_delivery(runtime().engine, delivery_id, utcnow())
    log.info("delivery retried from the dashboard", extra={"delivery_id": delivery_id})
    return done(
        f"Delivery {delivery_id} queued again.", url_for("dashboard.deliveries", status="pending")
    )


@bp.post("/deliveries/recover")
def recover_deliveries() -> ResponseReturnValue:
    """Send again every delivery that failed since a time (optionally of one subscriber)."""
    now = utcnow()
    since = parse_since(request.form.get("since", ""), now)
    if since is None:
        raise DashboardError(400, "Say since when, e.g. 24h or 2026-11-23T18:00Z.")
    subscriber_id = request.form.get("subscriber_id") or None
    count = services.recover_deliveries(runtime().engine, since, now, subscriber_id)
    log.info("deliveries recovered from the dashboard", extra={"requeued": count})
    noun = "delivery" if count == 1 else "deliveries"
    return done(
        f"{count} failed {noun} since {times.format_time(since)} queued again.",
        url_for("dashboard.deliveries", status="pending"),
    )


# -- refused callbacks ----------------------------------------------------------------------


@bp.get("/refused")
def refused() -> str:
    """The bounded log of refused callbacks, newest first (``before`` pages by id)."""
    raw = request.args.get("before", "")
    before = int(raw) if raw.isdigit() else None
    page = views.refused_callbacks(runtime().engine, before=before, limit=PAGE_SIZE)
    return render_template(
        "dashboard/refused.html",
        page="refused",
        items=page.items,
        before=before,
        next_before=page.next_before,
        keep=runtime().settings.refused_log_size,
    )
