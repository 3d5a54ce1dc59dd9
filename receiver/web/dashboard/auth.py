"""Signing in and out, the CSRF check, the guard in front of every page and the headers on
every answer (see :mod:`receiver.web.dashboard` for the contract)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue

from receiver.clock import utcnow
from receiver.store.uow import UnitOfWork
from receiver.web.auth import bearer_matches, token_matches
from receiver.web.context import runtime
from receiver.web.dashboard.blueprint import (
    CONTENT_SECURITY_POLICY,
    CSRF_FIELD,
    LIVE_REFRESH_SECONDS,
    SESSION_LIFETIME,
    DashboardError,
    bp,
    log,
)
from receiver.web.dashboard.forms import safe_next
from receiver.web.ratelimit import client_address, limiter


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form. :raise 401: a wrong token (the form again, with a message)."""
    token = runtime().settings.admin_token
    target = safe_next(request.values.get("next"))
    if request.method == "POST":
        _check_csrf()
        client = client_address()
        _refuse_if_too_many(client)
        given = request.form.get("token", "").strip()
        if not token_matches(given, token):
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
