"""``/dashboard``: the operator's pages, rendered on the server (Jinja), behind ``ADMIN_TOKEN``.

Pages (part of the contract): ``/dashboard`` (overview), ``/dashboard/tasks``,
``/dashboard/tasks/<job_id>``, ``/dashboard/subscribers``, ``/dashboard/deliveries``,
``/dashboard/refused``. Every asset comes from this app (``/dashboard/static``: our CSS and
script, and a vendored copy of htmx for the live refresh); nothing loads from elsewhere, and
the Content-Security-Policy says so to the browser.

Signing in: the form at ``/dashboard/login`` takes ``ADMIN_TOKEN`` and sets a signed session
cookie (``relay_session``: HttpOnly, SameSite=Lax, path ``/dashboard``, Secure when the request
came over https, 12 hours). The cookie holds an HMAC of the token, never the token, so changing
``ADMIN_TOKEN`` signs everyone out. ``Authorization: Bearer $ADMIN_TOKEN`` works too, without a
cookie. Every state-changing form carries a CSRF token bound to the session; a POST without it
(or from another origin) is refused with 400/403 and changes nothing.

Views parse the form, call one function of :mod:`receiver.services` (the same ones as the API
and the CLI) and render; the counting queries are the repository's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from client.catalog import KNOWN_MODELS
from receiver import presenters, services
from receiver.clock import utcnow
from receiver.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES
from receiver.domain.tasks import TaskStatus
from receiver.metrics import bearer_matches
from receiver.store.repositories import Attempt, Delivery, Event, Job, Subscriber
from receiver.store.uow import UnitOfWork
from receiver.web.context import runtime
from receiver.web.ratelimit import client_address, limiter

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="../templates",
    static_folder="../static",
    static_url_path="/static",
)

#: Rows per page of the task, delivery and refused-callback lists.
PAGE_SIZE = 25
#: Seconds between live refreshes of the read-only parts of a page.
LIVE_REFRESH_SECONDS = 5
SESSION_LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
DELIVERY_STATUSES = ("failed", "pending", "succeeded", "cancelled")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class DashboardError(Exception):
    """A refusal shown as an HTML page with its status (and the request id)."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with ``Secure`` set whenever the request came over https
    (behind the PaaS router, ``X-Forwarded-Proto`` as trusted by ``TRUSTED_PROXY_HOPS``)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


#: What the dashboard's session key is derived from a ``SECRET_KEY`` with (HMAC-SHA256): the
#: cookie is never signed with a replyRef key itself, so the two purposes cannot mix.
SESSION_KEY_LABEL = b"runway-relay dashboard session key v1"


def session_key(secret: str) -> str:
    """The session cookie's signing key derived from one ``SECRET_KEY`` (hex, 64 characters)."""
    return hmac.new(secret.encode(), SESSION_KEY_LABEL, hashlib.sha256).hexdigest()


def init_app(app: Flask) -> None:
    """Register the dashboard on ``app``: session cookie settings, blueprint, filters.

    The cookie is signed with a key derived from the first ``SECRET_KEY`` (the others verify,
    so a key rotation keeps sessions); it carries a random session id whose server-side row
    (table ``sessions``) sign-out deletes and whose 12-hour end is fixed at sign-in.
    """
    keys = app.extensions["relay"].settings.signing_keys
    app.session_interface = DashboardSessionInterface()
    app.config.update(
        SECRET_KEY=session_key(keys[0]),
        SECRET_KEY_FALLBACKS=[session_key(k) for k in keys[1:]],
        SESSION_REFRESH_EACH_REQUEST=False,
        SESSION_COOKIE_NAME="relay_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/dashboard",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # In production the cookie is Secure whatever the request's scheme looks like: a
        # dashboard must be reached over https there.
        SESSION_COOKIE_SECURE=not app.extensions["relay"].settings.is_dev,
    )
    app.register_blueprint(bp)


# -- sign-in, CSRF and headers --------------------------------------------------------------


def _fingerprint(token: str) -> str:
    """What the session keeps to prove sign-in: an HMAC of the token under the app's key."""
    key = str(current_app.secret_key or "").encode()
    return hmac.new(key, b"dashboard-session:" + token.encode(), hashlib.sha256).hexdigest()


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _signed_in(token: str) -> bool:
    """Signed in: the cookie proves the ADMIN_TOKEN and names a session that is neither signed
    out nor past its 12 hours (one read of table ``sessions``, once per request)."""
    cached = g.get("dashboard_signed_in")
    if cached is not None:
        return bool(cached)
    held, sid = session.get("auth"), session.get("sid")
    alive = False
    if isinstance(held, str) and isinstance(sid, str) and sid:
        if hmac.compare_digest(held, _fingerprint(token)):
            with UnitOfWork(runtime().engine, read_only=True) as uow:
                alive = uow.repo.session_alive(_sid_hash(sid), utcnow())
    g.dashboard_signed_in = alive
    return alive


def _refuse_if_too_many(client: str | None) -> None:
    """:raise DashboardError 429: this address failed too often (with ``Retry-After``)."""
    wait = limiter().retry_after(client)
    if wait is not None:
        raise DashboardError(
            429,
            f"Too many failed sign-ins from your address. Try again in {wait} seconds.",
            retry_after=wait,
        )


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _check_csrf() -> None:
    """:raise DashboardError 403: a POST from another origin. :raise 400: no or wrong token."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise DashboardError(403, "This form came from another site and was refused.")
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    if not isinstance(expected, str) or not expected or not given:
        raise DashboardError(400, "The form had no CSRF token. Reload the page and try again.")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise DashboardError(400, "The form's CSRF token is wrong. Reload the page and try again.")


def _safe_next(target: str | None) -> str | None:
    """A local dashboard path to return to after sign-in, or None (no open redirects)."""
    if not target or not target.startswith("/dashboard") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):
        return None
    return target


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if request.endpoint == "dashboard.static":
        return None
    token = runtime().settings.admin_token
    if not token:
        raise DashboardError(503, "The dashboard is off: set ADMIN_TOKEN to use it.")
    if request.endpoint == "dashboard.login":
        return None
    header = request.headers.get("Authorization")
    if header is not None:
        client = client_address()
        _refuse_if_too_many(client)
        if not bearer_matches(header, token):
            limiter().failed(client)
            raise DashboardError(401, "That bearer token is not accepted.")
        g.dashboard_auth = "bearer"  # sent by a program, not by a browser on its own: no CSRF
        return None
    if not _signed_in(token):
        login = url_for("dashboard.login", next=request.full_path.rstrip("?"))
        if request.headers.get("HX-Request"):
            response = Response("", status=401)
            response.headers["HX-Redirect"] = login
            return response
        if request.method == "GET":
            return redirect(login, 303)
        raise DashboardError(401, "Sign in first.")
    g.dashboard_auth = "session"
    if request.method == "POST":
        _check_csrf()
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "csrf_field": CSRF_FIELD,
        "live_refresh": LIVE_REFRESH_SECONDS,
        "signed_in_with_cookie": g.get("dashboard_auth") == "session",
        "request_id": g.get("request_id"),
    }


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("dashboard/error.html", status=status, message=message), status


@bp.errorhandler(DashboardError)
def _dashboard_error(exc: DashboardError) -> ResponseReturnValue:
    if exc.status in (400, 401, 403, 429):
        log.info("dashboard refused a request", extra={"status": exc.status, "path": request.path})
    page, status = _error_page(exc.status, exc.message)
    if exc.retry_after is not None:
        return page, status, {"Retry-After": str(exc.retry_after)}
    return page, status


@bp.errorhandler(services.ServiceError)
def _service_error(exc: services.ServiceError) -> tuple[str, int]:
    return _error_page(exc.http_status, str(exc))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return _error_page(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(DBAPIError)
def _database_down(exc: DBAPIError) -> tuple[str, int]:
    log.error("database error", extra={"error": type(exc.orig).__name__ if exc.orig else ""})
    return _error_page(503, "The database cannot be reached right now; try again shortly.")


# -- template filters -----------------------------------------------------------------------


@bp.app_template_filter("utc_time")
def utc_time(value: datetime | None) -> Markup:
    """A ``<time>`` element: UTC in the markup, the viewer's zone after our script runs, UTC
    on hover. An em dash for None."""
    if value is None:
        return Markup("&mdash;")
    value = value.astimezone(UTC)
    iso = presenters.iso(value) or ""
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


# -- parsing --------------------------------------------------------------------------------

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


def _choice(name: str, allowed: Iterable[str]) -> str | None:
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise DashboardError(400, f"unknown {name} '{value[:40]}'")
    return value


def _back_to(default: str) -> str:
    return _safe_next(request.form.get("back")) or default


def _done(message: str, default: str) -> ResponseReturnValue:
    flash(message, "ok")
    return redirect(_back_to(default), 303)


def _not_found(what: str) -> NoReturn:
    raise DashboardError(404, f"No {what} here.")


# -- pages ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form. :raise 401: a wrong token (the form again, with a message)."""
    token = runtime().settings.admin_token
    target = _safe_next(request.values.get("next"))
    if request.method == "POST":
        _check_csrf()
        client = client_address()
        _refuse_if_too_many(client)
        given = request.form.get("token", "").strip()
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
            limiter().failed(client)
            log.warning("dashboard sign-in refused", extra={"source_ip": request.remote_addr})
            page = render_template(
                "dashboard/login.html", error="That token is not the ADMIN_TOKEN.", next=target
            )
            return page, 401
        sid, now = secrets.token_urlsafe(32), utcnow()
        with UnitOfWork(runtime().engine) as uow:
            uow.repo.add_session(_sid_hash(sid), now, now + SESSION_LIFETIME)
            uow.commit()
        session.clear()
        session.permanent = True
        session["auth"] = _fingerprint(token)
        session["sid"] = sid
        session["csrf"] = secrets.token_urlsafe(32)
        log.info("dashboard sign-in", extra={"source_ip": request.remote_addr})
        return redirect(target or url_for("dashboard.overview"), 303)
    if _signed_in(token):
        return redirect(target or url_for("dashboard.overview"), 303)
    return render_template("dashboard/login.html", error=None, next=target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out: the session's row is deleted, so its cookie is refused even if kept."""
    sid = session.get("sid")
    if isinstance(sid, str) and sid:
        with UnitOfWork(runtime().engine) as uow:
            uow.repo.end_session(_sid_hash(sid))
            uow.commit()
    session.clear()
    return redirect(url_for("dashboard.login"), 303)


@bp.get("/")
@bp.get("")  # registered first: url_for gives /dashboard
def overview() -> str:
    """Tasks by state, the last hour's callbacks, deliveries, troubled subscribers."""
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        repo = uow.repo
        tasks = repo.count_jobs_by_status()
        accepted = repo.count_callbacks_by_outcome_since(hour_ago)
        refused = repo.count_refused_since(hour_ago)
        deliveries = repo.count_deliveries_by_status()
        oldest = repo.oldest_pending_delivery()
        subscribers = repo.list_subscribers()
        recent = repo.list_jobs(limit=8)
    troubled = [s for s in subscribers if not s.enabled or s.failing_since is not None]
    return render_template(
        "dashboard/overview.html",
        page="overview",
        states=[s.value for s in TaskStatus],
        tasks=tasks,
        accepted=accepted,
        refused=refused,
        deliveries=deliveries,
        oldest_age=(now - oldest).total_seconds() if oldest else None,
        troubled=troubled,
        subscriber_count=len(subscribers),
        recent=recent,
    )


@bp.get("/tasks")
def tasks() -> str:
    """Jobs, newest first; filters ``state``, ``model``, ``since``; pages with ``before``."""
    state = _choice("state", [s.value for s in TaskStatus])
    model = _choice("model", KNOWN_MODELS)
    since_raw = request.args.get("since", "")
    since = parse_since(since_raw, utcnow())
    before = request.args.get("before") or None
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        jobs = uow.repo.list_jobs(
            status=state, model=model, since=since, before_id=before, limit=PAGE_SIZE + 1
        )
        total = uow.repo.count_jobs(status=state, model=model, since=since)
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
    filters = {k: v for k, v in (("state", state), ("model", model), ("since", since_raw)) if v}
    return render_template(
        "dashboard/tasks.html",
        page="tasks",
        jobs=jobs,
        total=total,
        states=[s.value for s in TaskStatus],
        models=list(KNOWN_MODELS),
        state=state,
        model=model,
        since=since_raw,
        before=before,
        filters=filters,
        next_before=jobs[-1].id if more and jobs else None,
    )


@bp.get("/tasks/<job_id>")
def task(job_id: str) -> str:
    """One job: its request, callbacks, events, and each delivery with its attempts.

    :raise 404: no such job.
    """
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        repo = uow.repo
        job = repo.get_job(job_id)
        if job is None:
            _not_found(f"task {job_id[:60]}")
        events = repo.list_events(job_id)
        callbacks = repo.list_callbacks(job_id)
        deliveries = repo.list_deliveries(job_id=job_id, limit=1000)
        attempts = repo.attempts_by_delivery([d.id for d in deliveries])
        subscribers = repo.subscribers_by_id(sorted({d.subscriber_id for d in deliveries}))
    by_event: dict[str, list[Delivery]] = {}
    for delivery in sorted(deliveries, key=lambda d: d.id):
        by_event.setdefault(delivery.event_id, []).append(delivery)
    return render_template(
        "dashboard/task.html",
        page="tasks",
        job=job,
        events=[(e, _event_data(e), by_event.get(e.id, [])) for e in events],
        callbacks=callbacks,
        attempts=attempts,
        subscribers=subscribers,
        videos=_videos(job),
    )


def _event_data(event: Event) -> dict[str, Any]:
    data = presenters.event_json(event).get("data")
    return data if isinstance(data, dict) else {}


def _videos(job: Job) -> list[str]:
    return [url for a in job.artifacts if (url := safe_link(a.get("url")))]


# -- subscribers ----------------------------------------------------------------------------


def _success_rate(stats: Mapping[str, int]) -> float | None:
    finished = stats.get("succeeded", 0) + stats.get("failed", 0)
    return stats.get("succeeded", 0) / finished if finished else None


def _subscribers_page(
    *, status: int = 200, shown: Subscriber | None = None, error: str | None = None
) -> tuple[str, int]:
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        subscribers = uow.repo.list_subscribers()
        stats = uow.repo.subscriber_stats()
    rows = [(s, stats.get(s.id, {}), _success_rate(stats.get(s.id, {}))) for s in subscribers]
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
    return _done(f"Subscriber {subscriber_id} disabled.", url_for("dashboard.subscribers"))


@bp.post("/subscribers/<subscriber_id>/enable")
def enable_subscriber(subscriber_id: str) -> ResponseReturnValue:
    services.set_subscriber_enabled(runtime().engine, subscriber_id, True, utcnow())
    return _done(f"Subscriber {subscriber_id} enabled.", url_for("dashboard.subscribers"))


@bp.post("/subscribers/<subscriber_id>/remove")
def remove_subscriber(subscriber_id: str) -> ResponseReturnValue:
    """Remove it (kept as history) and cancel its pending deliveries. :raise 404:"""
    services.remove_subscriber(runtime().engine, subscriber_id, utcnow())
    return _done(f"Subscriber {subscriber_id} removed.", url_for("dashboard.subscribers"))


# -- deliveries -----------------------------------------------------------------------------


@bp.get("/deliveries")
def deliveries() -> str:
    """Deliveries by status (failed ones first), each with its last attempt."""
    status = _choice("status", (*DELIVERY_STATUSES, "all")) or "failed"
    before = request.args.get("before") or None
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        repo = uow.repo
        items = repo.list_deliveries(
            status=None if status == "all" else status, before_id=before, limit=PAGE_SIZE + 1
        )
        more = len(items) > PAGE_SIZE
        items = items[:PAGE_SIZE]
        attempts = repo.attempts_by_delivery([d.id for d in items])
        events = repo.events_by_id(sorted({d.event_id for d in items}))
        subscribers = repo.subscribers_by_id(sorted({d.subscriber_id for d in items}))
        counts = repo.count_deliveries_by_status()
        active = repo.list_subscribers()
    last: dict[str, Attempt] = {k: v[-1] for k, v in attempts.items() if v}
    return render_template(
        "dashboard/deliveries.html",
        page="deliveries",
        status=status,
        statuses=DELIVERY_STATUSES,
        counts=counts,
        items=items,
        last=last,
        events=events,
        subscribers=subscribers,
        active=active,
        before=before,
        next_before=items[-1].id if more and items else None,
    )


@bp.post("/deliveries/<delivery_id>/retry")
def retry_delivery(delivery_id: str) -> ResponseReturnValue:
    """Send a finished delivery again now (same ``webhook-id``). :raise 404: :raise 409:"""
    services.retry_delivery(runtime().engine, delivery_id, utcnow())
    log.info("delivery retried from the dashboard", extra={"delivery_id": delivery_id})
    return _done(
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
    return _done(
        f"{count} failed {noun} since {presenters.iso(since)} queued again.",
        url_for("dashboard.deliveries", status="pending"),
    )


# -- refused callbacks ----------------------------------------------------------------------


@bp.get("/refused")
def refused() -> str:
    """The bounded log of refused callbacks, newest first (``before`` pages by id)."""
    raw = request.args.get("before", "")
    before = int(raw) if raw.isdigit() else None
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        items = uow.repo.list_refused(limit=PAGE_SIZE + 1, before_id=before)
    more = len(items) > PAGE_SIZE
    items = items[:PAGE_SIZE]
    return render_template(
        "dashboard/refused.html",
        page="refused",
        items=items,
        before=before,
        next_before=items[-1].id if more and items else None,
        keep=runtime().settings.refused_log_size,
    )


__all__ = ["bp", "init_app", "parse_since"]
