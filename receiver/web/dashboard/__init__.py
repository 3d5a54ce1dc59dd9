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

Views parse the form, call one function of :mod:`receiver.services` to change something or
of :mod:`receiver.views` to read (the same ones as the API and the CLI), and render.

The parts: :mod:`.blueprint` (the blueprint, its settings, the error pages), :mod:`.auth`
(sign-in, CSRF, the guard and the headers), :mod:`.forms` (reading queries and forms),
:mod:`.filters` (template filters), :mod:`.pages` (overview and tasks) and :mod:`.admin`
(subscribers, deliveries, refused callbacks).
"""

from __future__ import annotations

from flask import Flask

# Each module registers its part of the blueprint (views, guard, filters) as it is imported.
from receiver.web.dashboard import admin, auth, filters, pages  # noqa: F401
from receiver.web.dashboard.auth import DashboardSessionInterface, session_key
from receiver.web.dashboard.blueprint import SESSION_LIFETIME, bp
from receiver.web.dashboard.forms import parse_since


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


__all__ = ["bp", "init_app", "parse_since"]
