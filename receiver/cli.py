"""The ``relay`` command: worker, subscribers, deliveries, reconcile, db (submit, models and
accounts are in :mod:`receiver.cli_submit`).

Each command builds its own :class:`~receiver.settings.Settings` and engine from the
environment; output meant for programs is JSON on stdout, progress goes to stderr.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from receiver import presenters, services
from receiver.clock import utcnow
from receiver.logs import configure_logging
from receiver.runtime import Runtime, build_runtime
from receiver.settings import ConfigError, Settings, load_settings
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` as a timedelta.

    :raises click.BadParameter:
    """
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration such as 30m, 2h or 1d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT[(unit or "s").lower()])


def parse_since(value: str, now: datetime) -> datetime:
    """An ISO-8601 time (with zone; a bare date means midnight UTC) or a duration ago."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return now - parse_duration(value)
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a zone, e.g. {value}Z")
    return parsed


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


class Context:
    """Lazily built settings and runtime, shared by a command's sub-steps."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._runtime: Runtime | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except ConfigError as exc:
                _fail(str(exc), 2)
            # Commands print JSON on stdout; their logs go to stderr, warnings and worse only.
            configure_logging(self._settings.log_format, "WARNING", stream=sys.stderr)
        return self._settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = build_runtime(self.settings)
        return self._runtime


pass_ctx = click.make_pass_decorator(Context, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runway-relay", prog_name="relay")
def main() -> None:
    """runway-relay: submit Runway video tasks through useapi.net and fan their callbacks
    out to your subscribers as signed Standard Webhooks, with no polling.

    Configuration comes from the environment (SECRET_KEY, DATABASE_URL, USEAPI_TOKEN,
    PUBLIC_BASE_URL, …; see the README). The web process is
    `gunicorn 'receiver:create_app()'`.
    """


# -- db -------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="target revision")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Apply the migrations up to REVISION. Safe to run on every release (the Procfile's
    release line): a schema at head is left as it is."""
    from receiver.store.migrate import upgrade

    url = ctx.settings.effective_database_url
    upgrade(url, revision)
    click.echo(f"database at {revision}: {_safe_url(url)}", err=True)


@db.command("current")
@pass_ctx
def db_current(ctx: Context) -> None:
    """Print the schema revision of the database."""
    from receiver.store.migrate import current_revision

    click.echo(current_revision(ctx.settings.effective_database_url) or "(empty database)")


def _pool_limits(engine: Any) -> str:
    """``size+overflow`` of the engine's connection pool, as it was built."""
    pool = engine.pool
    return f"{pool.size()}+{getattr(pool, '_max_overflow', 0)}"


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- worker ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    help="parallel sends (default: DELIVERY_CONCURRENCY)",
)
@pass_ctx
def worker(ctx: Context, concurrency: int | None) -> None:
    """Deliver events to subscribers until SIGTERM or Ctrl-C.

    Claims due deliveries under a lease, signs and POSTs them, retries on the
    DELIVERY_RETRY_SCHEDULE and keeps dead letters. On SIGTERM it stops claiming, finishes the
    attempts in flight (each bounded by DELIVERY_TIMEOUT_SECONDS) and exits.
    """
    from receiver.artifacts import copier_config, start_copier
    from receiver.delivery.worker import Worker, WorkerConfig

    settings = ctx.settings
    configure_logging(settings.log_format, settings.log_level)  # a long-running process: stdout
    config = WorkerConfig(
        retry_schedule=tuple(settings.delivery_retry_schedule),
        timeout=settings.delivery_timeout_seconds,
        concurrency=concurrency or settings.delivery_concurrency,
        allow_private=settings.allow_private_urls,
        disable_after=settings.subscriber_disable_after_seconds,
        retention_days=settings.retention_days,
        purge_interval=settings.retention_purge_interval_seconds,
        artifact_store=settings.artifact_store,
        artifact_s3_endpoint_url=settings.artifact_s3_endpoint_url,
    )
    # The loop holds a pooled connection (senders never touch the database), the retention
    # purge and the ARTIFACT_STORE copier one each while they work, from a pool of
    # DB_POOL_SIZE + DB_MAX_OVERFLOW like every process; LISTEN takes one more on PostgreSQL.
    rt = ctx.runtime
    the_worker = Worker(rt.engine, config)
    if settings.worker_metrics_port:
        from receiver.metrics import WorkerMetricsServer

        if not settings.admin_token:
            _fail("WORKER_METRICS_PORT needs ADMIN_TOKEN (the scrape's bearer token)")
        host, port = settings.worker_metrics_host, settings.worker_metrics_port
        WorkerMetricsServer(host, port, settings.admin_token).start()
        click.echo(f"worker metrics on {host}:{port}/metrics", err=True)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        the_worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    copier = start_copier(rt.engine, copier_config(settings))  # ARTIFACT_STORE, else None
    click.echo(
        f"relay worker {the_worker.name}: {config.concurrency} senders, "
        f"timeout {config.timeout:g}s, database {_safe_url(settings.effective_database_url)} "
        f"(pool {_pool_limits(rt.engine)})",
        err=True,
    )
    the_worker.run()
    if copier is not None:
        copier.stop()


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
    _emit(result.to_json())
    if not result.ok:
        sys.exit(1)


@subscribers.command("list")
@pass_ctx
def subscribers_list(ctx: Context) -> None:
    """List subscribers with their delivery counts."""
    with UnitOfWork(ctx.runtime.engine, read_only=True) as uow:
        subs = uow.repo.list_subscribers()
        stats = uow.repo.subscriber_stats()
    _emit([presenters.subscriber_json(s, stats=stats.get(s.id, {})) for s in subs])


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
            "previous_secret_expires_at": presenters.iso(sub.previous_secret_expires_at),
        }
    )


@subscribers.command("enable")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_enable(ctx: Context, subscriber_id: str) -> None:
    """Enable a subscriber again (clears its failure streak)."""
    sub = _service_call(
        services.set_subscriber_enabled, ctx.runtime.engine, subscriber_id, True, utcnow()
    )
    _emit(presenters.subscriber_json(sub))


@subscribers.command("disable")
@click.argument("subscriber_id")
@pass_ctx
def subscribers_disable(ctx: Context, subscriber_id: str) -> None:
    """Stop delivering to a subscriber (its deliveries wait until it is enabled)."""
    sub = _service_call(
        services.set_subscriber_enabled, ctx.runtime.engine, subscriber_id, False, utcnow()
    )
    _emit(presenters.subscriber_json(sub))


# -- deliveries -----------------------------------------------------------------------------


@main.group()
def deliveries() -> None:
    """Deliveries: list, inspect, retry, recover dead letters."""


@deliveries.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "succeeded", "failed", "cancelled"]),
    help="only deliveries in this state (failed: the dead letters)",
)
@click.option("--subscriber", "subscriber_id", help="only this subscriber's")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="at most this many deliveries",
)
@pass_ctx
def deliveries_list(
    ctx: Context, status: str | None, subscriber_id: str | None, limit: int
) -> None:
    """List deliveries, newest first (--status failed: the dead letters)."""
    with UnitOfWork(ctx.runtime.engine, read_only=True) as uow:
        items = uow.repo.list_deliveries(status=status, subscriber_id=subscriber_id, limit=limit)
    _emit([presenters.delivery_json(d) for d in items])


@deliveries.command("show")
@click.argument("delivery_id")
@pass_ctx
def deliveries_show(ctx: Context, delivery_id: str) -> None:
    """One delivery with its attempt log."""
    with UnitOfWork(ctx.runtime.engine, read_only=True) as uow:
        delivery = uow.repo.get_delivery(delivery_id)
        if delivery is None:
            _fail(f"no delivery {delivery_id}")
        attempts = uow.repo.list_attempts(delivery_id)
    _emit(presenters.delivery_json(delivery, attempts=attempts))


@deliveries.command("retry")
@click.argument("delivery_id")
@pass_ctx
def deliveries_retry(ctx: Context, delivery_id: str) -> None:
    """Send one finished delivery again now, with the same webhook-id."""
    delivery = _service_call(services.retry_delivery, ctx.runtime.engine, delivery_id, utcnow())
    _emit(presenters.delivery_json(delivery))


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
    _emit({"requeued": count, "since": presenters.iso(when)})


# -- purge ----------------------------------------------------------------------------------


@main.command()
@click.option("--dry-run", is_flag=True, help="count what would be removed; remove nothing")
@pass_ctx
def purge(ctx: Context, dry_run: bool) -> None:
    """Remove finished work older than RETENTION_DAYS: finished deliveries and their attempts,
    events, callbacks and jobs of finished tasks, refused callbacks, idempotency keys, the
    ARTIFACT_STORE copies of removed events, and expired dashboard sessions. Never a pending
    delivery or a task still running. Prints the rows removed per table as JSON. relay worker
    does the same every RETENTION_PURGE_INTERVAL_SECONDS, in small batches."""
    from receiver.store import retention

    settings = ctx.settings
    cutoff = retention.cutoff_for(settings.retention_days)
    engine = ctx.runtime.engine
    if dry_run:
        counts = retention.count(engine, cutoff)
    else:
        counts = retention.purge(
            engine,
            cutoff,
            artifact_store=settings.artifact_store,
            s3_endpoint_url=settings.artifact_s3_endpoint_url,
        )
    _emit(
        {
            "dry_run": dry_run,
            "retention_days": settings.retention_days,
            "cutoff": presenters.iso(cutoff),
            "would_remove" if dry_run else "removed": counts,
        }
    )


# -- reconcile ------------------------------------------------------------------------------


@main.command()
@click.option(
    "--older-than", required=True, help="check jobs with no callback for this long (30m, 2h, 1d)"
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10000),
    default=500,
    show_default=True,
    help="check at most this many jobs, the oldest first",
)
@pass_ctx
def reconcile(ctx: Context, older_than: str, limit: int) -> None:
    """One pass of the safety net for a lost callback: ask the vendor, once, about each live
    job that has had no callback for longer than --older-than, and apply what it says as if
    it were a callback. Meant for a scheduler (a PaaS cron), never a loop."""
    rt = ctx.runtime
    cutoff = utcnow() - parse_duration(older_than)
    try:
        client = rt.vendor_client()
    except ConfigError as exc:
        _fail(str(exc), 2)
    with client:
        results = services.reconcile(
            rt.engine,
            client,
            cutoff,
            utcnow,
            limit=limit,
            hold_succeeded=bool(rt.settings.artifact_store),
            allow_http_artifacts=rt.settings.allow_private_urls,
        )
    for item in results:
        click.echo(json.dumps(item), err=False)
    click.echo(f"reconciled {len(results)} job(s)", err=True)


# `relay submit`, `relay models`, `relay accounts` register themselves on `main`.
from receiver import cli_submit  # noqa: E402,F401


def run() -> None:  # pragma: no cover - console entry for `python -m receiver.cli`
    main()


if __name__ == "__main__":  # pragma: no cover
    run()


__all__ = ["main", "parse_duration", "parse_since", "Path"]
