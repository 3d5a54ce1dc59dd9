"""The ``relay`` command: worker, purge, reconcile, db (submit, models and accounts are in
:mod:`receiver.cli_submit`; subscribers and deliveries in :mod:`receiver.cli_admin`).

Each command builds its own :class:`~receiver.settings.Settings` and engine from the
environment; output meant for programs is JSON on stdout, progress goes to stderr.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click

from receiver import services, times
from receiver.clock import utcnow
from receiver.logs import configure_logging
from receiver.runtime import Runtime, build_runtime
from receiver.settings import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def parse_duration(value: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` as a timedelta (receiver/times.py).

    :raises click.BadParameter: anything else.
    """
    try:
        return times.parse_span(value)
    except times.BadTime as exc:
        raise click.BadParameter(str(exc)) from None


def parse_since(value: str, now: datetime) -> datetime:
    """An ISO-8601 time with a zone (a bare date means midnight UTC) or a span back from
    ``now`` (receiver/times.py).

    :raises click.BadParameter: anything else, or a time of day without a zone.
    """
    try:
        return times.parse_since(value, now)
    except times.BadTime as exc:
        raise click.BadParameter(str(exc)) from None


def limit_option(most: int, default: int, help: str) -> Callable[[_F], _F]:
    """The ``--limit`` option of a command: 1 to ``most``, ``default`` when not given (shown
    in ``--help``), with ``help`` as its text."""
    return click.option(
        "--limit",
        type=click.IntRange(1, most),
        default=default,
        show_default=True,
        help=help,
    )


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
    """Apply stored callbacks and deliver events to subscribers until SIGTERM or Ctrl-C.

    Applies the callbacks the web stored (in batches, as soon as they are stored), which
    writes their events and deliveries; claims due deliveries under a lease, signs and POSTs
    them, retries on the DELIVERY_RETRY_SCHEDULE and keeps dead letters. On SIGTERM it stops
    claiming, finishes the attempts in flight (each bounded by DELIVERY_TIMEOUT_SECONDS) and
    exits.
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
    # DB_POOL_SIZE + DB_MAX_OVERFLOW like every process; the worker's wake-up connection takes
    # one more on PostgreSQL.
    rt = ctx.runtime
    the_worker = Worker(rt.engine, config)
    if settings.worker_metrics_port:
        from receiver.delivery.metrics_server import WorkerMetricsServer

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
            "cutoff": times.format_time(cutoff),
            "would_remove" if dry_run else "removed": counts,
        }
    )


# -- reconcile ------------------------------------------------------------------------------


@main.command()
@click.option(
    "--older-than", required=True, help="check jobs with no callback for this long (30m, 2h, 1d)"
)
@limit_option(10000, 500, "check at most this many jobs, the oldest first")
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


# `relay submit`, `relay models`, `relay accounts`, `relay subscribers` and `relay deliveries`
# register themselves on `main`.
from receiver import cli_admin, cli_submit  # noqa: E402,F401


def run() -> None:  # pragma: no cover - console entry for `python -m receiver.cli`
    # Under `python -m` this file runs as `__main__`, and the other modules register their
    # commands on `receiver.cli.main`, not on this copy's: run that one.
    from receiver.cli import main as relay

    relay()


if __name__ == "__main__":  # pragma: no cover
    run()


__all__ = ["main", "parse_duration", "parse_since", "Path"]
