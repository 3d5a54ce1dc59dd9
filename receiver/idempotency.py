"""Idempotent submission: an ``Idempotency-Key`` makes a retried submission return the first
job instead of creating a second vendor task (SPEC invariant 7: one charge, not two).

A layer *around* the submission, which it never looks inside:

1. :func:`claim` inserts the key with the request's fingerprint. The database settles a race
   (:mod:`receiver.store.idempotency`): exactly one request of several with one key goes on.
2. The others, and every later request with that key, are answered from the key:
   - same fingerprint, first request finished: its answer again (a success re-reads the job,
     so its current status shows; an error is replayed as it was);
   - same fingerprint, first request still running: :class:`IdempotencyKeyInFlight` (409);
   - another fingerprint: :class:`IdempotencyKeyReused` (422), whatever the state.
3. The request that claimed the key ends it with :func:`complete` (its answer is kept) or,
   when it provably created no vendor task (refused before anything was sent, or refused by
   the vendor), :func:`release` (the key is free again, so that a corrected retry can use it).
   Anything else (a success, an answer lost to a timeout, an error of ours) completes the key:
   a retry can never send a second create.

Keys live at least 24 hours: the retention purge removes them after ``RETENTION_DAYS`` (at
least 1). A key whose request died with its process stays in flight (409) until then, because
nothing can tell whether its create was sent; the 409's message says so after
:data:`STALE_AFTER_SECONDS`.

:func:`submit_once` is the command line's use of it (``relay submit --idempotency-key``); the
API's is :func:`receiver.web.idempotency.idempotent`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from receiver.clock import utcnow
from receiver.errors import InvalidSubmission, ServiceError, SubmissionFailed
from receiver.services import get_job
from receiver.settings import ConfigError
from receiver.store import idempotency as store
from receiver.store.repositories import Job
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)
P = ParamSpec("P")

#: The request header (the IETF ``Idempotency-Key`` draft's name, as Stripe uses it).
HEADER = "Idempotency-Key"
#: Longest key accepted, characters.
MAX_KEY_LENGTH = 255
#: After this long in flight, a key's request has most likely died with its process, seconds.
STALE_AFTER_SECONDS = 900.0
#: How many times :func:`claim` tries when the key vanishes between its insert and its read.
CLAIM_TRIES = 3


class IdempotencyError(ServiceError):
    """Base of the idempotency refusals (each a 4xx with its JSON code)."""


class InvalidIdempotencyKey(IdempotencyError, code="invalid_idempotency_key", http_status=400):
    """The key is empty, longer than :data:`MAX_KEY_LENGTH` or not printable ASCII."""


class IdempotencyKeyReused(IdempotencyError, code="idempotency_key_reused", http_status=422):
    """The key was first used for another request (another body)."""


class IdempotencyKeyInFlight(IdempotencyError, code="idempotency_key_in_flight", http_status=409):
    """The first request with this key is still running: retry later, never in parallel."""


class ReplayedError(IdempotencyError, code="idempotent_replay"):
    """The first request with this key failed; this is its error again (command line only;
    the API replays the stored answer itself). ``job_id`` names the job kept as evidence;
    ``http_status`` is the first request's."""

    def __init__(self, message: str, *, http_status: int, job_id: str | None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.job_id = job_id


def check_key(value: str) -> str:
    """The key, if acceptable: 1…:data:`MAX_KEY_LENGTH` printable ASCII characters (a UUID is
    the usual choice). Leading and trailing spaces are not part of it.

    :raises InvalidIdempotencyKey:
    """
    key = value.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters (a UUID, say)"
        )
    if not all(" " <= ch <= "~" for ch in key):
        raise InvalidIdempotencyKey(f"{HEADER} must be printable ASCII")
    return key


def fingerprint(scope: str, payload: Any) -> str:
    """The hex SHA-256 of ``scope`` and ``payload`` as canonical JSON (keys sorted, no spaces),
    so that the same request spelled differently (key order, whitespace) matches.

    :param scope: what the key is used for, e.g. ``"POST /api/tasks"``.
    :param payload: JSON-ready data; bytes are hashed as they are.
    """
    digest = hashlib.sha256(scope.encode() + b"\n")
    if isinstance(payload, bytes):
        digest.update(payload)
    else:
        digest.update(
            json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        )
    return digest.hexdigest()


def claim(engine: Engine, key: str, request_hash: str, now: datetime) -> store.StoredKey | None:
    """Claim ``key`` for the request whose fingerprint is ``request_hash``.

    :returns: None when this request holds the key now (go on, then :func:`complete` or
        :func:`release`); the completed key when its first answer is to be replayed.
    :raises IdempotencyKeyReused: the key was claimed with another fingerprint.
    :raises IdempotencyKeyInFlight: the key's first request is still running.
    """
    for _ in range(CLAIM_TRIES):
        try:
            with UnitOfWork(engine) as uow:
                store.insert_key(uow.repo.conn, key, request_hash, now)
                uow.commit()
            return None
        except IntegrityError:
            pass  # claimed before: look at it
        with UnitOfWork(engine, read_only=True) as uow:
            stored = store.get_key(uow.repo.conn, key)
        if stored is None:
            continue  # released between the insert and the read: try again
        if stored.request_hash != request_hash:
            raise IdempotencyKeyReused(
                f"{HEADER} {key!r} was used for another request (a different body) at "
                f"{_iso(stored.created_at)}; use a new key for a new request"
            )
        if stored.state == store.IN_FLIGHT:
            age = (now - stored.created_at).total_seconds()
            message = (
                f"a request with {HEADER} {key!r} is in flight since {_iso(stored.created_at)}"
            )
            if age > STALE_AFTER_SECONDS:
                message += (
                    "; it may have died with its process, and whether it sent a create is "
                    "unknown: look for its job (GET /api/tasks) before submitting with a new key"
                )
            else:
                message += "; retry when it has finished"
            raise IdempotencyKeyInFlight(message)
        return stored
    raise IdempotencyKeyInFlight(f"{HEADER} {key!r} is changing hands; retry")


def complete(
    engine: Engine,
    key: str,
    *,
    job_id: str | None,
    response_status: int,
    response_body: str | None = None,
    now: datetime | None = None,
) -> None:
    """Keep the first answer of the request that holds ``key`` (replayed from now on).

    :param response_body: an error answer's JSON text; None for a success (re-read from the job).
    """
    with UnitOfWork(engine) as uow:
        done = store.complete_key(
            uow.repo.conn,
            key,
            job_id=job_id,
            response_status=response_status,
            response_body=response_body,
            now=now or utcnow(),
        )
        uow.commit()
    if not done:
        log.warning("idempotency key was not in flight when completed", extra={"job_id": job_id})


def release(engine: Engine, key: str) -> None:
    """Free ``key``: its request created nothing, so a retry may use it again."""
    with UnitOfWork(engine) as uow:
        store.delete_in_flight_key(uow.repo.conn, key)
        uow.commit()


def submit_once(
    engine: Engine,
    key: str | None,
    request: Any,
    submit: Callable[[], Job],
    *,
    created_nothing: Callable[[BaseException], bool],
) -> Job:
    """Run ``submit`` at most once per ``key`` (``relay submit --idempotency-key``).

    :param key: the idempotency key, or None to just call ``submit``.
    :param request: the submission as JSON-ready data (its fingerprint is compared).
    :param created_nothing: tells, for an exception of ``submit``, whether it provably created
        no vendor task (then the key is freed; otherwise the failure is kept and replayed).
    :returns: the new job, or the first one when the key was used before for the same request.
    :raises InvalidIdempotencyKey, IdempotencyKeyReused, IdempotencyKeyInFlight: see
        :func:`claim`.
    :raises ReplayedError: the first request with this key failed.
    """
    if key is None:
        return submit()
    key = check_key(key)
    stored = claim(engine, key, fingerprint("relay submit", request), utcnow())
    if stored is not None:
        return replay_job(engine, stored)
    try:
        job = submit()
    except BaseException as exc:
        if created_nothing(exc):
            release(engine, key)
        else:
            job_id = getattr(exc, "job_id", None)
            complete(
                engine,
                key,
                job_id=job_id,
                response_status=int(getattr(exc, "http_status", None) or 500),
                response_body=json.dumps(
                    {"error": {"code": getattr(exc, "code", "error"), "message": str(exc)}}
                ),
            )
        raise
    try:
        complete(engine, key, job_id=job.id, response_status=201)
    except Exception:  # the job stands; the key stays in flight (never a second create)
        log.exception("could not record the idempotency key's job", extra={"job_id": job.id})
    return job


def once(
    engine: Engine, key: str | None, request: Any
) -> Callable[[Callable[P, Job]], Callable[P, Job]]:
    """A decorator that makes a submission function run at most once per ``key``: calling
    the wrapped function is :func:`submit_once` with :func:`submission_created_nothing`.

    Used as ``once(engine, key, request)(services.submit_task)(...same arguments...)``.
    """

    def wrap(submit: Callable[P, Job]) -> Callable[P, Job]:
        @functools.wraps(submit)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Job:
            return submit_once(
                engine,
                key,
                request,
                lambda: submit(*args, **kwargs),
                created_nothing=submission_created_nothing,
            )

        return wrapper

    return wrap


def submission_created_nothing(exc: BaseException) -> bool:
    """Whether a failed ``submit_task`` provably created no vendor task, so that its key may
    be freed: refused before anything was sent (invalid request, image or metadata, missing
    configuration), or refused by the vendor (400, 404, 412, 422, 429) or never reached
    (connection refused). A lost answer, a vendor 5xx or an error of ours may hide a task.
    """
    from pydantic import ValidationError

    from client import errors as vendor

    if isinstance(exc, SubmissionFailed):
        refused = (
            vendor.AccountBusy,
            vendor.BadRequest,
            vendor.ConnectFailed,
            vendor.InsufficientCredits,
            vendor.Moderated,
            vendor.NotFound,
        )
        return isinstance(exc.cause, refused)
    return isinstance(exc, ValidationError | InvalidSubmission | ConfigError | ValueError)


def replay_job(engine: Engine, stored: store.StoredKey) -> Job:
    """The first job of a completed key, as it is now.

    :raises ReplayedError: the first request failed (its message and job, if any).
    :raises receiver.services.JobNotFound: the job is gone (retention).
    """
    if stored.response_status is not None and stored.response_status < 300 and stored.job_id:
        return get_job(engine, stored.job_id)
    message = "the first request with this key failed"
    try:
        error = json.loads(stored.response_body or "{}").get("error", {})
        message += f": {error.get('message') or error.get('code')}"
    except (ValueError, AttributeError):
        pass
    if stored.job_id:
        message += f" (job {stored.job_id})"
    raise ReplayedError(message, http_status=stored.response_status or 500, job_id=stored.job_id)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


__all__ = [
    "HEADER",
    "IdempotencyError",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "InvalidIdempotencyKey",
    "ReplayedError",
    "check_key",
    "claim",
    "complete",
    "fingerprint",
    "once",
    "release",
    "submission_created_nothing",
    "submit_once",
]
