"""The dashboard's task pages: the overview, the task list and one task."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from flask import render_template, request

from client.catalog import KNOWN_MODELS
from receiver import views
from receiver.clock import utcnow
from receiver.domain.tasks import TaskStatus
from receiver.errors import JobNotFound
from receiver.web.context import runtime
from receiver.web.dashboard.blueprint import PAGE_SIZE, bp
from receiver.web.dashboard.filters import safe_link
from receiver.web.dashboard.forms import choice, not_found, parse_since


def shallow(model: Any) -> dict[str, Any]:
    """A read model's (a frozen dataclass's) fields as template variables, as they are."""
    return {f.name: getattr(model, f.name) for f in fields(model)}


@bp.get("/")
@bp.get("")  # registered first: url_for gives /dashboard
def overview() -> str:
    """Tasks by state, the last hour's callbacks, deliveries, troubled subscribers."""
    return render_template(
        "dashboard/overview.html",
        page="overview",
        states=[s.value for s in TaskStatus],
        **shallow(views.overview(runtime().engine, utcnow())),
    )


@bp.get("/tasks")
def tasks() -> str:
    """Jobs, newest first; filters ``state``, ``model``, ``since``; pages with ``before``."""
    state = choice("state", [s.value for s in TaskStatus])
    model = choice("model", KNOWN_MODELS)
    since_raw = request.args.get("since", "")
    filters = views.JobFilter(status=state, model=model, since=parse_since(since_raw, utcnow()))
    before = request.args.get("before") or None
    engine = runtime().engine
    page = views.jobs(engine, filters, before=before, limit=PAGE_SIZE)
    shown = {k: v for k, v in (("state", state), ("model", model), ("since", since_raw)) if v}
    return render_template(
        "dashboard/tasks.html",
        page="tasks",
        jobs=page.items,
        total=views.count_jobs(engine, filters),
        states=[s.value for s in TaskStatus],
        models=list(KNOWN_MODELS),
        state=state,
        model=model,
        since=since_raw,
        before=before,
        filters=shown,
        next_before=page.next_before,
    )


@bp.get("/tasks/<job_id>")
def task(job_id: str) -> str:
    """One job: its request, callbacks, events, and each delivery with its attempts.

    :raise 404: no such job.
    """
    try:
        history = views.task_history(runtime().engine, job_id)
    except JobNotFound:
        not_found(f"task {job_id[:60]}")
    return render_template(
        "dashboard/task.html",
        page="tasks",
        job=history.job,
        events=[(e.event, e.data, e.deliveries) for e in history.events],
        callbacks=history.callbacks,
        attempts=history.attempts,
        subscribers=history.subscribers,
        videos=[url for a in history.job.artifacts if (url := safe_link(a.get("url")))],
    )
