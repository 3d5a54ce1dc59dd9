"""Use cases: each one parses nothing and renders nothing, and runs in one unit of work.

- :func:`accept_callback`: a verified callback moves the task forward and, in the SAME
  transaction, writes the callback record, the events and one delivery per matching subscriber
  (the transactional outbox, SPEC invariant 3).
- submitting a task lives in :mod:`receiver.submission` (its errors are here).
- subscriber and delivery administration for the API and the CLI.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError

from client import (
    ReplyRefClaims,
    UseapiClient,
    UseapiError,
    VendorTask,
)
from client.models import VendorError
from receiver.artifacts import hold_for_copy
from receiver.delivery.urls import check_subscriber_url, is_safe_artifact_url
from receiver.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES, DomainEvent
from receiver.domain.tasks import (
    Outcome,
    TaskState,
    TaskStatus,
    TaskUpdate,
    Transition,
    apply,
    parse_status,
)
from receiver.ids import new_id
from receiver.store.batch import group_commit
from receiver.store.engine import is_sqlite
from receiver.store.repositories import Delivery, Event, Job, Repository, Subscriber
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the outcomes the web layer maps to a 4xx; ``code`` is the JSON error code."""

    code = "error"
    http_status = 400


class JobNotFound(ServiceError):
    """No job with that id (or the replyRef names a job this database does not have)."""

    code = "job_not_found"
    http_status = 404


class TaskIdMismatch(ServiceError):
    """A valid replyRef arrived with a taskId other than the one bound to its job."""

    code = "task_id_mismatch"
    http_status = 403


class SubscriberNotFound(ServiceError):
    code = "subscriber_not_found"
    http_status = 404


class DeliveryNotFound(ServiceError):
    code = "delivery_not_found"
    http_status = 404


class InvalidSubscriber(ServiceError):
    """A subscriber URL or option that is refused (SSRF guard, unknown event type)."""

    code = "invalid_subscriber"
    http_status = 422


class SubmissionFailed(ServiceError):
    """The vendor refused or failed a create; ``job_id`` names the job kept as evidence and
    ``cause`` is the :class:`client.errors.UseapiError` (its ``__cause__`` too)."""

    code = "submission_failed"
    http_status = 502

    def __init__(self, job_id: str, cause: UseapiError) -> None:
        super().__init__(str(cause))
        self.job_id = job_id
        self.cause = cause
        #: what the submitter could do instead (e.g. pick a live model), or None
        self.advice: str | None = None


class Conflict(ServiceError):
    code = "conflict"
    http_status = 409


class InvalidSubmission(ServiceError):
    """A submission that does not fit its model: an image or a field the model does not take,
    or a required one missing. Refused before anything is stored or sent."""

    code = "validation_error"
    http_status = 422


# -- callbacks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackResult:
    """What :func:`accept_callback` did: ``outcome`` (see :class:`Outcome`), the job, and the
    ids of the events written (empty for a no-op); ``new_status`` is the status the task moved
    to when its status changed (else None) and ``event_types`` the types of those events."""

    outcome: Outcome
    job_id: str
    event_ids: list[str]
    new_status: str | None = None
    event_types: tuple[str, ...] = ()


def _error_dict(error: str | VendorError | None, code: Any = None) -> dict[str, Any] | None:
    if error is None:
        return None
    if isinstance(error, str):
        out: dict[str, Any] = {"message": error}
    else:
        out = {"message": error.text}
        for key in ("reason", "moderation_category"):
            value = getattr(error, key, None)
            if value is not None:
                out[key] = value
    if code is not None:
        out["code"] = code
    return out


#: Longest ``progressText`` kept, in characters (a longer one is cut): the vendor sends a short
#: phrase, and every event carries it to every subscriber.
MAX_PROGRESS_TEXT = 500
#: Most callbacks stored per job. Past it, a callback that changes nothing is answered (and
#: counted in the metrics) but not stored; one that moves the task is still stored.
MAX_CALLBACKS_PER_JOB = 500


def task_update_from_vendor(
    task: VendorTask, *, allow_http: bool = False
) -> tuple[TaskUpdate, int]:
    """Turn the vendor's task object (useapi.net task model) into a :class:`TaskUpdate`.

    Artifact and preview URLs are checked (:func:`receiver.delivery.urls.is_safe_artifact_url`,
    https only, plain http too when ``allow_http``): an artifact whose ``url`` is unsafe is
    dropped, an unsafe preview URL is dropped from ``previewUrls``. ``progressText`` is cut to
    :data:`MAX_PROGRESS_TEXT` characters.

    :returns: (the update, how many URLs were dropped as unsafe).
    """
    artifacts: list[dict[str, Any]] = []
    dropped = 0
    for artifact in task.artifacts:
        if not artifact.url:
            continue
        if not is_safe_artifact_url(artifact.url, allow_http=allow_http):
            dropped += 1 + len(artifact.previewUrls or [])
            continue
        item = artifact.model_dump(exclude_none=True)
        if artifact.previewUrls is not None:
            previews = [
                u for u in artifact.previewUrls if is_safe_artifact_url(u, allow_http=allow_http)
            ]
            dropped += len(artifact.previewUrls) - len(previews)
            item["previewUrls"] = previews
        artifacts.append(item)
    text = task.progressText
    update = TaskUpdate(
        status=task.status,
        progress=task.progressRatio,
        progress_text=text[:MAX_PROGRESS_TEXT] if text is not None else None,
        artifacts=artifacts,
        error=_error_dict(task.error, task.code if task.error is not None else None),
    )
    return update, dropped


def _state_of(job: Job) -> TaskState:
    return TaskState(
        status=TaskStatus(job.status),
        progress=job.progress,
        progress_text=job.progress_text,
        artifacts=list(job.artifacts),
        error=job.error,
        sequence=job.sequence,
    )


def event_body(
    event_id: str, event: DomainEvent, job: Job, task_id: str | None, now: datetime
) -> str:
    """The webhook body of SPEC §2, serialised once (these exact bytes are signed and sent).

    Shape: ``{"type", "timestamp" (ISO-8601 UTC), "data": {"job_id", "task_id", "model",
    "status", "progress" (0..1 or null), "progress_text", "artifacts" [{"url", …}], "error"
    (null or {"message", …}), "metadata", "sequence"}}``.
    """
    state = event.state
    body = {
        "type": event.type,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": {
            "event_id": event_id,
            "job_id": job.id,
            "task_id": task_id,
            "model": job.model,
            "status": state.status.value,
            "progress": state.progress,
            "progress_text": state.progress_text,
            "artifacts": state.artifacts,
            "error": state.error,
            "metadata": job.metadata,
            "sequence": state.sequence,
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def accept_callback(
    engine: Engine,
    *,
    claims: ReplyRefClaims,
    task: VendorTask,
    body: dict[str, Any],
    body_sha256: str,
    source_ip: str | None,
    now: datetime,
    confirmed: bool = True,
    hold_succeeded: bool = False,
    allow_http_artifacts: bool = False,
) -> CallbackResult:
    """Apply one verified callback, forward only, in ONE transaction.

    The callback record, the job's new state, its events and their deliveries commit together
    (SPEC invariant 3), in a transaction shared with the callbacks that other request threads
    of this process are writing at the same moment (group commit: :mod:`receiver.store.batch`).
    On PostgreSQL the job's row is locked (``FOR UPDATE``) in that transaction. On SQLite the
    job is read first, outside the write lock, and the transaction updates it only if it has
    not changed since; if it has, the callback is worked out again from the job as it is inside
    the transaction. Either way the result is the same as if callbacks ran one at a time.

    :param claims: the verified replyRef (names our job).
    :param task: the callback body, validated leniently.
    :param body: the callback body as received (kept, unknown fields included).
    :param body_sha256: hex SHA-256 of the raw body.
    :param source_ip: the sender's address (after the trusted proxy hops), or None.
    :param now: the time of receipt (UTC).
    :param confirmed: False when ``VERIFY_WITH_VENDOR`` could not confirm a terminal status:
        the callback is kept (outcome ``unconfirmed``) and changes nothing.
    :param hold_succeeded: ``ARTIFACT_STORE`` is set: a ``task.succeeded`` waits for the copy
        of its video (:func:`receiver.artifacts.hold_for_copy`).
    :param allow_http_artifacts: ``ALLOW_PRIVATE_URLS``: plain http artifact URLs pass too
        (see :func:`task_update_from_vendor`; unsafe ones are dropped and counted in the
        callback's record).

    Only a callback that moves the task (or an unconfirmed one) keeps its body; a duplicate,
    stale, unknown-status or post-terminal one keeps its hash and metadata. Past
    :data:`MAX_CALLBACKS_PER_JOB` stored callbacks, one that changes nothing is not stored.
    :raises JobNotFound: the replyRef names a job that this database does not have.
    :raises TaskIdMismatch: the job is bound to another vendor taskId, or the callback's taskId
        to another job.
    :raises sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was kept.
    """
    update, unsafe_urls = task_update_from_vendor(task, allow_http=allow_http_artifacts)
    if unsafe_urls:
        log.warning(
            "callback carries unsafe artifact URLs (dropped)",
            extra={"job_id": claims.job_id, "unsafe_urls": unsafe_urls},
        )
    callback = _Callback(
        claims=claims,
        task=task,
        update=update,
        unsafe_urls=unsafe_urls,
        body=body,
        body_sha256=body_sha256,
        source_ip=source_ip,
        now=now,
        confirmed=confirmed,
        hold_succeeded=hold_succeeded,
    )
    if is_sqlite(engine):
        with UnitOfWork(engine, read_only=True) as uow:
            seen = uow.repo.get_job(claims.job_id)
        plan = _plan_callback(seen, callback)
        return group_commit(engine).run(
            lambda repo: _write_callback(repo, plan, callback), key=claims.job_id
        )

    def locked(repo: Repository) -> CallbackResult:
        job = repo.get_job(claims.job_id, for_update=True)
        return _write_callback(repo, _plan_callback(job, callback), callback, locked=True)

    return group_commit(engine).run(locked, key=claims.job_id)


@dataclass(frozen=True)
class _Callback:
    """A verified callback on its way to the database."""

    claims: ReplyRefClaims
    task: VendorTask
    update: TaskUpdate
    unsafe_urls: int
    body: dict[str, Any]
    body_sha256: str
    source_ip: str | None
    now: datetime
    confirmed: bool
    hold_succeeded: bool = False


@dataclass(frozen=True)
class _Plan:
    """What a callback writes, worked out from the job as read: the transition, the job's new
    column values, and the events (payloads serialised) with their domain events."""

    job: Job
    transition: Transition
    values: dict[str, Any]
    events: list[tuple[Event, DomainEvent]]


def _check_bound(job: Job, task: VendorTask) -> None:
    """A job bound to a vendor task stays bound: once bound, a callback must carry that same
    taskId (absent or another one is refused), so a replyRef alone cannot move a bound job.

    :raises TaskIdMismatch: the job is bound and the callback's taskId is absent or differs.
    """
    if not job.task_id:
        return
    if not task.taskId:
        raise TaskIdMismatch("this job is bound to a task; a callback must carry its taskId")
    if task.taskId != job.task_id:
        raise TaskIdMismatch("this replyRef belongs to another task")


def _plan_callback(job: Job | None, callback: _Callback) -> _Plan:
    """Work out what ``callback`` does to ``job`` (no database access).

    :raises JobNotFound: ``job`` is None.
    :raises TaskIdMismatch: the job is bound to another vendor taskId.
    """
    task, now = callback.task, callback.now
    if job is None:
        raise JobNotFound(f"no job {callback.claims.job_id}")
    _check_bound(job, task)
    if callback.confirmed:
        transition = apply(_state_of(job), callback.update)
    else:
        transition = Transition(_state_of(job), [], Outcome.UNCONFIRMED)
    values: dict[str, Any] = {"last_callback_at": now, "updated_at": now}
    if task.taskId and not job.task_id:
        values["task_id"] = task.taskId
    task_id = job.task_id or task.taskId
    planned: list[tuple[Event, DomainEvent]] = []
    if transition.changed:
        state = transition.state
        values.update(
            status=state.status.value,
            progress=state.progress,
            progress_text=state.progress_text,
            artifacts=state.artifacts,
            error=state.error,
            sequence=state.sequence,
            vendor_task=callback.body,
        )
        if state.status.is_terminal:
            values["finished_at"] = now
        for domain_event in transition.events:
            event_id = new_id("msg")
            event = Event(
                id=event_id,
                job_id=job.id,
                type=domain_event.type,
                sequence=domain_event.state.sequence,
                payload=event_body(event_id, domain_event, job, task_id, now),
                created_at=now,
            )
            planned.append((event, domain_event))
    return _Plan(job, transition, values, planned)


def _write_callback(
    repo: Repository, plan: _Plan, callback: _Callback, *, locked: bool = False
) -> CallbackResult:
    """Write ``plan`` in the caller's transaction: the job update, the callback record, the
    events and one delivery per matching enabled subscriber (and wake PostgreSQL workers).

    :param locked: the job was read in this transaction with its row locked, so it cannot have
        changed; otherwise the update is guarded and, if the job changed since ``plan`` was
        worked out, the plan is worked out again from the job as it is now.
    :raises JobNotFound: the job is gone.
    :raises TaskIdMismatch: see :func:`accept_callback`.
    """
    job = plan.job
    try:
        if locked:
            repo.update_job(job.id, **plan.values)
        elif not repo.update_job_if_unchanged(
            job.id,
            expect_status=job.status,
            expect_sequence=job.sequence,
            expect_task_id=job.task_id,
            **plan.values,
        ):
            plan = _plan_callback(repo.get_job(job.id), callback)
            job = plan.job
            repo.update_job(job.id, **plan.values)
    except IntegrityError as exc:  # the taskId is bound to another job already
        raise TaskIdMismatch("this taskId belongs to another job") from exc
    transition = plan.transition
    keep_body = transition.changed or transition.outcome is Outcome.UNCONFIRMED
    if keep_body or repo.count_callbacks(job.id) < MAX_CALLBACKS_PER_JOB:
        repo.add_callback(
            job_id=job.id,
            received_at=callback.now,
            status=callback.task.status,
            progress=callback.task.progressRatio,
            outcome=transition.outcome.value,
            body=callback.body if keep_body else None,
            body_sha256=callback.body_sha256,
            source_ip=callback.source_ip,
            unsafe_urls=callback.unsafe_urls,
        )
    if plan.events:
        repo.add_events([event for event, _ in plan.events])
        routes = repo.subscriber_routes()
        new_deliveries = [
            Delivery.new_pending(event.id, sub_id, callback.now)
            for event, domain_event in plan.events
            for sub_id, event_types in routes
            if domain_event.type in event_types
        ]
        if callback.hold_succeeded:  # ARTIFACT_STORE: the video is copied before it goes out
            succeeded = [
                (e, d.state.artifacts) for e, d in plan.events if d.type == "task.succeeded"
            ]
            new_deliveries = hold_for_copy(repo, succeeded, new_deliveries, callback.now)
        repo.add_deliveries(new_deliveries)
        if new_deliveries:
            repo.notify_deliveries()
    new_status = transition.state.status.value if transition.changed else None
    return CallbackResult(
        transition.outcome,
        job.id,
        [event.id for event, _ in plan.events],
        new_status=new_status if new_status != job.status else None,
        event_types=tuple(e.type for e in transition.events),
    )


def confirm_terminal(
    engine: Engine, client: UseapiClient, claims: ReplyRefClaims, task: VendorTask
) -> tuple[VendorTask, bool]:
    """``VERIFY_WITH_VENDOR``: confirm a terminal callback with one ``GET /tasks/{taskId}``.

    Non-terminal callbacks pass unchanged. For a terminal one, the vendor's own task object
    replaces the callback's (its status, artifacts and error are then what we emit) when the
    vendor reports the same terminal status; otherwise, or when the vendor cannot be asked, the
    callback is unconfirmed (kept, applied to nothing; ``relay reconcile`` settles it later).
    The vendor call happens outside any database transaction.

    :returns: (the task object to apply, whether it is confirmed).
    :raises JobNotFound: the replyRef names no job here.
    :raises TaskIdMismatch: the job is bound to another taskId.
    """
    status = parse_status(task.status)
    if status is None or not status.is_terminal:
        return task, True
    with UnitOfWork(engine, read_only=True) as uow:
        job = uow.repo.get_job(claims.job_id)
    if job is None:
        raise JobNotFound(f"no job {claims.job_id}")
    _check_bound(job, task)
    if TaskStatus(job.status).is_terminal:
        return task, True  # a no-op whatever the vendor says
    task_id = job.task_id or task.taskId
    if not task_id:
        return task, False
    try:
        vendor = client.get_task(task_id, email=_account(job))
    except UseapiError as exc:
        log.warning(
            "could not confirm a terminal callback", extra={"job_id": job.id, "error": str(exc)}
        )
        return task, False
    if parse_status(vendor.status) is not status:
        log.warning(
            "vendor does not confirm the callback's status",
            extra={"job_id": job.id, "claimed": task.status, "vendor": vendor.status},
        )
        return task, False
    if not vendor.taskId:
        vendor = vendor.model_copy(update={"taskId": task_id})
    return vendor, True


def _account(job: Job) -> str | None:
    """The useapi.net account the job's task runs under (its request's ``email``), or None;
    lookups of the task must use it when several accounts are configured."""
    email = job.request.get("email") if isinstance(job.request, dict) else None
    return email if isinstance(email, str) and email else None


def get_job(engine: Engine, job_id: str) -> Job:
    """:raises JobNotFound:"""
    with UnitOfWork(engine, read_only=True) as uow:
        job = uow.repo.get_job(job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


# -- subscribers ----------------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_subscriber(
    engine: Engine,
    *,
    url: str,
    event_types: Sequence[str] | None,
    description: str | None,
    max_in_flight: int,
    allow_private: bool,
    now: datetime,
) -> Subscriber:
    """Register a subscriber with a fresh secret (returned once, in the result).

    :raises InvalidSubscriber: the URL fails the SSRF guard or an event type is unknown.
    """
    types = list(dict.fromkeys(event_types)) if event_types else list(DEFAULT_EVENT_TYPES)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidSubscriber(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
        )
    if not 1 <= max_in_flight <= 256:
        raise InvalidSubscriber("max_in_flight must be between 1 and 256")
    from receiver.delivery.urls import UnsafeUrl

    try:
        check_subscriber_url(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise InvalidSubscriber(f"subscriber URL refused: {exc}") from exc
    sub = Subscriber(
        id=new_id("sub"),
        url=url,
        description=description,
        event_types=types,
        secret=new_secret(),
        previous_secret=None,
        previous_secret_expires_at=None,
        enabled=True,
        disabled_reason=None,
        disabled_at=None,
        max_in_flight=max_in_flight,
        failing_since=None,
        last_success_at=None,
        last_failure_at=None,
        last_error=None,
        created_at=now,
        deleted_at=None,
    )
    with UnitOfWork(engine) as uow:
        uow.repo.add_subscriber(sub)
        uow.commit()
    return sub


def get_subscriber(engine: Engine, subscriber_id: str) -> Subscriber:
    """:raises SubscriberNotFound:"""
    with UnitOfWork(engine, read_only=True) as uow:
        sub = uow.repo.get_subscriber(subscriber_id)
    if sub is None:
        raise SubscriberNotFound(f"no subscriber {subscriber_id}")
    return sub


def remove_subscriber(engine: Engine, subscriber_id: str, now: datetime) -> None:
    """Remove a subscriber (kept as history) and cancel its pending deliveries.

    :raises SubscriberNotFound:
    """
    with UnitOfWork(engine) as uow:
        if not uow.repo.update_subscriber(subscriber_id, deleted_at=now, enabled=False):
            raise SubscriberNotFound(f"no subscriber {subscriber_id}")
        uow.repo.cancel_pending_for(subscriber_id, now)
        uow.commit()


def rotate_secret(
    engine: Engine, subscriber_id: str, grace_seconds: float, now: datetime
) -> Subscriber:
    """Issue a new secret; the old one keeps signing, beside it, for ``grace_seconds``.

    :raises SubscriberNotFound:
    """
    with UnitOfWork(engine) as uow:
        sub = uow.repo.get_subscriber(subscriber_id)
        if sub is None:
            raise SubscriberNotFound(f"no subscriber {subscriber_id}")
        secret = new_secret()
        keep_old = grace_seconds > 0
        uow.repo.update_subscriber(
            subscriber_id,
            secret=secret,
            previous_secret=sub.secret if keep_old else None,
            previous_secret_expires_at=now + timedelta(seconds=grace_seconds) if keep_old else None,
        )
        uow.commit()
    return replace(
        sub,
        secret=secret,
        previous_secret=sub.secret if keep_old else None,
        previous_secret_expires_at=now + timedelta(seconds=grace_seconds) if keep_old else None,
    )


def set_subscriber_enabled(
    engine: Engine, subscriber_id: str, enabled: bool, now: datetime, reason: str | None = None
) -> Subscriber:
    """Enable (clearing the failure streak) or disable a subscriber.

    :raises SubscriberNotFound:
    """
    values: dict[str, Any] = (
        {"enabled": True, "disabled_reason": None, "disabled_at": None, "failing_since": None}
        if enabled
        else {
            "enabled": False,
            "disabled_reason": reason or "disabled by operator",
            "disabled_at": now,
        }
    )
    with UnitOfWork(engine) as uow:
        if not uow.repo.update_subscriber(subscriber_id, **values):
            raise SubscriberNotFound(f"no subscriber {subscriber_id}")
        if enabled:
            uow.repo.notify_deliveries()
        uow.commit()
    return get_subscriber(engine, subscriber_id)


# -- deliveries -----------------------------------------------------------------------------


def retry_delivery(engine: Engine, delivery_id: str, now: datetime) -> Delivery:
    """Send a finished delivery again, now, with the same ``webhook-id``.

    :raises DeliveryNotFound:
    :raises Conflict: it is pending already.
    """
    with UnitOfWork(engine) as uow:
        current = uow.repo.get_delivery(delivery_id)
        if current is None:
            raise DeliveryNotFound(f"no delivery {delivery_id}")
        if not uow.repo.requeue_delivery(delivery_id, now):
            raise Conflict(f"delivery {delivery_id} is pending already")
        uow.repo.notify_deliveries()
        uow.commit()
        delivery = uow.repo.get_delivery(delivery_id)
    assert delivery is not None
    return delivery


def recover_deliveries(
    engine: Engine, since: datetime, now: datetime, subscriber_id: str | None = None
) -> int:
    """Send again every delivery that failed (dead letter) at or after ``since``.

    :returns: how many were queued again.
    """
    with UnitOfWork(engine) as uow:
        count = uow.repo.requeue_failed_since(since, now, subscriber_id)
        if count:
            uow.repo.notify_deliveries()
        uow.commit()
    return count


# -- reconcile ------------------------------------------------------------------------------


def reconcile(
    engine: Engine,
    client: UseapiClient,
    cutoff: datetime,
    clock: Any,
    *,
    limit: int = 500,
    hold_succeeded: bool = False,
    allow_http_artifacts: bool = False,
) -> list[dict[str, Any]]:
    """The safety net for a lost callback: one ``GET /tasks/{taskId}`` per live job whose last
    callback (or creation) is older than ``cutoff``, applied exactly like a callback.

    Never part of the normal path (SPEC invariant 5); meant for a scheduled one-off run.
    :param clock: a callable returning the current aware UTC time.
    :param allow_http_artifacts: ``ALLOW_PRIVATE_URLS`` (see :func:`accept_callback`).
    :returns: one ``{"job_id", "task_id", "outcome" | "error"}`` per job looked at.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        stale = uow.repo.jobs_without_recent_callback(cutoff, limit=limit)
    results: list[dict[str, Any]] = []
    for job in stale:
        if not job.task_id:
            results.append(
                {"job_id": job.id, "task_id": None, "error": "no vendor taskId recorded"}
            )
            continue
        try:
            task = client.get_task(job.task_id, email=_account(job))
        except UseapiError as exc:
            results.append({"job_id": job.id, "task_id": job.task_id, "error": str(exc)})
            continue
        if not task.taskId:  # the answer to GET /tasks/{taskId} is about that task
            task = task.model_copy(update={"taskId": job.task_id})
        claims = ReplyRefClaims(job_id=job.id, metadata=job.metadata, issued_at=job.created_at)
        body = task.model_dump(mode="json", exclude_none=True)
        body["reconciled"] = True
        try:
            result = accept_callback(
                engine,
                claims=claims,
                task=task,
                body=body,
                body_sha256="",
                source_ip="reconcile",
                now=clock(),
                hold_succeeded=hold_succeeded,
                allow_http_artifacts=allow_http_artifacts,
            )
        except (ServiceError, DataError) as exc:  # one bad answer costs this job, not the pass
            error = str(exc) if isinstance(exc, ServiceError) else "the database refused the answer"
            results.append({"job_id": job.id, "task_id": job.task_id, "error": error})
            continue
        results.append({"job_id": job.id, "task_id": job.task_id, "outcome": result.outcome.value})
    return results
