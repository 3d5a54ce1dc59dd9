"""Every error leaves as JSON ``{"error": {"code", "message", "request_id"}}`` with its status.

Bad input is a 4xx and never a 500; a database that cannot be reached is a 503 (the caller may
retry), and anything unexpected is a logged 500 without internals in the body.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from receiver.errors import ServiceError
from receiver.logs import request_id_var
from receiver.web.schemas import ErrorDetail

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status and JSON code, raised by views."""

    def __init__(
        self, status: int, code: str, message: str, *, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


def error_response(
    status: int, code: str, message: str, extra: dict[str, Any] | None = None
) -> tuple[Response, int]:
    """The JSON error body with the request id (:class:`receiver.web.schemas.Error`; ``extra``
    adds keys beside ``error``, e.g. a failed submission's ``job``)."""
    detail = ErrorDetail(code=code, message=message, request_id=g.get("request_id"))
    body: dict[str, Any] = {"error": detail.model_dump(mode="json")}
    if extra:
        body.update(extra)
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "error response",
        extra={"status": status, "code": code, "method": request.method, "path": request.path},
    )
    return jsonify(body), status


def validation_message(exc: ValidationError) -> str:
    """A short, readable summary of pydantic errors (field: problem; …), inputs not echoed."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def register_error_handlers(app: Flask) -> None:
    """Attach the request id and the JSON error handlers to ``app``."""

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
        request_id_var.set(g.request_id)  # every log line of this request carries it

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        request_id_var.set(None)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return error_response(exc.status, exc.code, exc.message, exc.extra)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> tuple[Response, int]:
        return error_response(exc.http_status, exc.code, str(exc))

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> tuple[Response, int]:
        return error_response(422, "validation_error", validation_message(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        response, status = error_response(exc.code or 500, code, exc.description or code)
        if exc.code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response, status

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def _database_down(exc: DBAPIError) -> tuple[Response, int]:
        log.error("database error", extra={"error": type(exc.orig).__name__ if exc.orig else ""})
        response, status = error_response(
            503, "database_unavailable", "the database cannot be reached; retry later"
        )
        response.headers["Retry-After"] = "5"
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error (see the server log)")
