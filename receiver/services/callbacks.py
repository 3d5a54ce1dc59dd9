"""Callbacks: a verified vendor callback moves its task forward and, in the SAME transaction,
writes the callback record, the events and one delivery per matching subscriber (the
transactional outbox, SPEC invariant 3).

What the callback causes is decided by the pure planner (:mod:`receiver.domain.callbacks`);
how concurrent callbacks of one job are serialised is the store's business
(:mod:`receiver.store.locking`). This module turns the vendor's task object into a domain
update and writes the plan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from client import ReplyRefClaims, UseapiClient, UseapiError, VendorTask
from client.models import VendorError
from receiver.artifacts import hold_for_copy
from receiver.delivery.urls import is_safe_artifact_url
from receiver.domain.callbacks import CallbackPlan, TaskBoundElsewhere, check_bound, plan_callback
from receiver.domain.events import TaskSucceeded
from receiver.domain.tasks import Outcome, TaskStatus, TaskUpdate, parse_status
from receiver.errors import JobNotFound, TaskIdMismatch
from receiver.ids import new_id
from receiver.services.reads import read_one
from receiver.store.locking import plan_and_write_job
from receiver.store.repositories import Delivery, Event, Job, Repository
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)

#: Longest ``progressText`` kept, in characters (a longer one is cut): the vendor sends a short
#: phrase, and every event carries it to every subscriber.
MAX_PROGRESS_TEXT = 500
#: Most callbacks stored per job. Past it, a callback that changes nothing is answered (and
#: counted in the metrics) but not stored; one that moves the task is still stored.
MAX_CALLBACKS_PER_JOB = 500


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
    """A :class:`CallbackPlan` for the job as read, with the job's new column values."""

    job: Job
    plan: CallbackPlan
    values: dict[str, Any]


def _plan(job: Job | None, callback: _Callback) -> _Plan:
    """Work out what ``callback`` does to ``job`` (no database access).

    :raises JobNotFound: ``job`` is None.
    :raises TaskIdMismatch: the job is bound to another vendor taskId.
    """
    if job is None:
        raise JobNotFound(f"no job {callback.claims.job_id}")
    now = callback.now
    try:
        plan = plan_callback(
            job,
            callback.update,
            callback_task_id=callback.task.taskId,
            confirmed=callback.confirmed,
            now=now,
            new_event_id=lambda: new_id("msg"),
        )
    except TaskBoundElsewhere as exc:
        raise TaskIdMismatch(str(exc)) from exc
    values: dict[str, Any] = {"last_callback_at": now, "updated_at": now}
    if plan.bind_task_id:
        values["task_id"] = plan.bind_task_id
    if plan.transition.changed:
        state = plan.transition.state
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
    return _Plan(job, plan, values)


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
    Concurrent callbacks of one job give the same result as if they ran one at a time
    (:func:`receiver.store.locking.plan_and_write_job`).

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
    return plan_and_write_job(
        engine,
        claims.job_id,
        lambda job: _plan(job, callback),
        lambda repo, planned, locked: _write(repo, planned, callback, locked=locked),
    )


def _write(
    repo: Repository, planned: _Plan, callback: _Callback, *, locked: bool
) -> CallbackResult:
    """Write ``planned`` in the caller's transaction: the job update, the callback record, the
    events and one delivery per matching enabled subscriber (and wake the workers).

    :param locked: the job was read in this transaction with its row locked, so it cannot have
        changed; otherwise the update is guarded and, if the job changed since ``planned`` was
        worked out, it is worked out again from the job as it is now.
    :raises JobNotFound: the job is gone.
    :raises TaskIdMismatch: see :func:`accept_callback`.
    """
    job = planned.job
    try:
        if locked:
            repo.update_job(job.id, **planned.values)
        elif not repo.update_job_if_unchanged(
            job.id,
            expect_status=job.status,
            expect_sequence=job.sequence,
            expect_task_id=job.task_id,
            **planned.values,
        ):
            planned = _plan(repo.get_job(job.id), callback)
            job = planned.job
            repo.update_job(job.id, **planned.values)
    except IntegrityError as exc:  # the taskId is bound to another job already
        raise TaskIdMismatch("this taskId belongs to another job") from exc
    plan = planned.plan
    transition = plan.transition
    keep_body = plan.keeps_body
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
        rows = [
            (
                Event(
                    id=e.id,
                    job_id=job.id,
                    type=e.type,
                    sequence=e.sequence,
                    payload=e.payload,
                    created_at=callback.now,
                ),
                e,
            )
            for e in plan.events
        ]
        repo.add_events([row for row, _ in rows])
        routes = repo.subscriber_routes()
        new_deliveries = [
            Delivery.new_pending(e.id, sub_id, callback.now)
            for e in plan.events
            for sub_id, event_types in routes
            if e.type in event_types
        ]
        if callback.hold_succeeded:  # ARTIFACT_STORE: the video is copied before it goes out
            succeeded = [
                (row, e.event.state.artifacts)
                for row, e in rows
                if isinstance(e.event, TaskSucceeded)
            ]
            new_deliveries = hold_for_copy(repo, succeeded, new_deliveries, callback.now)
        repo.add_deliveries(new_deliveries)
        if new_deliveries:
            repo.notify_deliveries()
    new_status = transition.state.status.value if transition.changed else None
    return CallbackResult(
        transition.outcome,
        job.id,
        [e.id for e in plan.events],
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
    try:
        check_bound(job, task.taskId)
    except TaskBoundElsewhere as exc:
        raise TaskIdMismatch(str(exc)) from exc
    if TaskStatus(job.status).is_terminal:
        return task, True  # a no-op whatever the vendor says
    task_id = job.task_id or task.taskId
    if not task_id:
        return task, False
    try:
        vendor = client.get_task(task_id, email=job_account(job))
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


def job_account(job: Job) -> str | None:
    """The useapi.net account the job's task runs under (its request's ``email``), or None;
    lookups of the task must use it when several accounts are configured."""
    email = job.request.get("email") if isinstance(job.request, dict) else None
    return email if isinstance(email, str) and email else None


def get_job(engine: Engine, job_id: str) -> Job:
    """The job ``job_id``. :raises JobNotFound: no such job."""
    return read_one(engine, lambda repo: repo.get_job(job_id), JobNotFound(f"no job {job_id}"))
