"""The delivery worker's counters live in the database (``worker_metrics``), so that the web's
``/metrics`` shows what every worker did, wherever it runs: exact per recorded attempt, never
reset by pruning attempts, and safe when several workers record at once."""

from __future__ import annotations

from functools import partial

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete, func, select

from receiver import metrics
from receiver.store.tables import attempts, metadata, worker_metrics
from receiver.store.uow import UnitOfWork
from tests.conftest import JobFactory
from tests.helpers import run_in_threads
from tests.integration.test_metrics_logs import (
    deliver_after_one_retry,
    scrape,
    value,
)

ATTEMPTS = "runway_relay_delivery_attempts_total"
COUNT = "runway_relay_delivery_latency_seconds_count"
BUCKET = "runway_relay_delivery_latency_seconds_bucket"


def test_bucket_bounds_are_inclusive_and_the_histogram_is_cumulative() -> None:
    increments = metrics.worker_increments(
        [("success", 0.05), ("success", 0.051), ("success", 10**6), ("timeout", None)]
    )
    assert increments[("latency_bucket", "0.05")] == 1  # le="0.05" holds 0.05 itself
    assert increments[("latency_bucket", "0.1")] == 1
    assert increments[("latency_bucket", "+Inf")] == 1
    assert increments[("attempts", "success")] == 3 and increments[("attempts", "timeout")] == 1
    assert increments[("latency_count", "")] == 3
    assert abs(increments[("latency_sum", "")] - (0.101 + 10**6)) < 1e-6
    *_, attempts_family, latency = metrics.worker_families(increments)
    by_le = {s.labels["le"]: s.value for s in latency.samples if s.name.endswith("_bucket")}
    assert by_le["0.05"] == 1 and by_le["0.1"] == 2 and by_le["86400.0"] == 2
    assert by_le["+Inf"] == 3
    shown = {s.labels["outcome"]: s.value for s in attempts_family.samples}
    assert shown["success"] == 3 and shown["gone"] == 0  # every outcome shown, zero or not


def test_the_web_shows_the_worker_counts_from_the_database_even_after_pruning(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    before = scrape(client)
    deliver_after_one_retry(client, engine, make_job)
    # The rows the web reads, written by the worker's own transactions.
    with engine.connect() as conn:
        rows = {(r.name, r.label): r.value for r in conn.execute(select(worker_metrics))}
    assert rows[("attempts", "success")] >= 1 and rows[("attempts", "http_error")] >= 1
    after = scrape(client)
    for outcome in ("success", "http_error"):
        assert (
            value(after, ATTEMPTS, outcome=outcome) - value(before, ATTEMPTS, outcome=outcome) == 1
        )
    assert value(after, COUNT) - value(before, COUNT) == 1
    # Retention prunes attempts; the counters are monotonic and stay.
    with engine.begin() as conn:
        conn.execute(delete(attempts))
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == 0
    pruned = scrape(client)
    assert value(pruned, ATTEMPTS, outcome="success") == value(after, ATTEMPTS, outcome="success")
    assert value(pruned, BUCKET, le="+Inf") == value(after, BUCKET, le="+Inf") >= 1


def test_workers_recording_at_once_add_up_exactly(engine: Engine) -> None:
    """Two threads as two workers: each transaction adds to the same rows, in any order of
    its own; none is lost and none deadlocks (rows are written in sorted order)."""
    rounds = 40
    keys = [("attempts", o) for o in metrics.ATTEMPT_OUTCOMES]

    def record(reverse: bool) -> None:
        for _ in range(rounds):
            increments = {k: 1.0 for k in (reversed(keys) if reverse else keys)}
            with UnitOfWork(engine) as uow:
                uow.repo.add_to_worker_metrics(increments)
                uow.commit()

    run_in_threads(partial(record, False), partial(record, True), timeout=120)
    with UnitOfWork(engine, read_only=True) as uow:
        rows = uow.repo.read_worker_metrics()
    assert all(rows[k] == 2 * rounds for k in keys), rows


def test_the_migrations_build_the_worker_metrics_table_as_declared(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diffs = [
            d
            for d in compare_metadata(context, metadata)
            if "worker_metrics" in repr(d)  # this migration's table only (or its absence)
        ]
    assert diffs == []
