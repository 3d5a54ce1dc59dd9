"""The dashboard's blueprint, its settings, and how a refusal is shown (an HTML page with its
status and the request id)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from receiver import services
from receiver.domain.statuses import DeliveryStatus

#: One logger for the whole dashboard (its name is the package's).
log = logging.getLogger("receiver.web.dashboard")

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="../../templates",
    static_folder="../../static",
    static_url_path="/static",
)

#: Rows per page of the task, delivery and refused-callback lists.
PAGE_SIZE = 25
#: Seconds between live refreshes of the read-only parts of a page.
LIVE_REFRESH_SECONDS = 5
SESSION_LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
#: The delivery statuses in the order the dashboard offers them (dead letters first).
DELIVERY_STATUSES: tuple[str, ...] = tuple(
    s.value
    for s in (
        DeliveryStatus.FAILED,
        DeliveryStatus.PENDING,
        DeliveryStatus.SUCCEEDED,
        DeliveryStatus.CANCELLED,
    )
)

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
