"""``create_app(settings=None)``: the Flask app that gunicorn runs as ``receiver:create_app()``."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from receiver.logs import configure_logging
from receiver.runtime import Runtime, build_runtime
from receiver.settings import Settings, load_settings
from receiver.web import api, artifacts, callbacks, dashboard, health
from receiver.web import metrics as metrics_endpoint
from receiver.web.errors import register_error_handlers
from receiver.web.ratelimit import FailureLimiter
from receiver.web.slowbody import BodyDeadline


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build a new app.

    :param settings: the configuration; default: read from the environment.
    :param runtime: an existing engine and signer to share (tests); default: built here.
    :raises receiver.settings.ConfigError: a missing or invalid setting (start-up stops).
    """
    settings = settings or (runtime.settings if runtime else load_settings())
    configure_logging(settings.log_format, settings.log_level)
    # The dashboard serves its own assets under /dashboard/static; no app-wide /static.
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["relay"] = runtime or build_runtime(settings)
    app.extensions["auth_limiter"] = FailureLimiter()
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        # X-Forwarded-Host/-Port only when asked (TRUST_FORWARDED_HOST): a router that passes a
        # client's own X-Forwarded-Host on would otherwise let it choose the app's host name.
        host_hops = hops if settings.trust_forwarded_host else 0
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=host_hops, x_port=host_hops
        )
    # Outermost: a slow body is cut off before anything else runs (receiver/web/slowbody.py).
    app.wsgi_app = BodyDeadline(  # type: ignore[method-assign]
        app.wsgi_app,
        seconds=settings.body_read_timeout_seconds,
        max_bytes=settings.max_content_length,
    )
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(callbacks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(metrics_endpoint.bp)
    app.register_blueprint(artifacts.bp)  # ARTIFACT_STORE's durable copies
    dashboard.init_app(app)
    return app
