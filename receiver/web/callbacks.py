"""``POST /callbacks/useapi``: the vendor's callbacks.

The ingest pipeline's first half (its second is :mod:`receiver.ingest.applier`). Order of
trust (SPEC §1, invariants 1–3): read the raw body and decode JSON (:mod:`receiver.web.body`),
verify the signed ``replyRef`` (absent or bad: 401, nothing stored), validate the task object
leniently, check the job and its binding, and store the callback as received
(:func:`receiver.services.callbacks.store_callback`, group commit); the 2xx (202) goes out only
after that commit, and ``relay worker`` applies it right after. Every refusal is counted in the
bounded ``refused_callbacks`` log (reason, source, body hash).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, NoReturn

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from client.models import VendorTask
from client.replyref import ReplyRefExpired, ReplyRefInvalid
from receiver import metrics
from receiver.clock import utcnow
from receiver.errors import JobNotFound, TaskIdMismatch
from receiver.logs import LogSampler
from receiver.services.callbacks import confirm_terminal, store_callback
from receiver.store.batch import group_commit
from receiver.web.body import BadBody, parse_json_object, read_body
from receiver.web.context import runtime
from receiver.web.errors import ApiError, validation_message

__all__ = ["bp", "check_task_fields"]

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__)

#: ``VERIFY_WITH_VENDOR``'s GET must not keep the vendor's callback waiting (it is not
#: re-sent if it fails): seconds to connect (tried twice) and to read, and no 429 retries.
#: A vendor that cannot answer in time leaves the callback unconfirmed (stored, 202).
CONFIRM_CLIENT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
    "busy_retries": 0,
}
#: The task object's fields whose JSON type SPEC §1 fixes (each may also be null), with the
#: longest string our tables keep for them.
_TASK_FIELDS: dict[str, tuple[tuple[type, ...], str, int | None]] = {
    "taskId": ((str,), "a string", 1024),
    "status": ((str,), "a string", 40),
    "progressRatio": ((str, int, float), "a number or a string", None),
    "artifacts": ((list,), "an array", None),
    "error": ((str, dict), "a string or an object", None),
}


#: Refused-callback log lines: at most this many per window and process (the metrics and the
#: refused-callback table still count every refusal exactly).
REFUSED_LOG_BURST = 20
#: The window of :data:`REFUSED_LOG_BURST`, seconds.
REFUSED_LOG_WINDOW = 10.0


def _refused_log_sampler() -> LogSampler:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sampler: LogSampler | None = app.extensions.get("refused_log_sampler")
    if sampler is None:
        sampler = app.extensions.setdefault(
            "refused_log_sampler", LogSampler(REFUSED_LOG_BURST, REFUSED_LOG_WINDOW)
        )
    return sampler


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def check_task_fields(body: dict[str, Any]) -> None:
    """Check the JSON types of the task object's core fields (``taskId``, ``status``: strings;
    ``progressRatio``: a number or a string; ``artifacts``: an array; ``error``: a string or an
    object; each may be null or absent) and the length of ``taskId`` (1024) and ``status`` (40).
    Other fields are not checked: the vendor adds fields, and they are kept as received.

    :raises BadBody: naming the field and what was expected.
    """
    for name, (types, expected, longest) in _TASK_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise BadBody(f"{name}: expected {expected} or null, got {_json_type(value)}")
        if longest is not None and isinstance(value, str) and len(value) > longest:
            raise BadBody(f"{name}: longer than {longest} characters")


def _source_ip() -> str | None:
    """The client's address (after ProxyFix), cut to the 64 characters the tables keep: an
    ``X-Forwarded-For`` beyond the trusted hops may hold anything."""
    address = request.remote_addr
    return address[:64] if address else None


def _refuse(
    status: int, reason: str, message: str, *, sha: str | None, size: int, job_id: str | None = None
) -> NoReturn:
    rt = runtime()
    metrics.callback_refused(reason)
    received_at, source_ip = utcnow(), _source_ip()
    try:
        # In the transactions of the moment (group commit): a flood of junk costs one write
        # per batch of refusals, not one per request, and good callbacks share it.
        group_commit(rt.engine).run(
            lambda repo: repo.add_refused(
                received_at=received_at,
                reason=reason,
                detail=message,
                http_status=status,
                source_ip=source_ip,
                body_sha256=sha,
                body_size=size,
                job_id=job_id[:40] if job_id else None,
                keep=rt.settings.refused_log_size,
            )
        )
    except Exception:  # recording a refusal must never turn it into a 500
        log.warning("could not record a refused callback", exc_info=True)
    show, held = _refused_log_sampler().allow()
    if show:  # sampled under a flood; the metrics above count every refusal
        log.warning(
            "callback refused",
            extra={
                "reason": reason,
                "status": status,
                "source_ip": _source_ip(),
                "job_id": job_id,
                "not_logged_before": held,
            },
        )
    raise ApiError(status, reason, message)


@bp.post("/callbacks/useapi")
def useapi_callback() -> tuple[Response, int]:
    """Accept one vendor callback: store it, answer, and let ``relay worker`` apply it.

    :returns 202: ``{"accepted": true, "outcome": "queued", "job_id", "callback_id"}`` once
        durably stored (also for a duplicate or late callback: applying it changes nothing).
        What it did to its task is its ``outcome`` once applied (``GET /api/tasks/{job_id}``).
    :raise 400: the body is not a JSON object or not a task object.
    :raise 401: the replyRef is missing, malformed, expired, or signed by no key of ours.
    :raise 403: a valid replyRef with another task's taskId, or a taskId bound to another job.
    :raise 404: a valid replyRef for a job this database does not have.
    :raise 413: the body is larger than ``MAX_CONTENT_LENGTH``.
    :raise 503: the database cannot be reached (nothing half-stored; the 2xx was not given).
    """
    rt = runtime()
    try:
        raw = read_body()
    except RequestEntityTooLarge:
        limit = rt.settings.max_content_length
        _refuse(
            413,
            "request_entity_too_large",
            f"the body is larger than {limit} bytes (MAX_CONTENT_LENGTH)",
            sha=None,
            size=request.content_length or 0,
        )
    sha = hashlib.sha256(raw).hexdigest()
    size = len(raw)
    try:
        body = parse_json_object(raw)
    except BadBody as exc:
        _refuse(400, "invalid_body", str(exc), sha=sha, size=size)
    reply_ref = body.get("replyRef")
    if reply_ref is None:
        _refuse(401, "reply_ref_missing", "replyRef is missing", sha=sha, size=size)
    try:
        claims = rt.signer.verify(
            reply_ref if isinstance(reply_ref, str) else None,
            max_age=rt.settings.reply_ref_max_age,
        )
    except ReplyRefExpired:
        _refuse(401, "reply_ref_expired", "replyRef has expired", sha=sha, size=size)
    except ReplyRefInvalid:
        _refuse(401, "reply_ref_invalid", "replyRef does not verify", sha=sha, size=size)
    try:
        check_task_fields(body)
    except BadBody as exc:
        _refuse(400, "invalid_task", str(exc), sha=sha, size=size, job_id=claims.job_id)
    try:
        task = VendorTask.model_validate(body)
    except ValidationError as exc:
        _refuse(
            400, "invalid_task", validation_message(exc), sha=sha, size=size, job_id=claims.job_id
        )
    confirmed, apply_task = True, None
    try:
        if rt.settings.verify_with_vendor:
            with rt.vendor_client(**CONFIRM_CLIENT_OPTIONS) as vendor:
                confirmed_task, confirmed = confirm_terminal(rt.engine, vendor, claims, task)
            if confirmed_task is not task:
                apply_task = confirmed_task.model_dump(mode="json", exclude_none=True)
        stored = store_callback(
            rt.engine,
            claims=claims,
            task=task,
            body=body,
            body_sha256=sha,
            source_ip=_source_ip(),
            now=utcnow(),
            confirmed=confirmed,
            apply_task=apply_task,
        )
    except JobNotFound:
        _refuse(
            404,
            "unknown_job",
            "replyRef names no job here",
            sha=sha,
            size=size,
            job_id=claims.job_id,
        )
    except TaskIdMismatch as exc:
        _refuse(403, "task_id_mismatch", str(exc), sha=sha, size=size, job_id=claims.job_id)
    metrics.callback_stored()
    log.info(
        "callback stored",
        extra={
            "job_id": stored.job_id,
            "callback_id": stored.callback_id,
            "task_id": task.taskId,
            "status": task.status,
            "confirmed": confirmed,
        },
    )
    return (
        jsonify(
            accepted=True,
            outcome="queued",
            job_id=stored.job_id,
            callback_id=stored.callback_id,
        ),
        202,
    )
