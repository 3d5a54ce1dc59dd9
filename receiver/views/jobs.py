"""Reading jobs: one job, a filtered page of them, a job's whole history, and the dashboard's
overview. Each function runs one read-only unit of work."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from receiver.errors import JobNotFound
from receiver.store import repositories as store
from receiver.store.uow import UnitOfWork
from receiver.views.pages import Page
from receiver.views.schemas import Job, JobDetail, event_data

#: Most deliveries :func:`job_detail` lists (newest first).
DETAIL_DELIVERIES = 200
#: Most deliveries :func:`task_history` reads (the dashboard's task page shows all of them).
HISTORY_DELIVERIES = 1000
#: Jobs on the overview's "recent" list.
RECENT_JOBS = 8


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows: each filter only when given. ``since``: created at or after.
    The fields are :meth:`~receiver.store.repositories.Repository.list_jobs`'s and
    :meth:`~receiver.store.repositories.Repository.count_jobs`'s arguments."""

    status: str | None = None
    model: str | None = None
    since: datetime | None = None


def job(engine: Engine, job_id: str) -> Job:
    """The job ``job_id``, as the API answers it.

    :raises JobNotFound: there is none.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        row = uow.repo.get_job(job_id)
    return Job.of(JobNotFound.require(row, f"no job {job_id}"))


def job_detail(engine: Engine, job_id: str) -> JobDetail:
    """The job ``job_id`` with its events, the callbacks received and its deliveries (the
    newest :data:`DETAIL_DELIVERIES`), read in one transaction.

    :raises JobNotFound: there is none.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        found = _history(uow.repo, job_id, DETAIL_DELIVERIES)
    return JobDetail.with_history(found.job, found.events, found.callbacks, found.deliveries)


@dataclass(frozen=True)
class _Rows:
    job: store.Job
    events: list[store.Event]
    callbacks: list[store.CallbackRecord]
    deliveries: list[store.Delivery]


def _history(repo: store.Repository, job_id: str, most_deliveries: int) -> _Rows:
    """The job's row, its events, callbacks and newest deliveries. :raises JobNotFound:"""
    return _Rows(
        job=JobNotFound.require(repo.get_job(job_id), f"no job {job_id}"),
        events=repo.list_events(job_id),
        callbacks=repo.list_callbacks(job_id),
        deliveries=repo.list_deliveries(job_id=job_id, limit=most_deliveries),
    )


def jobs(
    engine: Engine, filters: JobFilter, *, before: str | None = None, limit: int = 50
) -> Page[store.Job]:
    """Up to ``limit`` jobs matching ``filters``, newest first, older than the job id
    ``before`` when given; ``next_before`` pages on."""
    with UnitOfWork(engine, read_only=True) as uow:
        return Page.read(uow.repo.list_jobs, before, limit, **asdict(filters))


def count_jobs(engine: Engine, filters: JobFilter) -> int:
    """How many jobs match ``filters`` (all the pages of :func:`jobs`)."""
    with UnitOfWork(engine, read_only=True) as uow:
        return uow.repo.count_jobs(**asdict(filters))


@dataclass(frozen=True)
class EventHistory:
    """One event of a job: its row, its webhook ``data`` and its deliveries (oldest first)."""

    event: store.Event
    data: dict[str, Any]
    deliveries: list[store.Delivery]


@dataclass(frozen=True)
class TaskHistory:
    """A job and everything that happened to it, for the dashboard's task page.

    ``attempts``: each delivery's attempts by delivery id; ``subscribers``: the subscribers
    of those deliveries by id (removed ones included, as history)."""

    job: store.Job
    events: list[EventHistory]
    callbacks: list[store.CallbackRecord]
    attempts: dict[str, list[store.Attempt]]
    subscribers: dict[str, store.Subscriber]


def task_history(engine: Engine, job_id: str) -> TaskHistory:
    """The job ``job_id`` with its callbacks, events and each event's deliveries and attempts
    (up to :data:`HISTORY_DELIVERIES`), read in one transaction.

    :raises JobNotFound: there is none.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        found = _history(uow.repo, job_id, HISTORY_DELIVERIES)
        deliveries = found.deliveries
        attempts = uow.repo.attempts_by_delivery([d.id for d in deliveries])
        subscribers = uow.repo.subscribers_by_id(sorted({d.subscriber_id for d in deliveries}))
    by_event: dict[str, list[store.Delivery]] = {}
    for delivery in sorted(deliveries, key=lambda d: d.id):
        by_event.setdefault(delivery.event_id, []).append(delivery)
    return TaskHistory(
        job=found.job,
        events=[EventHistory(e, event_data(e), by_event.get(e.id, [])) for e in found.events],
        callbacks=found.callbacks,
        attempts=attempts,
        subscribers=subscribers,
    )


@dataclass(frozen=True)
class Overview:
    """The dashboard's front page: jobs by status, the last hour's accepted callbacks by outcome
    and refused ones by reason, deliveries by status, the age of the oldest pending delivery
    (seconds, None when none waits), the disabled or failing subscribers, how many subscribers
    there are, and the newest jobs."""

    tasks: dict[str, int]
    accepted: dict[str, int]
    refused: dict[str, int]
    deliveries: dict[str, int]
    oldest_age: float | None
    troubled: list[store.Subscriber]
    subscriber_count: int
    recent: list[store.Job]


def overview(engine: Engine, now: datetime) -> Overview:
    """The :class:`Overview` at ``now``, read in one transaction."""
    hour_ago = now - timedelta(hours=1)
    with UnitOfWork(engine, read_only=True) as uow:
        repo = uow.repo
        tasks = repo.count_jobs_by_status()
        accepted = repo.count_callbacks_by_outcome_since(hour_ago)
        refused = repo.count_refused_since(hour_ago)
        deliveries = repo.count_deliveries_by_status()
        oldest = repo.oldest_pending_delivery()
        subscribers = repo.list_subscribers()
        recent = repo.list_jobs(limit=RECENT_JOBS)
    return Overview(
        tasks=tasks,
        accepted=accepted,
        refused=refused,
        deliveries=deliveries,
        oldest_age=(now - oldest).total_seconds() if oldest else None,
        troubled=[s for s in subscribers if not s.enabled or s.failing_since is not None],
        subscriber_count=len(subscribers),
        recent=recent,
    )
