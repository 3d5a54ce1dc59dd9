"""``Idempotency-Key`` on ``POST /api/tasks``: :func:`idempotent` wraps the view.

Without the header the view runs as before. With it (rules in :mod:`receiver.idempotency`):

- a new key: the view runs; its answer is kept, or the key is freed when the answer says that
  nothing was created (a 4xx, or a 503 ``not_configured`` / ``vendor_unreachable``);
- the same key and body again: the first answer, with ``Idempotent-Replayed: true`` (a
  success shows the job as it is now, same ``job_id``; an error is replayed as it was);
- the same key with another body: 422 ``idempotency_key_reused``;
- the same key while its first request runs: 409 ``idempotency_key_in_flight`` with
  ``Retry-After``;
- a key that is empty, too long or not printable ASCII: 400 ``invalid_idempotency_key``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from receiver import idempotency, views
from receiver.clock import utcnow
from receiver.store.idempotency import StoredKey
from receiver.web.body import read_body
from receiver.web.context import runtime
from receiver.web.errors import error_response

log = logging.getLogger(__name__)

#: Answer header on a replayed answer (Stripe's name).
REPLAYED_HEADER = "Idempotent-Replayed"
#: Seconds a client is told to wait before retrying a key in flight.
IN_FLIGHT_RETRY_AFTER = 2
#: 5xx codes of a submission that provably created nothing (its key is freed).
_NOTHING_CREATED_5XX = frozenset({"not_configured", "vendor_unreachable"})


def _request_fingerprint() -> str:
    raw = read_body()  # the view reads the same cached bytes
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = raw  # not JSON: the view refuses it, the bytes are what was sent
    return idempotency.fingerprint(f"{request.method} {request.path}", payload)


def _replay(stored: StoredKey) -> Response:
    status = stored.response_status or 500
    if status < 300 and stored.job_id:
        job = views.job(runtime().engine, stored.job_id)
        response = jsonify(job.model_dump(mode="json"))
    else:
        response = current_app.response_class(
            stored.response_body or "{}", mimetype="application/json"
        )
    response.status_code = status
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _error_code(response: Response) -> str | None:
    body = response.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


def _finish(key: str, response: Response) -> None:
    """Keep the answer under ``key``, or free the key when nothing was created."""
    engine = runtime().engine
    status = response.status_code
    if 400 <= status < 500 or (status >= 500 and _error_code(response) in _NOTHING_CREATED_5XX):
        idempotency.release(engine, key)
        return
    body = response.get_json(silent=True)
    job_id: str | None = None
    if isinstance(body, dict):
        job = body.get("job") if status >= 300 else body
        if isinstance(job, dict) and isinstance(job.get("job_id"), str):
            job_id = job["job_id"]
    idempotency.complete(
        engine,
        key,
        job_id=job_id,
        response_status=status,
        response_body=None if status < 300 else response.get_data(as_text=True),
    )


def idempotent(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Make ``view`` honour the ``Idempotency-Key`` header (see the module's docstring)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        raw = request.headers.get(idempotency.HEADER)
        if raw is None:
            return view(*args, **kwargs)
        key = idempotency.check_key(raw)
        try:
            stored = idempotency.claim(runtime().engine, key, _request_fingerprint(), utcnow())
        except idempotency.IdempotencyKeyInFlight as exc:
            response, status = error_response(exc.http_status, exc.code, str(exc))
            response.headers["Retry-After"] = str(IN_FLIGHT_RETRY_AFTER)
            return response, status
        if stored is not None:
            return _replay(stored)
        try:
            rv = view(*args, **kwargs)
        except Exception as exc:  # answered by the app's error handlers, as without a key
            rv = current_app.handle_user_exception(exc)
        response = current_app.make_response(rv)
        try:
            _finish(key, response)
        except Exception:  # the answer stands; the key stays in flight (never a second create)
            log.exception("could not record the idempotency key's answer")
        return response

    return wrapper
