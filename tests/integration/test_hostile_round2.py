"""Hostile world, round two (issue 16): what one genuine replyRef must not be able to do.

Everything goes through the real Flask app over a real database (a SQLite file, then
PostgreSQL); the receiver itself is never patched.
"""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.conftest import JobFactory, subscribe, table_counts, task_body

TASK = "user:1-runwayml:sim@example.com-task:t-1"


def post(client: FlaskClient, body: Any) -> Any:
    return client.post("/callbacks/useapi", data=json.dumps(body), content_type="application/json")


def job_state(engine: Engine, job_id: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT status, task_id, progress, progress_text, artifacts, sequence, "
                "updated_at, last_callback_at FROM jobs WHERE id = :j"
            ),
            {"j": job_id},
        ).one()
    return tuple(row)


def refusals(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT reason, job_id FROM refused_callbacks ORDER BY id"))
        return [(r[0], r[1]) for r in rows]


# -- 2. a bound job stays bound -------------------------------------------------------------


def test_callback_without_task_id_for_a_bound_job_is_refused_and_changes_nothing(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    job, ref = make_job()
    assert post(client, task_body(ref, "RUNNING", progressRatio=0.2)).status_code == 200
    assert job_state(engine, job.id)[1] == TASK  # bound by its first callback
    before, counts = job_state(engine, job.id), table_counts(engine)

    for body in (
        {k: v for k, v in task_body(ref, "SUCCEEDED").items() if k != "taskId"},
        task_body(ref, "FAILED", taskId=None, error="forged"),
        task_body(ref, "SUCCEEDED", taskId=""),
    ):
        r = post(client, body)
        assert r.status_code == 403, r.json
        assert r.json["error"]["code"] == "task_id_mismatch"

    assert job_state(engine, job.id) == before
    assert table_counts(engine) == counts
    assert refusals(engine) == [("task_id_mismatch", job.id)] * 3
    # the genuine callback, with its taskId, still goes through
    assert post(client, task_body(ref, "SUCCEEDED")).json["outcome"] == "applied"


def test_unbound_job_is_still_bound_by_a_callback_without_task_id_later(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """Before binding, a callback without taskId is applied (the vendor's first callback may
    come before the create's answer); the first taskId seen binds the job."""
    job, ref = make_job()
    r = post(client, task_body(ref, "PENDING", taskId=None))
    assert r.status_code == 200, r.json
    assert job_state(engine, job.id)[:2] == ("PENDING", None)
    assert post(client, task_body(ref, "RUNNING")).status_code == 200
    assert job_state(engine, job.id)[1] == TASK
