"""``GET /metrics`` of the web process: Prometheus text format (:mod:`receiver.metrics`)."""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from receiver.metrics import render
from receiver.web.auth import bearer_matches
from receiver.web.context import runtime
from receiver.web.errors import ApiError
from receiver.web.ratelimit import client_address, limiter, refuse_too_many

__all__ = ["bp"]

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    """Prometheus text format. :raise 401: without ``Authorization: Bearer $ADMIN_TOKEN``.
    :raise 503: when ``ADMIN_TOKEN`` is not set (nothing is exposed without it)."""
    rt = runtime()
    if not rt.settings.admin_token:
        raise ApiError(503, "admin_disabled", "metrics are off: set ADMIN_TOKEN to scrape them")
    client = client_address()
    refused = refuse_too_many(client)
    if refused is not None:
        return refused[0]
    header = request.headers.get("Authorization")
    if not bearer_matches(header, rt.settings.admin_token):
        if header:  # a wrong token presented (no header guesses nothing)
            limiter().failed(client)
        raise ApiError(
            401, "unauthorized", "a valid 'Authorization: Bearer <ADMIN_TOKEN>' is required"
        )
    response = Response(render(rt.engine), mimetype=None, content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response
