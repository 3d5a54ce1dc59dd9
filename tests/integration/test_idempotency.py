"""The idempotency layer on a real SQLite file and PostgreSQL: the database settles concurrent
claims of one key (one engine per thread, as separate processes would have), and the key's
life (in flight, completed and replayed, freed) follows what the submission did.

The submissions here are plain functions standing in for ``services.submit_task``; the layer
never looks inside it (the real one, through gunicorn and the simulator, is in
``tests/e2e/test_idempotency.py``)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from client.errors import InsufficientCredits, OutcomeUnknown
from receiver import idempotency, services
from receiver.clock import utcnow
from receiver.store.engine import make_engine
from receiver.store.repositories import Job
from tests.conftest import JobFactory


def key_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM idempotency_keys ORDER BY created_at"))
        return [dict(r._mapping) for r in rows]


def test_concurrent_claims_of_one_key_let_exactly_one_through(database_url: str) -> None:
    threads = 8
    engines = [make_engine(database_url, pool_size=1, max_overflow=0) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    results: list[str] = []
    lock = threading.Lock()
    digest = idempotency.fingerprint("test", {"a": 1})

    def race(engine: Engine) -> None:
        barrier.wait(timeout=10)
        try:
            claimed = idempotency.claim(engine, "key-1", digest, utcnow())
            outcome = "claimed" if claimed is None else "replay"
        except idempotency.IdempotencyKeyInFlight:
            outcome = "in_flight"
        with lock:
            results.append(outcome)

    try:
        workers = [threading.Thread(target=race, args=(e,)) for e in engines]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=30)
        assert sorted(results) == ["claimed"] + ["in_flight"] * (threads - 1)
        rows = key_rows(engines[0])
        assert len(rows) == 1 and rows[0]["state"] == "in_flight"
    finally:
        for e in engines:
            e.dispose()


def test_fingerprint_ignores_key_order_and_spacing_only() -> None:
    a = idempotency.fingerprint("POST /api/tasks", {"prompt": "x", "metadata": {"a": 1, "b": 2}})
    b = idempotency.fingerprint("POST /api/tasks", {"metadata": {"b": 2, "a": 1}, "prompt": "x"})
    c = idempotency.fingerprint("POST /api/tasks", {"prompt": "y", "metadata": {"a": 1, "b": 2}})
    d = idempotency.fingerprint("relay submit", {"prompt": "x", "metadata": {"a": 1, "b": 2}})
    assert a == b and len({a, c, d}) == 3


@pytest.mark.parametrize(
    ("value", "ok"),
    [("k", True), (" padded ", True), ("x" * 255, True), ("", False), ("   ", False),
     ("x" * 256, False), ("tab\there", False), ("caf\u00e9", False)],
)  # fmt: skip
def test_key_rules(value: str, ok: bool) -> None:
    if ok:
        assert idempotency.check_key(value) == value.strip()
    else:
        with pytest.raises(idempotency.InvalidIdempotencyKey):
            idempotency.check_key(value)


def test_success_is_replayed_as_the_job_is_now(engine: Engine, make_job: JobFactory) -> None:
    calls: list[int] = []
    job, _ = make_job(task_id="user:1-runwayml:a@b.c-task:one")

    def submit() -> Job:
        calls.append(1)
        return job

    ok = idempotency.submission_created_nothing
    first = idempotency.submit_once(engine, "k1", {"p": 1}, submit, created_nothing=ok)
    again = idempotency.submit_once(engine, "k1", {"p": 1}, submit, created_nothing=ok)
    assert first.id == again.id == job.id and calls == [1]
    (row,) = key_rows(engine)
    assert row["state"] == "completed" and row["job_id"] == job.id
    assert row["response_status"] == 201 and row["response_body"] is None
    with pytest.raises(idempotency.IdempotencyKeyReused):
        idempotency.submit_once(engine, "k1", {"p": 2}, submit, created_nothing=ok)
    assert calls == [1]


def test_a_refusal_frees_the_key_and_an_unknown_outcome_keeps_it(
    engine: Engine, make_job: JobFactory
) -> None:
    job, _ = make_job()
    ok = idempotency.submission_created_nothing

    def refused() -> Job:
        raise services.SubmissionFailed(job.id, InsufficientCredits("no credits", http_status=412))

    def lost() -> Job:
        raise services.SubmissionFailed(job.id, OutcomeUnknown("read timed out"))

    with pytest.raises(services.SubmissionFailed):
        idempotency.submit_once(engine, "k2", {"p": 1}, refused, created_nothing=ok)
    assert key_rows(engine) == []  # freed: a corrected retry may use the key
    with pytest.raises(services.SubmissionFailed):
        idempotency.submit_once(engine, "k2", {"p": 1}, lost, created_nothing=ok)
    (row,) = key_rows(engine)
    assert row["state"] == "completed" and row["job_id"] == job.id
    assert row["response_status"] == 502
    calls: list[int] = []

    def never() -> Job:
        calls.append(1)
        raise AssertionError("a kept failure must not be submitted again")

    with pytest.raises(idempotency.ReplayedError) as replayed:
        idempotency.submit_once(engine, "k2", {"p": 1}, never, created_nothing=ok)
    assert calls == [] and replayed.value.job_id == job.id
    assert "read timed out" in str(replayed.value)


def test_in_flight_key_says_it_may_be_stale_after_a_while(engine: Engine) -> None:
    digest = idempotency.fingerprint("test", {})
    long_ago = utcnow() - timedelta(seconds=idempotency.STALE_AFTER_SECONDS + 60)
    assert idempotency.claim(engine, "k3", digest, long_ago) is None
    with pytest.raises(idempotency.IdempotencyKeyInFlight) as fresh:
        idempotency.claim(engine, "k3", digest, long_ago + timedelta(seconds=1))
    assert "retry when it has finished" in str(fresh.value)
    with pytest.raises(idempotency.IdempotencyKeyInFlight) as stale:
        idempotency.claim(engine, "k3", digest, utcnow())
    assert "may have died" in str(stale.value)
