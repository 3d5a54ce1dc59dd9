"""Store, then apply (receiver/ingest/applier.py; SPEC invariant 3, issue 18).

Over a real SQLite file and a real PostgreSQL schema: the door stores a callback and changes
nothing else; the applier applies stored callbacks in arrival order, in one transaction per
batch; a callback whose application fails is kept, with its error, and tried again, while the
others of its batch go through; two appliers at once apply each callback exactly once; the
purge never removes a callback that is not applied yet.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from receiver import metrics
from receiver.clock import utcnow
from receiver.ingest.applier import RETRY_DELAYS, apply_batch, apply_pending
from receiver.runtime import Runtime
from receiver.services.callbacks import ApplyOptions
from receiver.store import retention
from receiver.store.uow import UnitOfWork
from tests.conftest import JobFactory, subscribe, table_counts, task_body
from tests.helpers import post_callback, run_in_threads, sql_column, sql_rows
from tests.integration.test_dashboard import Operator

OPTIONS = ApplyOptions(allow_http_artifacts=True)


@pytest.fixture(autouse=True)
def subscriber(engine: Engine) -> str:
    """Every test here has one subscriber to every event type: an applied callback writes its
    event's delivery."""
    return subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])


def callbacks_of(engine: Engine) -> list[dict[str, Any]]:
    rows = sql_rows(
        engine,
        "SELECT id, job_id, outcome, body, apply_attempts, apply_error, apply_after "
        "FROM callbacks ORDER BY id",
    )
    out = []
    for r in rows:
        row = dict(r._mapping)
        if isinstance(row["body"], str):
            row["body"] = json.loads(row["body"])
        out.append(row)
    return out


def job_status(engine: Engine, job_id: str) -> tuple[str, int]:
    (row,) = sql_rows(engine, "SELECT status, sequence FROM jobs WHERE id = :j", j=job_id)
    return row[0], row[1]


def test_the_door_stores_the_callback_and_changes_nothing_else(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job()
    before = table_counts(engine)
    body = task_body(ref, "RUNNING", progressRatio="0.5")

    r = post_callback(client, body)

    assert r.status_code == 202, r.json
    assert r.json == {
        "accepted": True,
        "outcome": "queued",
        "job_id": job.id,
        "callback_id": r.json["callback_id"],
    }
    stored = callbacks_of(engine)
    assert [(c["id"], c["outcome"]) for c in stored] == [(r.json["callback_id"], "queued")]
    assert stored[0]["body"] == body  # as received, to be applied from
    after = table_counts(engine)
    assert after == {**before, "callbacks": before["callbacks"] + 1}  # no event, no delivery
    assert job_status(engine, job.id) == ("SUBMITTING", 0)

    report = apply_pending(engine, OPTIONS)

    assert [(a.callback_id, a.result.outcome.value) for a in report.applied] == [
        (r.json["callback_id"], "applied")
    ]
    assert job_status(engine, job.id) == ("RUNNING", 1)
    assert table_counts(engine)["deliveries"] == before["deliveries"] + 1
    assert callbacks_of(engine)[0]["outcome"] == "applied"


def test_a_batch_applies_each_jobs_callbacks_in_arrival_order(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    first, ref1 = make_job()
    second, ref2 = make_job()
    bodies = [
        task_body(ref1, "RUNNING", progressRatio="0.2"),
        task_body(ref2, "RUNNING", progressRatio="0.2", task_uuid="t-2"),
        task_body(ref1, "RUNNING", progressRatio="0.6"),
        task_body(ref1, "SUCCEEDED", progressRatio="1", artifacts=[{"url": "https://x/v.mp4"}]),
        task_body(ref1, "RUNNING", progressRatio="0.9"),  # late: after the end
        task_body(ref2, "RUNNING", progressRatio="0.2", task_uuid="t-2"),  # a duplicate
    ]
    ids = [post_callback(client, b).json["callback_id"] for b in bodies]

    report = apply_batch(engine, OPTIONS)

    outcome = {a.callback_id: a.result.outcome.value for a in report.applied}
    assert [outcome[i] for i in ids] == [
        "applied",
        "applied",
        "applied",
        "applied",
        "already_terminal",
        "duplicate",
    ]
    order = [a.callback_id for a in report.applied]
    assert sorted(order) == ids
    for mine in ([ids[0], ids[2], ids[3], ids[4]], [ids[1], ids[5]]):  # first's, second's
        assert [i for i in order if i in mine] == mine  # each job's in arrival order
    assert not report.deferred and not report.full
    assert job_status(engine, first.id) == ("SUCCEEDED", 3)
    assert job_status(engine, second.id) == ("RUNNING", 1)
    types = sql_column(
        engine, "SELECT type FROM events WHERE job_id = :j ORDER BY sequence", j=first.id
    )
    assert types == ["task.progress", "task.progress", "task.succeeded"]
    kept = {c["id"]: c["body"] is not None for c in callbacks_of(engine)}
    assert kept == dict(zip(ids, [True, True, True, True, False, False], strict=True))
    assert apply_batch(engine, OPTIONS).applied == []  # nothing left


def _store_raw(engine: Engine, job_id: str, body: Any) -> int:
    """A stored callback written as the door writes it, with a body of our choosing (one
    that the door would have refused stands for a bug of ours between storing and applying)."""
    with UnitOfWork(engine) as uow:
        callback_id = uow.repo.queue_callback(
            job_id=job_id,
            received_at=utcnow(),
            status=None,
            progress=None,
            body=body,
            body_sha256="0" * 64,
            source_ip=None,
        )
        uow.commit()
    return callback_id


def test_a_callback_that_fails_to_apply_is_kept_and_tried_again_and_the_others_go_through(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job()
    other, other_ref = make_job()
    good = post_callback(client, task_body(ref, "RUNNING", progressRatio="0.3")).json
    poison = _store_raw(engine, other.id, ["not", "a", "task", "object"])
    after = post_callback(client, task_body(ref, "RUNNING", progressRatio="0.7")).json

    report = apply_batch(engine, OPTIONS)

    assert [a.callback_id for a in report.applied] == [good["callback_id"], after["callback_id"]]
    assert report.deferred == [poison]
    assert job_status(engine, job.id) == ("RUNNING", 2)
    row = {c["id"]: c for c in callbacks_of(engine)}[poison]
    assert row["outcome"] == "queued" and row["apply_attempts"] == 1
    assert "not a task object" in row["apply_error"]
    assert row["body"] == ["not", "a", "task", "object"]  # kept as stored
    scraped = metrics.render(engine).decode()
    assert "runway_relay_callbacks_queued 1.0" in scraped
    assert "runway_relay_callbacks_failing 1.0" in scraped

    # held back until its time; then tried again (and failing again, counted)
    assert apply_batch(engine, OPTIONS).applied == []
    later = utcnow() + timedelta(seconds=RETRY_DELAYS[0] + 1)
    again = apply_batch(engine, OPTIONS, now=later)
    assert again.deferred == [poison]
    assert {c["id"]: c for c in callbacks_of(engine)}[poison]["apply_attempts"] == 2
    assert job_status(engine, other.id) == ("SUBMITTING", 0)


def test_the_api_and_the_dashboard_show_why_a_callback_is_not_applied(
    client: FlaskClient, engine: Engine, make_job: JobFactory, admin: dict[str, str]
) -> None:
    job, ref = make_job()
    applied = post_callback(client, task_body(ref, "RUNNING", progressRatio="0.3")).json
    poison = _store_raw(engine, job.id, ["not", "a", "task", "object"])
    assert apply_batch(engine, OPTIONS).deferred == [poison]

    detail = client.get(f"/api/tasks/{job.id}", headers=admin)
    assert detail.status_code == 200
    shown = {c["outcome"]: c for c in detail.json["callbacks"]}
    assert shown["applied"]["apply_error"] is None and shown["applied"]["apply_attempts"] == 0
    assert shown["queued"]["apply_attempts"] == 1
    assert "not a task object" in shown["queued"]["apply_error"]
    assert applied["callback_id"] != poison

    operator = Operator(client)
    assert operator.sign_in() == 303
    html = operator.page(f"/dashboard/tasks/{job.id}")
    assert html.count('data-testid="apply-error"') == 1
    assert "failed 1 time, retried" in html
    assert re.search(r'data-testid="apply-error-text">[^<]*not a task object', html)


def test_two_appliers_at_once_apply_each_callback_exactly_once(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    jobs = [make_job() for _ in range(6)]
    posted = 0
    for step in range(1, 6):  # 30 callbacks, each moving its job forward
        for index, (_, ref) in enumerate(jobs):
            body = task_body(ref, "RUNNING", progressRatio=str(step / 10), task_uuid=f"t-{index}")
            assert post_callback(client, body).status_code == 202
            posted += 1
    results: list[list[int]] = []

    def applier() -> None:
        mine: list[int] = []
        while True:
            report = apply_batch(engine, OPTIONS, limit=4)
            mine.extend(a.callback_id for a in report.applied)
            if not report.applied:
                break
        results.append(mine)

    run_in_threads(applier, applier, timeout=60)
    applied = sorted(i for mine in results for i in mine)
    assert len(applied) == posted and len(set(applied)) == posted  # each once
    assert {c["outcome"] for c in callbacks_of(engine)} == {"applied"}
    for job, _ in jobs:
        assert job_status(engine, job.id) == ("RUNNING", 5)
    assert table_counts(engine)["events"] == posted


def test_the_purge_keeps_a_callback_that_is_not_applied_yet(
    runtime: Runtime, engine: Engine, make_job: JobFactory
) -> None:
    job, _ = make_job()
    with UnitOfWork(engine) as uow:  # created and finished 40 days ago
        uow.repo.update_job(
            job.id,
            status="SUCCEEDED",
            created_at=utcnow() - timedelta(days=40, minutes=5),
            finished_at=utcnow() - timedelta(days=40),
            updated_at=utcnow() - timedelta(days=40),
        )
        uow.commit()
    old = utcnow() - timedelta(days=40)
    with UnitOfWork(engine) as uow:
        queued = uow.repo.queue_callback(
            job_id=job.id,
            received_at=old,
            status="SUCCEEDED",
            progress=None,
            body={"status": "SUCCEEDED"},
            body_sha256="1" * 64,
            source_ip=None,
        )
        uow.repo.add_callback(
            job_id=job.id,
            received_at=old,
            status="RUNNING",
            progress=None,
            outcome="applied",
            body={"status": "RUNNING"},
            body_sha256="2" * 64,
            source_ip=None,
        )
        uow.commit()

    retention.purge(engine, retention.cutoff_for(30), pause=0.0)

    assert [(c["id"], c["outcome"]) for c in callbacks_of(engine)] == [(queued, "queued")]
    assert table_counts(engine)["jobs"] == 1  # its job stays with it
