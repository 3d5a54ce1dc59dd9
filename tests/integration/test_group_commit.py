"""Group commit (receiver/store/batch.py), which stores the callbacks of the moment together.

Real threads on a real SQLite file (and PostgreSQL): pieces of work that arrive while a
transaction is open are committed together in the next one, one piece's exception rolls back
only that piece, and callbacks stored together by many threads, applied by appliers running at
the same time, end as if they had come one at a time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from client import ReplyRefClaims, ReplyRefSigner, VendorTask
from receiver import create_app, services
from receiver.clock import utcnow
from receiver.ingest.applier import apply_batch, apply_pending
from receiver.runtime import Runtime, build_runtime
from receiver.services import ApplyOptions, StoredCallback
from receiver.store.batch import GroupCommit, group_commit
from receiver.store.repositories import Repository
from tests.conftest import ADMIN_TOKEN, JobFactory, make_settings, subscribe, task_body
from tests.integration.sqlite_writers import refusal


@pytest.fixture
def sqlite_runtime(sqlite_url: str) -> Any:
    rt = build_runtime(make_settings(sqlite_url))
    yield rt
    rt.engine.dispose()


def _refusal(reason: str) -> Callable[[Repository], str]:
    store = refusal(reason)

    def write(repo: Repository) -> str:
        store(repo)
        if reason == "boom":
            raise ValueError("this piece fails after writing")
        if reason == "exit":
            raise SystemExit(3)
        return reason

    return write


def _store(engine: Engine, claims: ReplyRefClaims, body: dict[str, Any]) -> StoredCallback:
    """What the callback route does once the body is verified and validated."""
    return services.store_callback(
        engine,
        claims=claims,
        task=VendorTask.model_validate(body),
        body=body,
        body_sha256="0" * 64,
        source_ip=None,
        now=utcnow(),
    )


def _reasons(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(text("SELECT reason FROM refused_callbacks")))


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _hold_the_transaction(gc: GroupCommit) -> tuple[threading.Thread, threading.Event]:
    """A first piece of work that keeps its transaction open until the event is set, so that
    the pieces submitted meanwhile queue for the next transaction."""
    entered, release = threading.Event(), threading.Event()

    def blocker(repo: Repository) -> str:
        entered.set()
        assert release.wait(10)
        return _refusal("first")(repo)

    thread = threading.Thread(target=gc.run, args=(blocker,))
    thread.start()
    assert entered.wait(10)
    return thread, release


def _queue_behind_a_held_transaction(gc: GroupCommit, reasons: list[str]) -> dict[str, Any]:
    """Hold a transaction open, queue one piece per reason from as many threads, let go, and
    return what each thread got (its value or its exception)."""
    first, release = _hold_the_transaction(gc)
    results: dict[str, Any] = {}

    def submit(reason: str) -> None:
        try:
            results[reason] = gc.run(_refusal(reason), key=reason)
        except BaseException as exc:  # what this thread got, SystemExit included
            results[reason] = exc

    others = [threading.Thread(target=submit, args=(r,)) for r in reasons]
    for thread in others:
        thread.start()
    _wait_until(lambda: gc.queued == len(reasons))
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    return results


def test_work_queued_meanwhile_commits_together(sqlite_runtime: Runtime) -> None:
    engine = sqlite_runtime.engine
    gc = GroupCommit(engine)
    results = _queue_behind_a_held_transaction(gc, ["a", "b", "c", "d"])
    assert (gc.batches, gc.pieces) == (2, 5)  # the first alone, then the four together
    assert results == {"a": "a", "b": "b", "c": "c", "d": "d"}
    assert _reasons(engine) == ["a", "b", "c", "d", "first"]


def test_a_failing_piece_fails_alone_and_the_others_are_kept(sqlite_runtime: Runtime) -> None:
    engine = sqlite_runtime.engine
    gc = GroupCommit(engine)
    results = _queue_behind_a_held_transaction(gc, ["a", "boom", "c"])
    assert results["a"] == "a" and results["c"] == "c"
    assert isinstance(results["boom"], ValueError)
    assert _reasons(engine) == ["a", "c", "first"]  # nothing of the failed piece, once each
    assert gc.pieces == 3  # the shared transaction was rolled back; each ran alone


def test_callbacks_stored_together_apply_in_arrival_order(sqlite_runtime: Runtime) -> None:
    engine = sqlite_runtime.engine
    subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    job, ref = JobFactory(sqlite_runtime)(task_id="user:1-runwayml:sim@example.com-task:t-1")
    claims = ReplyRefSigner(sqlite_runtime.settings.signing_keys).verify(ref, max_age=3600)
    gc = group_commit(engine)
    first, release = _hold_the_transaction(gc)
    stored: dict[str, StoredCallback] = {}

    def store(status: str, ratio: str) -> None:
        stored[status] = _store(engine, claims, task_body(ref, status, progressRatio=ratio))

    # Both queue behind the held transaction, in this order, and commit in one transaction.
    callers = [
        threading.Thread(target=store, args=("RUNNING", "0.5")),
        threading.Thread(target=store, args=("SUCCEEDED", "1")),
    ]
    for queued, thread in enumerate(callers, start=1):
        thread.start()
        _wait_until(lambda n=queued: gc.queued == n)  # type: ignore[misc]
    batches = gc.batches
    release.set()
    for thread in [first, *callers]:
        thread.join(10)
    assert gc.batches == batches + 2  # the held one, then the two callbacks together
    assert stored["RUNNING"].callback_id < stored["SUCCEEDED"].callback_id

    applied = apply_pending(engine, ApplyOptions(allow_http_artifacts=True)).applied
    assert [(a.callback_id, a.result.outcome.value) for a in applied] == [
        (stored["RUNNING"].callback_id, "applied"),
        (stored["SUCCEEDED"].callback_id, "applied"),
    ]
    with engine.connect() as conn:
        status, sequence = conn.execute(
            text("SELECT status, sequence FROM jobs WHERE id = :j"), {"j": job.id}
        ).one()
        events = [
            (row[0], json.loads(row[1])["data"]["status"])
            for row in conn.execute(
                text("SELECT sequence, payload FROM events WHERE job_id = :j ORDER BY sequence"),
                {"j": job.id},
            )
        ]
        deliveries = conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
    assert (status, sequence) == ("SUCCEEDED", 2)
    assert [seq for seq, _ in events] == [1, 2]
    assert events[-1][1] == "SUCCEEDED"
    assert deliveries == 2


def test_many_threads_many_jobs_end_in_the_same_state_as_one_at_a_time(
    database_url: str,
) -> None:
    """Every stage of every job stored from several threads at once (group commit) while two
    appliers apply them, on SQLite and PostgreSQL: each job ends SUCCEEDED with contiguous
    sequences, one terminal event last, and one callback record per request, none queued."""
    rt = build_runtime(make_settings(database_url))
    try:
        engine = rt.engine
        make_job = JobFactory(rt)
        jobs = [make_job(task_id=f"user:1-runwayml:sim@example.com-task:t-{n}") for n in range(12)]
        stages = [("RUNNING", "0.25"), ("RUNNING", "0.5"), ("RUNNING", "0.75"), ("SUCCEEDED", "1")]
        signer = ReplyRefSigner(rt.settings.signing_keys)
        work = [
            (
                signer.verify(ref, max_age=3600),
                task_body(ref, s, progressRatio=p, task_uuid=f"t-{n}"),
            )
            for n, (_, ref) in enumerate(jobs)
            for s, p in stages
        ]
        errors: list[BaseException] = []
        storing = threading.Event()
        storing.set()

        def run(items: list[tuple[Any, dict[str, Any]]]) -> None:
            try:
                for claims, body in items:
                    _store(engine, claims, body)
            except BaseException as exc:  # reported below
                errors.append(exc)

        def applier() -> None:
            try:
                while True:  # until the storers are done and nothing is left
                    done = not storing.is_set()
                    report = apply_batch(engine, ApplyOptions(), limit=8)
                    if done and not report.applied:
                        return
            except BaseException as exc:  # reported below
                errors.append(exc)

        appliers = [threading.Thread(target=applier) for _ in range(2)]
        threads = [threading.Thread(target=run, args=(work[i::6],)) for i in range(6)]
        for thread in [*appliers, *threads]:
            thread.start()
        for thread in threads:
            thread.join(60)
        storing.clear()
        for thread in appliers:
            thread.join(60)
        assert not any(t.is_alive() for t in [*appliers, *threads])
        assert errors == []
        with engine.connect() as conn:
            for job, _ in jobs:
                status, sequence = conn.execute(
                    text("SELECT status, sequence FROM jobs WHERE id = :j"), {"j": job.id}
                ).one()
                rows = conn.execute(
                    text("SELECT sequence, type FROM events WHERE job_id = :j ORDER BY sequence"),
                    {"j": job.id},
                ).all()
                assert status == "SUCCEEDED"
                assert (
                    [r[0] for r in rows]
                    == list(range(1, len(rows) + 1))
                    == list(range(1, sequence + 1))
                )
                assert [r[1] for r in rows].count("task.succeeded") == 1
                assert rows[-1][1] == "task.succeeded"
            assert conn.execute(text("SELECT count(*) FROM callbacks")).scalar_one() == len(work)
            queued = "SELECT count(*) FROM callbacks WHERE outcome = 'queued'"
            assert conn.execute(text(queued)).scalar_one() == 0
    finally:
        rt.engine.dispose()


def test_a_system_exit_in_one_piece_is_raised_in_its_own_thread_only(
    sqlite_runtime: Runtime,
) -> None:
    engine = sqlite_runtime.engine
    gc = GroupCommit(engine)
    results = _queue_behind_a_held_transaction(gc, ["a", "exit", "c"])
    assert results["a"] == "a" and results["c"] == "c"
    assert isinstance(results["exit"], SystemExit)
    assert _reasons(engine) == ["a", "c", "first"]
    assert gc.queued == 0


def test_reads_do_not_wait_for_a_writer(sqlite_runtime: Runtime) -> None:
    """Readiness, the API and the dashboard read as WAL readers: while a write transaction holds
    SQLite's write lock (and the process's writer queue), they still answer at once."""
    engine = sqlite_runtime.engine
    app = create_app(runtime=sqlite_runtime)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    gc = GroupCommit(engine)
    holder, release = _hold_the_transaction(gc)
    try:
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/tasks", headers=admin).status_code == 200
        assert client.get("/api/subscribers", headers=admin).status_code == 200
        assert client.get("/api/deliveries", headers=admin).status_code == 200
        # Had they queued behind the writer, they would have answered only once it gave up.
        assert holder.is_alive() and not release.is_set()
    finally:
        release.set()
        holder.join(10)
    assert _reasons(engine) == ["first"]
