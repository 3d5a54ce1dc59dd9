"""Callbacks, in two steps (SPEC invariant 3, issue 18):

1. :func:`store_callback` (the web process, in the request): the verified callback is stored
   as received, ``outcome = 'queued'``, in a transaction shared with the other callbacks of the
   moment (group commit); the vendor gets its 2xx once that commits.
2. :func:`apply_callback` (the worker's applier, :mod:`receiver.ingest.applier`, in batches):
   the stored callback moves its task forward and, in the SAME transaction, gets its outcome
   and writes the events and one delivery per matching subscriber (the transactional outbox).

What a callback causes is decided by the pure planner (:mod:`receiver.domain.callbacks`). This
module turns the vendor's task object into a domain update and writes the plan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from client import ReplyRefClaims, UseapiClient, UseapiError, VendorTask
from client.models import VendorError
from receiver.artifacts import hold_for_copy
from receiver.delivery.urls import is_safe_artifact_url
from receiver.domain.callbacks import (
    CallbackPlan,
    TaskBoundElsewhere,
    check_bound,
    check_task_id,
    plan_callback,
)
from receiver.domain.events import TaskSucceeded
from receiver.domain.tasks import Outcome, TaskStatus, TaskUpdate, parse_status
from receiver.errors import JobNotFound, TaskIdMismatch
from receiver.ids import new_id
from receiver.services.reads import read_one
from receiver.settings import Settings
from receiver.store.batch import group_commit
from receiver.store.repositories import Delivery, Event, Job, QueuedCallback, Repository
from receiver.store.uow import UnitOfWork

log = logging.getLogger(__name__)

#: Longest ``progressText`` kept, in characters (a longer one is cut): the vendor sends a short
#: phrase, and every event carries it to every subscriber.
MAX_PROGRESS_TEXT = 500
#: Most callbacks kept per job. Past it, a callback that changes nothing is dropped once
#: applied (and counted in the metrics); one that moves the task is still kept.
MAX_CALLBACKS_PER_JOB = 500


@dataclass(frozen=True)
class StoredCallback:
    """A callback stored by :func:`store_callback`: its row id and its job's id."""

    callback_id: int
    job_id: str


@dataclass(frozen=True)
class CallbackResult:
    """What :func:`apply_callback` did: ``outcome`` (see :class:`Outcome`), the job, and the
    ids of the events written (empty for a no-op); ``new_status`` is the status the task moved
    to when its status changed (else None) and ``event_types`` the types of those events."""

    outcome: Outcome
    job_id: str
    event_ids: list[str]
    new_status: str | None = None
    event_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyOptions:
    """How stored callbacks are applied (from :class:`receiver.settings.Settings`).

    ``hold_succeeded``: ``ARTIFACT_STORE`` is set, so a ``task.succeeded`` waits for the copy of
    its video (:func:`receiver.artifacts.hold_for_copy`). ``allow_http_artifacts``:
    ``ALLOW_PRIVATE_URLS``, plain http artifact URLs pass too.
    """

    hold_succeeded: bool = False
    allow_http_artifacts: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ApplyOptions:
        """The options that ``settings`` (``ARTIFACT_STORE``, ``ALLOW_PRIVATE_URLS``) give."""
        return cls(
            hold_succeeded=bool(settings.artifact_store),
            allow_http_artifacts=settings.allow_private_urls,
        )


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
    """A stored callback on its way to its job."""

    claims_job_id: str
    task: VendorTask
    update: TaskUpdate
    unsafe_urls: int
    body: dict[str, Any] | None
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
        raise JobNotFound(f"no job {callback.claims_job_id}")
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


def store_callback(
    engine: Engine,
    *,
    claims: ReplyRefClaims,
    task: VendorTask,
    body: dict[str, Any],
    body_sha256: str,
    source_ip: str | None,
    now: datetime,
    confirmed: bool = True,
    apply_task: dict[str, Any] | None = None,
) -> StoredCallback:
    """Store one verified callback, not applied yet, and wake the appliers.

    Runs in a transaction shared with the callbacks that other request threads of this process
    store at the same moment (group commit: :mod:`receiver.store.batch`); returns once it has
    committed (a 2xx may then be given: SPEC invariant 3). The job's binding is checked here
    so that the vendor-facing door keeps its refusals (404, 403); applying it
    (:func:`apply_callback`) checks again.

    :param claims: the verified replyRef (names our job).
    :param task: the callback body, validated leniently.
    :param body: the callback body as received (kept, unknown fields included).
    :param body_sha256: hex SHA-256 of the raw body.
    :param source_ip: the sender's address (after the trusted proxy hops), or None.
    :param now: the time of receipt (UTC): the events' timestamp when applied.
    :param confirmed: False when ``VERIFY_WITH_VENDOR`` could not confirm a terminal status:
        the callback is kept and applied to nothing (outcome ``unconfirmed``).
    :param apply_task: the task object to apply instead of ``body`` (the vendor's own, from
        ``VERIFY_WITH_VENDOR``), or None.
    :raises JobNotFound: the replyRef names a job that this database does not have.
    :raises TaskIdMismatch: the job is bound to another vendor taskId, or the callback's
        taskId to another job.
    :raises sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was kept.
    """
    job_id = claims.job_id

    def store(repo: Repository) -> StoredCallback:
        exists, bound = repo.job_binding(job_id)
        if not exists:
            raise JobNotFound(f"no job {job_id}")
        try:
            check_task_id(bound, task.taskId)
        except TaskBoundElsewhere as exc:
            raise TaskIdMismatch(str(exc)) from exc
        if not bound and task.taskId:
            other = repo.find_job_by_task_id(task.taskId)
            if other is not None and other.id != job_id:
                raise TaskIdMismatch("this taskId belongs to another job")
        callback_id = repo.queue_callback(
            job_id=job_id,
            received_at=now,
            status=task.status,
            progress=task.progressRatio,
            body=body,
            body_sha256=body_sha256,
            source_ip=source_ip,
            apply_task=apply_task,
            confirmed=confirmed,
        )
        repo.notify_callbacks()
        return StoredCallback(callback_id, job_id)

    return group_commit(engine).run(store, key=job_id)


def apply_callback(
    repo: Repository, stored: QueuedCallback, options: ApplyOptions
) -> CallbackResult:
    """Apply one stored callback, forward only, in the caller's transaction: the job update,
    the callback's outcome, the events and one delivery per matching enabled subscriber (and
    wake the delivery loops). The caller holds the applier's lock
    (:func:`receiver.store.locking.lock_applier`), so callbacks apply in arrival order.

    Only a callback that moves the task (or an unconfirmed one) keeps its body; a duplicate,
    stale, unknown-status or post-terminal one keeps its hash and metadata, and past
    :data:`MAX_CALLBACKS_PER_JOB` kept callbacks of its job it is dropped. A callback whose
    taskId was bound to another job meanwhile is applied to nothing (outcome
    ``task_id_mismatch``).

    :raises JobNotFound: the job is gone (the callback's row would be gone with it).
    :raises ValueError: the stored body is not a task object (the door validated it: a bug).
    :raises sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    raw = stored.apply_task if stored.apply_task is not None else stored.body
    try:
        task = VendorTask.model_validate(raw or {})
    except ValidationError as exc:
        raise ValueError(f"stored callback {stored.id} is not a task object: {exc}") from exc
    update, unsafe_urls = task_update_from_vendor(task, allow_http=options.allow_http_artifacts)
    if unsafe_urls:
        log.warning(
            "callback carries unsafe artifact URLs (dropped)",
            extra={"job_id": stored.job_id, "unsafe_urls": unsafe_urls},
        )
    callback = _Callback(
        claims_job_id=stored.job_id,
        task=task,
        update=update,
        unsafe_urls=unsafe_urls,
        body=stored.body,
        now=stored.received_at,
        confirmed=stored.confirmed,
        hold_succeeded=options.hold_succeeded,
    )
    job = repo.get_job(stored.job_id, for_update=True)
    try:
        planned = _plan(job, callback)
        if planned.plan.bind_task_id:
            other = repo.find_job_by_task_id(planned.plan.bind_task_id)
            if other is not None and other.id != stored.job_id:
                raise TaskIdMismatch("this taskId belongs to another job")
    except TaskIdMismatch as exc:
        log.warning(
            "stored callback applied to nothing: its taskId is bound elsewhere",
            extra={"job_id": stored.job_id, "callback_id": stored.id, "error": str(exc)},
        )
        repo.settle_callback(
            stored.id,
            outcome=Outcome.TASK_ID_MISMATCH.value,
            keep_body=True,
            unsafe_urls=unsafe_urls,
        )
        return CallbackResult(Outcome.TASK_ID_MISMATCH, stored.job_id, [])
    return _write(repo, planned, callback, stored)


def _write(
    repo: Repository, planned: _Plan, callback: _Callback, stored: QueuedCallback
) -> CallbackResult:
    """Write ``planned`` in the caller's transaction (see :func:`apply_callback`)."""
    job = planned.job
    repo.update_job(job.id, **planned.values)
    plan = planned.plan
    transition = plan.transition
    keep_body = plan.keeps_body
    if keep_body or repo.count_callbacks(job.id) <= MAX_CALLBACKS_PER_JOB:
        repo.settle_callback(
            stored.id,
            outcome=transition.outcome.value,
            keep_body=keep_body,
            unsafe_urls=callback.unsafe_urls,
        )
    else:
        repo.drop_callback(stored.id)
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
        job = JobNotFound.require(uow.repo.get_job(claims.job_id), f"no job {claims.job_id}")
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
