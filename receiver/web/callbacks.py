"""``POST /callbacks/useapi``: the vendor's callbacks.

Order of trust (SPEC §1, invariants 1–3): read the raw body, decode JSON, verify the signed
``replyRef`` (absent or bad: 401, nothing stored), validate the task object leniently, then one
transaction in :func:`receiver.services.callbacks.accept_callback`; the 2xx goes out only
after commit.
Every refusal is counted in the bounded ``refused_callbacks`` log (reason, source, body hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from typing import Any, NoReturn

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from client.models import VendorTask
from client.replyref import ReplyRefExpired, ReplyRefInvalid
from receiver import metrics
from receiver.clock import utcnow
from receiver.domain.tasks import Outcome
from receiver.errors import JobNotFound, TaskIdMismatch
from receiver.logs import LogSampler
from receiver.services.callbacks import accept_callback, confirm_terminal
from receiver.store.batch import group_commit
from receiver.web.context import runtime
from receiver.web.errors import ApiError, validation_message

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__)

#: Deepest JSON nesting accepted in a callback (the task object is 4 levels deep).
MAX_DEPTH = 32
#: ``VERIFY_WITH_VENDOR``'s GET must not keep the vendor's callback waiting (it is not
#: re-sent if it fails): seconds to connect (tried twice) and to read, and no 429 retries.
#: A vendor that cannot answer in time leaves the callback unconfirmed (stored, 202).
CONFIRM_CLIENT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
    "busy_retries": 0,
}
#: Longest integer accepted, in digits: a longer one does not fit a float (JSON numbers from
#: the vendor's JavaScript never do).
MAX_INT_DIGITS = 308
#: What no stored string may hold: NUL (PostgreSQL's text and jsonb refuse it) and unpaired
#: UTF-16 surrogates (``"\\ud800"``: not Unicode; neither database stores them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: In a body's JSON text, what any such string needs: NUL and surrogates can only be written
#: as ``\\u`` escapes (raw control characters are not JSON, and a UTF-8 body decodes to no
#: surrogate), so a text without one needs no walk through its strings.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")
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


class BadBody(ValueError):
    """The callback body is not a JSON object we can read; the message says why."""


def _reject_constant(name: str) -> NoReturn:
    raise BadBody(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadBody(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise BadBody(f"integer of {digits} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


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


def _check_strings(value: Any) -> None:
    """Refuse keys and strings that cannot be stored (see ``_UNSTORABLE``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found = _UNSTORABLE.search(item)
            if found:
                char = found.group()
                what = (
                    "NUL (\\u0000)"
                    if char == "\x00"
                    else f"an unpaired surrogate (\\u{ord(char):04x})"
                )
                raise BadBody(f"a JSON string holds {what}, which is not accepted")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a callback body: strict UTF-8, standard JSON, an object at the top, bounded depth,
    finite numbers that fit a float, and strings a database can store (no NUL, no unpaired
    surrogate).

    :raises BadBody: with a precise message (empty, not UTF-8, not JSON, not an object, …).
    """
    if not raw.strip():
        raise BadBody("empty body; expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except BadBody:
        raise
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
    if _UNSTORABLE_ESCAPE.search(text):
        _check_strings(value)
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
    return depth if level else depth - 1  # cut short: deeper than MAX_DEPTH


def read_body() -> bytes:
    """The request's raw body, refused past ``MAX_CONTENT_LENGTH``.

    A body with a ``Content-Length`` over the limit is refused before it is read (werkzeug);
    a chunked one is read up to the limit, and werkzeug then hands over what it read without
    an error, so one more byte is asked for: if there is one, the body was too large.

    :raises RequestEntityTooLarge: the body is larger than ``MAX_CONTENT_LENGTH``.
    """
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(raw) >= limit and request.content_length is None:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return raw


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
    confirmed = True
    try:
        if rt.settings.verify_with_vendor:
            with rt.vendor_client(**CONFIRM_CLIENT_OPTIONS) as vendor:
                task, confirmed = confirm_terminal(rt.engine, vendor, claims, task)
        result = accept_callback(
            rt.engine,
            claims=claims,
            task=task,
            body=body,
            body_sha256=sha,
            source_ip=_source_ip(),
            now=utcnow(),
            confirmed=confirmed,
            hold_succeeded=bool(rt.settings.artifact_store),
            allow_http_artifacts=rt.settings.allow_private_urls,
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
