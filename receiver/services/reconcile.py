"""``relay reconcile``: the safety net for a lost callback (SPEC invariant 5). Never part of
the normal path; meant for a scheduled one-off run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError

from client import ReplyRefClaims, UseapiClient, UseapiError
from receiver.domain.tasks import Outcome
from receiver.errors import ServiceError
from receiver.ingest import applier as ingest_applier  # a module: it imports services too
from receiver.services.callbacks import ApplyOptions, job_account
from receiver.store.uow import UnitOfWork


def reconcile(
    engine: Engine,
    client: UseapiClient,
    cutoff: datetime,
    clock: Callable[[], datetime],
    *,
    limit: int = 500,
    hold_succeeded: bool = False,
    allow_http_artifacts: bool = False,
) -> list[dict[str, Any]]:
    """One ``GET /tasks/{taskId}`` per live job whose last callback (or creation) is older
    than ``cutoff``, stored and applied exactly like a callback, at once
    (:func:`receiver.ingest.applier.store_and_apply`).

    :param clock: a callable returning the current aware UTC time.
    :param limit: the most jobs looked at in one pass.
    :param hold_succeeded: ``ARTIFACT_STORE`` is set (see :class:`ApplyOptions`).
    :param allow_http_artifacts: ``ALLOW_PRIVATE_URLS`` (see :class:`ApplyOptions`).
    :returns: one ``{"job_id", "task_id", "outcome" | "error"}`` per job looked at; a vendor
        or database refusal costs that job, not the pass.
    """
    options = ApplyOptions(hold_succeeded=hold_succeeded, allow_http_artifacts=allow_http_artifacts)
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
            task = client.get_task(job.task_id, email=job_account(job))
        except UseapiError as exc:
            results.append({"job_id": job.id, "task_id": job.task_id, "error": str(exc)})
            continue
        if not task.taskId:  # the answer to GET /tasks/{taskId} is about that task
            task = task.model_copy(update={"taskId": job.task_id})
        claims = ReplyRefClaims(job_id=job.id, metadata=job.metadata, issued_at=job.created_at)
        body = task.model_dump(mode="json", exclude_none=True)
        body["reconciled"] = True
        try:
            _, result = ingest_applier.store_and_apply(
                engine,
                options,
                claims=claims,
                task=task,
                body=body,
                body_sha256="",
                source_ip="reconcile",
                now=clock(),
            )
        except (ServiceError, DataError) as exc:  # one bad answer costs this job, not the pass
            error = str(exc) if isinstance(exc, ServiceError) else "the database refused the answer"
            results.append({"job_id": job.id, "task_id": job.task_id, "error": error})
            continue
        # None: applied by a worker's applier first, or held back after a failure
        outcome = result.outcome.value if result is not None else Outcome.QUEUED.value
        results.append({"job_id": job.id, "task_id": job.task_id, "outcome": outcome})
    return results
