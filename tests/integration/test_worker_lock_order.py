"""Three delivery workers on one PostgreSQL database never deadlock: every multi-row write of a
worker's transaction (attempt rows and kept deliveries, subscriber health, claims) takes its
row locks in one order. Real ``Worker`` loops in threads, real HTTP to a subscriber process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from receiver import create_app
from receiver.delivery.worker import Worker, WorkerConfig
from receiver.runtime import build_runtime
from receiver.store.engine import make_engine
from receiver.store.migrate import upgrade
from simulator.subscriber import SubscriberProcess
from tests.conftest import (
    JobFactory,
    fresh_postgres_database,
    make_settings,
    new_subscriber,
    require_postgres,
    task_body,
)
from tests.helpers import post_and_apply, sql_value, wait_until

pytestmark = pytest.mark.postgres

SUBSCRIBERS = 12
JOBS = 120  # one task.succeeded event each: 1,440 deliveries
WORKERS = 3


class Deadlocks(logging.Handler):
    """Counts the worker's failed transactions whose cause is a PostgreSQL deadlock."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return
        self.failures += 1
        exc: BaseException | None = record.exc_info[1]
        while exc is not None:
            if isinstance(exc, psycopg.errors.DeadlockDetected):
                self.count += 1
                return
            exc = exc.__cause__ or exc.__context__


@pytest.fixture
def database(postgres_base_url: str | None) -> Iterator[str]:
    """A database of this test's own, so that its deadlock counter counts only this test."""
    with fresh_postgres_database(require_postgres(postgres_base_url), "relay_locks_") as url:
        upgrade(url)
        yield url


def _deadlocks(engine: Engine) -> int:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(
            conn.execute(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
        )


def test_three_workers_take_locks_in_one_order(database: str) -> None:
    runtime = build_runtime(make_settings(database))
    stats = create_engine(database)
    engines: list[Engine] = []
    deadlocks = Deadlocks()
    worker_log = logging.getLogger("receiver.delivery.worker")
    worker_log.addHandler(deadlocks)
    try:
        with SubscriberProcess() as subscriber:
            ids = []
            for n in range(SUBSCRIBERS):
                sub = new_subscriber(runtime.engine, url=f"{subscriber.url}/{n}", max_in_flight=3)
                subscriber.add_secret(sub.secret)
                ids.append(sub.id)
            client = create_app(runtime=runtime).test_client()
            make_job = JobFactory(runtime)
            for n in range(JOBS):
                _, ref = make_job()
                body = task_body(
                    ref, "SUCCEEDED", task_uuid=f"lock-{n}", artifacts=[{"url": "https://x/v"}]
                )
                assert post_and_apply(client, body).status_code == 202
            expected = SUBSCRIBERS * JOBS
            before = _deadlocks(stats)

            config = WorkerConfig(
                retry_schedule=(0.05, 0.05, 0.05, 0.05, 0.05),
                timeout=10.0,
                concurrency=8,
                allow_private=True,
                disable_after=3600.0,
                idle_poll=0.2,
            )
            workers = []
            for n in range(WORKERS):
                engines.append(make_engine(database))
                workers.append(Worker(engines[-1], config, name=f"locks-{n}"))
            threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
            for thread in threads:
                thread.start()
            try:
                wait_until(
                    lambda: sql_value(
                        stats, "SELECT count(*) FROM deliveries WHERE status = 'succeeded'"
                    ),
                    lambda delivered: delivered == expected,
                    seconds=180,
                    every=0.2,
                )
            finally:
                for w in workers:
                    w.stop()
                for thread in threads:
                    thread.join(30)
            assert not any(thread.is_alive() for thread in threads)
            for engine in engines:
                engine.dispose()  # a backend reports its statistics at exit at the latest
            received = subscriber.wait_for(lambda rs: len(rs) >= expected, timeout=30)

            assert deadlocks.count == 0, f"{deadlocks.count} deadlocks in {deadlocks.failures}"
            assert deadlocks.failures == 0
            attempts = sql_value(stats, "SELECT count(*) FROM attempts")
            sends = sum(w.sent for w in workers)
            assert sends == attempts == len(received) == expected  # sends == deliveries
            assert all(r.verified and r.status_answered == 204 for r in received)
            assert len({(r.webhook_id, r.path) for r in received}) == expected
            # every worker took part, so their transactions did overlap
            assert all(w.sent > 0 for w in workers), [w.sent for w in workers]
            deadline = time.monotonic() + 1.5  # a backend reports its statistics as it ends
            while True:
                after = _deadlocks(stats)
                if after != before or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert after - before == 0
    finally:
        worker_log.removeHandler(deadlocks)
        for engine in engines:
            engine.dispose()
        stats.dispose()
        runtime.engine.dispose()
