"""The dashboard's task pages: the overview, the task list and one task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import render_template, request

from client.catalog import KNOWN_MODELS
from receiver import presenters
from receiver.clock import utcnow
from receiver.domain.tasks import TaskStatus
from receiver.store.repositories import Delivery, Event, Job
from receiver.store.uow import UnitOfWork
from receiver.web.context import runtime
from receiver.web.dashboard.blueprint import PAGE_SIZE, bp
from receiver.web.dashboard.filters import safe_link
from receiver.web.dashboard.forms import choice, not_found, one_page, parse_since


@bp.get("/")
@bp.get("")  # registered first: url_for gives /dashboard
def overview() -> str:
    """Tasks by state, the last hour's callbacks, deliveries, troubled subscribers."""
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        repo = uow.repo
        tasks = repo.count_jobs_by_status()
        accepted = repo.count_callbacks_by_outcome_since(hour_ago)
        refused = repo.count_refused_since(hour_ago)
        deliveries = repo.count_deliveries_by_status()
        oldest = repo.oldest_pending_delivery()
        subscribers = repo.list_subscribers()
        recent = repo.list_jobs(limit=8)
    troubled = [s for s in subscribers if not s.enabled or s.failing_since is not None]
    return render_template(
        "dashboard/overview.html",
        page="overview",
        states=[s.value for s in TaskStatus],
        tasks=tasks,
        accepted=accepted,
        refused=refused,
        deliveries=deliveries,
        oldest_age=(now - oldest).total_seconds() if oldest else None,
        troubled=troubled,
        subscriber_count=len(subscribers),
        recent=recent,
    )


@bp.get("/tasks")
def tasks() -> str:
    """Jobs, newest first; filters ``state``, ``model``, ``since``; pages with ``before``."""
    state = choice("state", [s.value for s in TaskStatus])
    model = choice("model", KNOWN_MODELS)
    since_raw = request.args.get("since", "")
    since = parse_since(since_raw, utcnow())
    before = request.args.get("before") or None
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        jobs = uow.repo.list_jobs(
            status=state, model=model, since=since, before_id=before, limit=PAGE_SIZE + 1
        )
        total = uow.repo.count_jobs(status=state, model=model, since=since)
    jobs, next_before = one_page(jobs)
    filters = {k: v for k, v in (("state", state), ("model", model), ("since", since_raw)) if v}
    return render_template(
        "dashboard/tasks.html",
        page="tasks",
        jobs=jobs,
        total=total,
        states=[s.value for s in TaskStatus],
        models=list(KNOWN_MODELS),
        state=state,
        model=model,
        since=since_raw,
        before=before,
        filters=filters,
        next_before=next_before,
    )


@bp.get("/tasks/<job_id>")
def task(job_id: str) -> str:
    """One job: its request, callbacks, events, and each delivery with its attempts.

    :raise 404: no such job.
    """
    with UnitOfWork(runtime().engine, read_only=True) as uow:
        repo = uow.repo
        job = repo.get_job(job_id)
        if job is None:
            not_found(f"task {job_id[:60]}")
        events = repo.list_events(job_id)
        callbacks = repo.list_callbacks(job_id)
        deliveries = repo.list_deliveries(job_id=job_id, limit=1000)
        attempts = repo.attempts_by_delivery([d.id for d in deliveries])
        subscribers = repo.subscribers_by_id(sorted({d.subscriber_id for d in deliveries}))
    by_event: dict[str, list[Delivery]] = {}
    for delivery in sorted(deliveries, key=lambda d: d.id):
        by_event.setdefault(delivery.event_id, []).append(delivery)
    return render_template(
        "dashboard/task.html",
        page="tasks",
        job=job,
        events=[(e, _event_data(e), by_event.get(e.id, [])) for e in events],
        callbacks=callbacks,
        attempts=attempts,
        subscribers=subscribers,
        videos=_videos(job),
    )


def _event_data(event: Event) -> dict[str, Any]:
    data = presenters.event_json(event).get("data")
    return data if isinstance(data, dict) else {}


def _videos(job: Job) -> list[str]:
    return [url for a in job.artifacts if (url := safe_link(a.get("url")))]
