"""``relay subscribers`` and ``relay deliveries``: the operator's commands over webhook
subscribers and their deliveries (list, inspect, retry, recover dead letters). Registered on
:data:`receiver.cli.main`; they call the same functions of :mod:`receiver.services` (to change)
and :mod:`receiver.views` (to read) as the API and the dashboard, and print the API's JSON
shapes (:mod:`receiver.views.schemas`).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import BaseModel

from receiver import services, times, views
from receiver.cli import Context, _emit, _fail, limit_option, main, parse_since, pass_ctx
from receiver.clock import utcnow
from receiver.domain.statuses import DELIVERY_STATUSES
from receiver.views.schemas import Delivery, Subscriber, WebhookTest

# -- subscribers ----------------------------------------------------------------------------


@main.group()
def subscribers() -> None:
    """Webhook subscribers (endpoints)."""


def _event_list(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """``--events a,b`` and ``--events a --events b`` alike: the types, in order, once each.

    :raises click.BadParameter: an unknown type (the message lists the known ones).
    """
    from receiver.domain.events import EVENT_TYPES

    types = [t.strip() for value in values for t in value.split(",") if t.strip()]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise click.BadParameter(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    return list(dict.fromkeys(types))


@subscribers.command("add")
@click.argument("url")
@click.option(
    "--events",
    "events",
    multiple=True,
    callback=_event_list,
    metavar="TYPE[,TYPE…]",
    help="event types to receive: task.progress, task.succeeded, task.failed, "
    "subscriber.disabled; comma-separated or repeated (default: task.succeeded and "
    "task.failed)",
)
@click.option("--description", help="a note for operators")
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 256),
    help="this subscriber's cap on concurrent deliveries (default: SUBSCRIBER_MAX_IN_FLIGHT)",
)
@pass_ctx
def subscribers_add(
    ctx: Context,
    url: str,
    events: list[str],
    description: str | None,
    max_in_flight: int | None,
) -> None:
    """Register URL; prints its id and its whsec_ secret (shown this once)."""
    rt = ctx.runtime
    try:
        sub = services.create_subscriber(
            rt.engine,
            url=url,
            event_types=list(events) or None,
            description=description,
            max_in_flight=max_in_flight or rt.settings.subscriber_max_in_flight,
            allow_private=rt.settings.allow_private_urls,
            now=utcnow(),
        )
    except services.ServiceError as exc:
        _fail(str(exc), 2)
    _emit({"id": sub.id, "url": sub.url, "event_types": sub.event_types, "secret": sub.secret})


@subscribers.command("test")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_test(ctx: Context, subscriber_id: str) -> None:
    """Send one signed webhook.test event to a subscriber now and print its answer (status
    code, duration, body excerpt, outcome) as JSON. Sent even when the subscriber is disabled;
    nothing is stored. Exit status 1 when the answer is not a 2xx."""
    from receiver.delivery.operational import send_test_event

    rt = ctx.runtime
    result = _service_call(
        send_test_event,
        rt.engine,
        subscriber_id,
        timeout=rt.settings.delivery_timeout_seconds,
        allow_private=rt.settings.allow_private_urls,
        now=utcnow(),
    )
    _emit_model(WebhookTest.model_validate(result.to_json()))
    if not result.ok:
        sys.exit(1)


@subscribers.command("list")
@pass_ctx
def subscribers_list(ctx: Context) -> None:
    """List subscribers with their delivery counts."""
    _emit([s.model_dump(mode="json") for s in views.subscribers(ctx.runtime.engine)])


def _emit_model(model: BaseModel) -> None:
    """Print ``model`` as the API answers it (indented JSON)."""
    _emit(model.model_dump(mode="json"))


def _service_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except services.ServiceError as exc:
        _fail(str(exc), 1)


@subscribers.command("remove")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_remove(ctx: Context, subscriber_id: str) -> None:
    """Remove a subscriber; its pending deliveries are cancelled."""
    _service_call(services.remove_subscriber, ctx.runtime.engine, subscriber_id, utcnow())
    click.echo(f"removed {subscriber_id}", err=True)


@subscribers.command("rotate-secret")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_rotate(ctx: Context, subscriber_id: str) -> None:
    """Issue a new secret (printed once); the old one keeps signing for the grace period."""
    rt = ctx.runtime
    sub = _service_call(
        services.rotate_secret,
        rt.engine,
        subscriber_id,
        rt.settings.secret_rotation_grace_seconds,
        utcnow(),
    )
    _emit(
        {
            "id": sub.id,
            "secret": sub.secret,
            "previous_secret_expires_at": times.format_time(sub.previous_secret_expires_at),
        }
    )


def _set_enabled(ctx: Context, subscriber_id: str, enabled: bool) -> None:
    """Enable or disable a subscriber and print it as JSON (exit status 1 when there is none)."""
    sub = _service_call(
        services.set_subscriber_enabled, ctx.runtime.engine, subscriber_id, enabled, utcnow()
    )
    _emit_model(Subscriber.of(sub))


@subscribers.command("enable")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_enable(ctx: Context, subscriber_id: str) -> None:
    """Enable a subscriber again (clears its failure streak)."""
    _set_enabled(ctx, subscriber_id, True)


@subscribers.command("disable")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_disable(ctx: Context, subscriber_id: str) -> None:
    """Stop delivering to a subscriber (its deliveries wait until it is enabled)."""
    _set_enabled(ctx, subscriber_id, False)


# -- deliveries -----------------------------------------------------------------------------


@main.group()
def deliveries() -> None:
    """Deliveries: list, inspect, retry, recover dead letters."""


@deliveries.command("list")
@click.option(
    "--status",
    type=click.Choice(DELIVERY_STATUSES),
    help="only deliveries in this state (failed: the dead letters)",
)
@click.option("--subscriber", "subscriber_id", help="only this subscriber's")
@limit_option(1000, 50, "at most this many deliveries")
@pass_ctx
def deliveries_list(
    ctx: Context, status: str | None, subscriber_id: str | None, limit: int
) -> None:
    """List deliveries, newest first (--status failed: the dead letters)."""
    filters = views.DeliveryFilter(status=status, subscriber_id=subscriber_id)
    page = views.deliveries(ctx.runtime.engine, filters, limit=limit)
    _emit([Delivery.of(d).model_dump(mode="json") for d in page.items])


@deliveries.command("show")
@click.argument("delivery_id")
@pass_ctx
def deliveries_show(ctx: Context, delivery_id: str) -> None:
    """One delivery with its attempt log."""
    _emit_model(_service_call(views.delivery, ctx.runtime.engine, delivery_id))


@deliveries.command("retry")
@click.argument("delivery_id")
@pass_ctx
def deliveries_retry(ctx: Context, delivery_id: str) -> None:
    """Send one finished delivery again now, with the same webhook-id."""
    delivery = _service_call(services.retry_delivery, ctx.runtime.engine, delivery_id, utcnow())
    _emit_model(Delivery.of(delivery))


@deliveries.command("recover")
@click.option(
    "--since", required=True, help="ISO-8601 time (2026-11-01T00:00:00Z) or a duration ago (6h)"
)
@click.option("--subscriber", "subscriber_id", help="only this subscriber's")
@pass_ctx
def deliveries_recover(ctx: Context, since: str, subscriber_id: str | None) -> None:
    """Send again every delivery that failed since T (dead letters), same webhook-ids."""
    now = utcnow()
    when = parse_since(since, now)
    count = services.recover_deliveries(ctx.runtime.engine, when, now, subscriber_id)
    _emit({"requeued": count, "since": times.format_time(when)})
