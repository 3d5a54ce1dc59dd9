"""Scale-out on PostgreSQL: 2 gunicorn web processes and 3 `relay worker` processes sharing one
database; hundreds of tasks whose thousands of callbacks come from the simulator; 3
subscribers. Every (event, subscriber) is delivered; with no crash, none twice; with a worker
killed mid-run, still none lost."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.e2e.conftest import Stack, _database

pytestmark = pytest.mark.e2e

TASKS = 300
STEPS = 8  # progress callbacks per task, then one terminal: 2,700 callbacks
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
            LOG_LEVEL="WARNING",
        )
        try:
            stack.start()
            stack.start_worker()
            stack.start_worker()
            yield stack
        finally:
            stack.stop()


def run_load(stack: Stack, servers: list[SubscriberServer], kill_a_worker: bool) -> None:
    requests.post(
        stack.sim + "/_sim/config",
        json={"progress_steps": STEPS, "step_delay": 0.05, "start_delay": 0.05},
        timeout=5,
    ).raise_for_status()
    for server in servers:
        added = stack.relay_json(
            "subscribers",
            "add",
            server.url,
            "--events",
            "task.progress",
            "--events",
            "task.succeeded",
            "--events",
            "task.failed",
            "--max-in-flight",
            "8",
        )
        server.secrets.append(added["secret"])

    def submit(i: int) -> str:
        r = stack.api("POST", "/api/tasks", json={"image": IMAGE, "prompt": f"task {i}"})
        assert r.status_code == 201, r.text
        return str(r.json()["job_id"])

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(submit, range(TASKS)))
    assert len(set(job_ids)) == TASKS

    if kill_a_worker:
        servers[0].wait_for(lambda rs: len(rs) >= 500, timeout=60)
        victim = stack.workers.pop(0)
        victim.kill()  # SIGKILL mid-run: whatever it had claimed must still arrive

    engine = create_engine(stack.database_url)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                live = conn.execute(
                    text("SELECT count(*) FROM jobs WHERE status NOT IN ('SUCCEEDED', 'FAILED')")
                ).scalar_one()
                pending = conn.execute(
                    text("SELECT count(*) FROM deliveries WHERE status = 'pending'")
                ).scalar_one()
            if live == 0 and pending == 0:
                break
            time.sleep(0.5)
        assert live == 0 and pending == 0, (live, pending)
        with engine.connect() as conn:
            event_ids = {r[0] for r in conn.execute(text("SELECT id FROM events"))}
            callbacks = conn.execute(text("SELECT count(*) FROM callbacks")).scalar_one()
            failed = conn.execute(
                text("SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")
            ).scalar_one()
            terminal = conn.execute(
                text("SELECT count(*) FROM events WHERE type = 'task.succeeded'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert callbacks >= TASKS * (STEPS + 1) * 0.99  # thousands of callbacks went through
    assert terminal == TASKS and failed == 0
    for server in servers:
        got = server.wait_for(lambda rs: len({r.webhook_id for r in rs}) >= len(event_ids), 30)
        assert all(r.verified for r in got)
        received = [r.webhook_id for r in got if r.status_answered < 300]
        assert set(received) == event_ids  # every (event, subscriber): nothing lost
        if not kill_a_worker:
            assert len(received) == len(event_ids)  # and with no crash, nothing twice


@pytest.mark.parametrize("kill_a_worker", [False, True], ids=["steady", "worker-killed"])
def test_three_workers_two_web_processes_on_postgres(pg_stack: Stack, kill_a_worker: bool) -> None:
    assert len(pg_stack.workers) == 3
    with ExitStack() as stack_of_servers:
        servers = [stack_of_servers.enter_context(SubscriberServer()) for _ in range(3)]
        run_load(pg_stack, servers, kill_a_worker)
