"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database answers)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from receiver.store.engine import ping
from receiver.web.context import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process runs."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when ``SELECT 1`` succeeds on the database, else 503."""
    try:
        ping(runtime().engine)
    except Exception as exc:  # any driver error means "not ready"
        return jsonify(status="unavailable", error=type(exc).__name__), 503
    return jsonify(status="ok"), 200
