"""Scale-out on PostgreSQL: 2 gunicorn web processes and 3 `relay worker` processes sharing one
database; hundreds of tasks whose thousands of callbacks come from the simulator; 3
subscribers, each a process of its own. Every (event, subscriber) is delivered, at least once,
with exactly one successful attempt; every extra request is accounted for: a recorded failed
attempt (with no crash, requests received == attempt rows for every delivery), or a request the
killed worker had in flight."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine

from simulator.demo import tiny_png
from simulator.subscriber import SubscriberProcess
from tests.e2e.conftest import Stack, _database
from tests.helpers import sql_column, sql_rows, sql_value, wait_until

pytestmark = pytest.mark.e2e

TASKS = 300
STEPS = 8  # progress callbacks per task, then one terminal: 2,700 callbacks
WORKER_CONCURRENCY = 16  # parallel sends per worker (the default)
IMAGE = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


@pytest.fixture
def pg_stack(tmp_path: Path, postgres_base_url: str | None) -> Iterator[Stack]:
    for url in _database("postgres", tmp_path, postgres_base_url):
        stack = Stack(
            tmp_path,
            url,
            WEB_CONCURRENCY="2",
            DELIVERY_TIMEOUT_SECONDS="2",  # lease 9 s: a killed worker's claims return soon
            DELIVERY_RETRY_SCHEDULE="0.5,1,1,1,1",
            DELIVERY_CONCURRENCY=str(WORKER_CONCURRENCY),
            LOG_LEVEL="WARNING",
        )
        try:
            stack.start()
            stack.start_worker()
            stack.start_worker()
            yield stack
        finally:
            stack.stop()


def run_load(stack: Stack, servers: list[SubscriberProcess], kill_a_worker: bool) -> None:
    requests.post(
        stack.sim + "/_sim/config",
        json={"progress_steps": STEPS, "step_delay": 0.05, "start_delay": 0.05},
        timeout=5,
    ).raise_for_status()
    subscriber_ids = []
    for server in servers:
        added = stack.add_subscriber(
            server.url, "task.progress", "task.succeeded", "task.failed", max_in_flight=8
        )
        server.add_secret(added["secret"])
        subscriber_ids.append(added["id"])

    def submit(i: int) -> str:
        r = stack.api("POST", "/api/tasks", json={"image": IMAGE, "prompt": f"task {i}"})
        assert r.status_code == 201, r.text
        return str(r.json()["job_id"])

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(submit, range(TASKS)))
    assert len(set(job_ids)) == TASKS

    if kill_a_worker:
        servers[0].wait_for(lambda rs: len(rs) >= 500, timeout=120, poll=0.2)
        victim = stack.workers.pop(0)
        victim.kill()  # SIGKILL mid-run: whatever it had claimed must still arrive

    engine = create_engine(stack.database_url)
    try:

        def unfinished() -> tuple[int, int]:
            """(jobs not terminal, deliveries pending)."""
            return (
                sql_value(
                    engine, "SELECT count(*) FROM jobs WHERE status NOT IN ('SUCCEEDED', 'FAILED')"
                ),
                sql_value(engine, "SELECT count(*) FROM deliveries WHERE status = 'pending'"),
            )

        wait_until(unfinished, lambda counts: counts == (0, 0), seconds=240, every=0.5)
        event_ids = set(sql_column(engine, "SELECT id FROM events"))
        callbacks = sql_value(engine, "SELECT count(*) FROM callbacks")
        failed = sql_value(engine, "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")
        terminal = sql_value(engine, "SELECT count(*) FROM events WHERE type = 'task.succeeded'")
        # per delivery: its attempt rows, and how many of them succeeded
        rows = sql_rows(
            engine,
            "SELECT d.subscriber_id, d.event_id, count(a.id), "
            "count(a.id) FILTER (WHERE a.outcome = 'success') "
            "FROM deliveries d LEFT JOIN attempts a ON a.delivery_id = d.id "
            "GROUP BY d.id",
        )
    finally:
        engine.dispose()
    assert callbacks >= TASKS * (STEPS + 1) * 0.99  # thousands of callbacks went through
    assert terminal == TASKS and failed == 0
    attempts = {(sub, event): (total, ok) for sub, event, total, ok in rows}
    assert all(ok == 1 for _, ok in attempts.values())  # exactly one successful attempt each
    unrecorded = 0
    for server, sub_id in zip(servers, subscriber_ids, strict=True):
        mine = {event: total for (sub, event), (total, _) in attempts.items() if sub == sub_id}
        assert set(mine) == event_ids  # a delivery for every (event, subscriber)
        sent = sum(mine.values())
        got = server.wait_for(lambda rs, n=sent: len(rs) >= n, 60, poll=0.2)
        assert all(r.verified for r in got)
        received = Counter(r.webhook_id for r in got)
        assert set(received) == event_ids  # every (event, subscriber): nothing lost
        for event, total in mine.items():
            if not kill_a_worker:
                # with no crash, every request is a recorded attempt: a duplicate can only be
                # the retry of a recorded failure
                assert received[event] == total, (sub_id, event, received[event], total)
            else:
                # plus, at most once per delivery, the request the killed worker had in flight
                assert total <= received[event] <= total + 1, (sub_id, event)
                unrecorded += received[event] - total
    assert unrecorded <= WORKER_CONCURRENCY  # no more than the killed worker had in flight
    for worker in stack.workers:  # the workers' locks never crossed (see the lock order)
        assert "deadlock detected" not in worker.output().lower()


@pytest.mark.parametrize("kill_a_worker", [False, True], ids=["steady", "worker-killed"])
def test_three_workers_two_web_processes_on_postgres(pg_stack: Stack, kill_a_worker: bool) -> None:
    assert len(pg_stack.workers) == 3
    with ExitStack() as stack_of_servers:
        servers = [stack_of_servers.enter_context(SubscriberProcess()) for _ in range(3)]
        run_load(pg_stack, servers, kill_a_worker)
