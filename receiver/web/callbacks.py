"""``POST /callbacks/useapi``: the vendor's callbacks.

Order of trust (SPEC §1, invariants 1–3): read the raw body, decode JSON, verify the signed
``replyRef`` (absent or bad: 401, nothing stored), validate the task object leniently, then one
transaction in :func:`receiver.services.accept_callback`; the 2xx goes out only after commit.
Every refusal is counted in the bounded ``refused_callbacks`` log (reason, source, body hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, NoReturn

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from client.models import VendorTask
from client.replyref import ReplyRefExpired, ReplyRefInvalid
from receiver import metrics, services
from receiver.clock import utcnow
from receiver.domain.tasks import Outcome
from receiver.store.uow import UnitOfWork
from receiver.web.context import runtime
from receiver.web.errors import ApiError, validation_message

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__)

#: Deepest JSON nesting accepted in a callback (the task object is 4 levels deep).
MAX_DEPTH = 32


class BadBody(ValueError):
    """The callback body is not a JSON object we can read; the message says why."""


def _reject_constant(name: str) -> NoReturn:
    raise BadBody(f"JSON constant {name} is not allowed")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a callback body: strict UTF-8, standard JSON, an object at the top, bounded depth.

    :raises BadBody: with a precise message (empty, not UTF-8, not JSON, not an object, …).
    """
    if not raw.strip():
        raise BadBody("empty body; expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadBody(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadBody("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise BadBody(f"body is not acceptable JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise BadBody(f"expected a JSON object, got {type(value).__name__}")
    if _depth(value) > MAX_DEPTH:
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        level = nxt
        if depth > MAX_DEPTH:
            break
    return depth - 1


def _refuse(
    status: int, reason: str, message: str, *, sha: str | None, size: int, job_id: str | None = None
) -> NoReturn:
    rt = runtime()
    metrics.callback_refused(reason)
    try:
        with UnitOfWork(rt.engine) as uow:
            uow.repo.add_refused(
                received_at=utcnow(),
                reason=reason,
                detail=message,
                http_status=status,
                source_ip=request.remote_addr,
                body_sha256=sha,
                body_size=size,
                job_id=job_id,
                keep=rt.settings.refused_log_size,
            )
            uow.commit()
    except Exception:  # recording a refusal must never turn it into a 500
        log.warning("could not record a refused callback", exc_info=True)
    log.warning(
        "callback refused",
        extra={
            "reason": reason,
            "status": status,
            "source_ip": request.remote_addr,
            "job_id": job_id,
        },
    )
    raise ApiError(status, reason, message)


@bp.post("/callbacks/useapi")
def useapi_callback() -> tuple[Response, int]:
    """Accept one vendor callback.

    :returns 200: ``{"accepted": true, "outcome", "job_id"}`` once durably stored (also for a
        duplicate or late callback: it is recorded and emits nothing).
    :raise 400: the body is not a JSON object or not a task object.
    :raise 401: the replyRef is missing, malformed, expired, or signed by no key of ours.
    :raise 403: a valid replyRef with another task's taskId.
    :raise 404: a valid replyRef for a job this database does not have.
    :raise 413: the body is larger than ``MAX_CONTENT_LENGTH``.
    :raise 503: the database cannot be reached (nothing half-stored; the 2xx was not given).
    """
    rt = runtime()
    raw = request.get_data(cache=False)
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
        task = VendorTask.model_validate(body)
    except ValidationError as exc:
        _refuse(
            400, "invalid_task", validation_message(exc), sha=sha, size=size, job_id=claims.job_id
        )
    confirmed = True
    try:
        if rt.settings.verify_with_vendor:
            with rt.vendor_client() as vendor:
                task, confirmed = services.confirm_terminal(rt.engine, vendor, claims, task)
        result = services.accept_callback(
            rt.engine,
            claims=claims,
            task=task,
            body=body,
            body_sha256=sha,
            source_ip=request.remote_addr,
            now=utcnow(),
            confirmed=confirmed,
        )
    except services.JobNotFound:
        _refuse(
            404,
            "unknown_job",
            "replyRef names no job here",
            sha=sha,
            size=size,
            job_id=claims.job_id,
        )
    except services.TaskIdMismatch as exc:
        _refuse(403, "task_id_mismatch", str(exc), sha=sha, size=size, job_id=claims.job_id)
    metrics.callback_accepted(result.outcome.value, result.new_status, result.event_types)
    log.info(
        "callback accepted",
        extra={
            "job_id": result.job_id,
            "task_id": task.taskId,
            "status": task.status,
            "outcome": result.outcome.value,
            "events": len(result.event_ids),
        },
    )
    status = 202 if result.outcome is Outcome.UNCONFIRMED else 200
    return jsonify(accepted=True, outcome=result.outcome.value, job_id=result.job_id), status
