"""The ``relay`` command: worker, submit, subscribers, deliveries, reconcile, db.

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
from pydantic import ValidationError

from client import REQUEST_TYPES
from client.errors import UseapiError
from client.images import ImageError
from client.replyref import ReplyRefTooLong
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
    from receiver.delivery.worker import Worker, WorkerConfig

    settings = ctx.settings
    configure_logging(settings.log_format, settings.log_level)  # a long-running process: stdout
    config = WorkerConfig(
        retry_schedule=tuple(settings.delivery_retry_schedule),
        timeout=settings.delivery_timeout_seconds,
        concurrency=concurrency or settings.delivery_concurrency,
        allow_private=settings.allow_private_urls,
        disable_after=settings.subscriber_disable_after_seconds,
    )
    # Senders hold a connection only to record an attempt, so they share a small pool; the
    # main loop takes one more. (On PostgreSQL the LISTEN connection is separate.)
    rt = build_runtime(settings, pool_size=settings.db_pool_size + 1)
    the_worker = Worker(rt.engine, config)
    if settings.worker_metrics_port:
        from receiver.metrics import WorkerMetricsServer

        if not settings.admin_token:
            _fail("WORKER_METRICS_PORT needs ADMIN_TOKEN (the scrape's bearer token)")
        WorkerMetricsServer("0.0.0.0", settings.worker_metrics_port, settings.admin_token).start()
        click.echo(f"worker metrics on :{settings.worker_metrics_port}/metrics", err=True)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        the_worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(
        f"relay worker {the_worker.name}: {config.concurrency} senders, "
        f"timeout {config.timeout:g}s, database {_safe_url(settings.effective_database_url)}",
        err=True,
    )
    the_worker.run()


# -- submit ---------------------------------------------------------------------------------


def _option_pairs(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@main.command()
@click.option("--image", "image", help="first frame: a file path, an https URL or a data: URI")
@click.option("--middle-image", help="middle frame (gen3turbo)")
@click.option("--last-image", help="last frame (gen3turbo, videos)")
@click.option("--prompt", help="text prompt")
@click.option(
    "--model",
    type=click.Choice(sorted(REQUEST_TYPES)),
    default="gen3turbo",
    show_default=True,
    help="which create endpoint to use: gen3turbo (Gen-3 Alpha Turbo, being retired by Runway), "
    "gen4turbo (Gen-4 Turbo, needs --image) or videos (the unified endpoint, needs --video-model)",
)
@click.option(
    "--video-model",
    help="--model videos only: the vendor's video model, e.g. gen4-turbo, gen4, gen4.5",
)
@click.option(
    "--seconds",
    "--duration",
    "seconds",
    type=int,
    help="video length in seconds, sent as the model's own field: seconds (gen3turbo, "
    "gen4turbo: 5 or 10) or duration (videos: 5 or 10 for gen4-turbo; the vendor checks others)",
)
@click.option(
    "--aspect-ratio",
    help="gen3turbo: landscape|portrait; gen4turbo and videos: 16:9, 9:16, 1:1, 4:3, 3:4, 21:9",
)
@click.option("--seed", type=int, help="1…4294967294")
@click.option(
    "--explore-mode/--no-explore-mode", default=None, help="relaxed generation (Unlimited plans)"
)
@click.option("--max-jobs", type=int, help="1…10")
@click.option(
    "--option", "options", multiple=True, help="any other request field, KEY=VALUE (repeatable)"
)
@click.option("--metadata", help="a JSON object of your own, echoed in every webhook")
@pass_ctx
def submit(
    ctx: Context,
    image: str | None,
    middle_image: str | None,
    last_image: str | None,
    prompt: str | None,
    model: str,
    video_model: str | None,
    seconds: int | None,
    aspect_ratio: str | None,
    seed: int | None,
    explore_mode: bool | None,
    max_jobs: int | None,
    options: tuple[str, ...],
    metadata: str | None,
) -> None:
    """Upload the image(s), record the job and create the vendor task.

    Prints one JSON object with job_id, task_id and status. The vendor then pushes progress
    to PUBLIC_BASE_URL/callbacks/useapi; nothing here polls. Exit status 1 when the vendor
    refuses (the job is kept, SUBMIT_FAILED), 2 for bad input or configuration.
    """
    settings = ctx.settings
    request_type = REQUEST_TYPES[model]
    model_fields = request_type.model_fields
    # The video length is `seconds` on gen3turbo/gen4turbo and `duration` on videos.
    length_field = "duration" if "duration" in model_fields else "seconds"
    if video_model is not None and "model" not in model_fields:
        _fail(f"--video-model is for --model videos only, not {model}", 2)
    params: dict[str, Any] = {
        "model": video_model,
        "text_prompt": prompt,
        length_field: seconds,
        "aspect_ratio": aspect_ratio,
        "seed": seed,
        "explore_mode": explore_mode,
        "max_jobs": max_jobs,
    }
    params = {k: v for k, v in params.items() if v is not None}
    params.update(_option_pairs(options))
    meta: dict[str, Any] = {}
    if metadata:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
        if not isinstance(meta, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--metadata")
    images = {
        slot: source
        for slot, source in (("first", image), ("middle", middle_image), ("last", last_image))
        if source
    }
    try:
        reply_url = settings.reply_url
        rt = ctx.runtime
        client = rt.vendor_client()
    except ConfigError as exc:
        _fail(str(exc), 2)
    click.echo(f"submitting a {model} task ({len(images)} image(s))…", err=True)
    try:
        with client:
            job = services.submit_task(
                rt.engine,
                client=client,
                signer=rt.signer,
                reply_url=reply_url,
                submission=services.Submission(
                    model=model, params=params, images=images, metadata=meta
                ),
                request_type=request_type,
                now=utcnow(),
                allow_http_images=settings.allow_private_urls,
            )
    except ValidationError as exc:
        from receiver.web.errors import validation_message

        _fail(f"invalid request: {validation_message(exc)}", 2)
    except services.InvalidSubmission as exc:
        _fail(f"invalid request: {exc}", 2)
    except (ReplyRefTooLong, ImageError) as exc:
        _fail(str(exc), 2)
    except services.SubmissionFailed as exc:
        cause: UseapiError = exc.cause
        _emit(
            {"job_id": exc.job_id, "task_id": None, "status": "SUBMIT_FAILED", "error": str(cause)}
        )
        _fail(f"{type(cause).__name__}: {cause}", 1)
    _emit({"job_id": job.id, "task_id": job.task_id, "status": job.status, "model": job.model})


# -- subscribers ----------------------------------------------------------------------------


@main.group()
def subscribers() -> None:
    """Webhook subscribers (endpoints)."""


@subscribers.command("add")
@click.argument("url")
@click.option(
    "--events",
    "events",
    multiple=True,
    type=click.Choice(["task.progress", "task.succeeded", "task.failed"]),
    help="event types to receive (repeatable; default: task.succeeded and task.failed)",
)
@click.option("--description", help="a note for operators")
@click.option("--max-in-flight", type=click.IntRange(1, 256), help="concurrent deliveries cap")
@pass_ctx
def subscribers_add(
    ctx: Context,
    url: str,
    events: tuple[str, ...],
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


@subscribers.command("list")
@pass_ctx
def subscribers_list(ctx: Context) -> None:
    """List subscribers with their delivery counts."""
    with UnitOfWork(ctx.runtime.engine, read_only=True) as uow:
        subs = uow.repo.list_subscribers()
        stats = uow.repo.subscriber_stats()
    _emit([presenters.subscriber_json(s, stats=stats.get(s.id, {})) for s in subs])


def _service_call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
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
@click.option("--status", type=click.Choice(["pending", "succeeded", "failed", "cancelled"]))
@click.option("--subscriber", "subscriber_id", help="only this subscriber's")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
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


# -- reconcile ------------------------------------------------------------------------------


@main.command()
@click.option(
    "--older-than", required=True, help="check jobs with no callback for this long (30m, 2h, 1d)"
)
@click.option("--limit", type=click.IntRange(1, 10000), default=500, show_default=True)
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
            allow_http_artifacts=rt.settings.allow_private_urls,
        )
    for item in results:
        click.echo(json.dumps(item), err=False)
    click.echo(f"reconciled {len(results)} job(s)", err=True)


def run() -> None:  # pragma: no cover - console entry for `python -m receiver.cli`
    main()


if __name__ == "__main__":  # pragma: no cover
    run()


__all__ = ["main", "parse_duration", "parse_since", "Path"]
