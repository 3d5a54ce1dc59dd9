"""The account a job's task runs under is stored with the job (its request's ``email``) and used
by every later lookup of the task: ``VERIFY_WITH_VENDOR``'s ``GET /tasks/{taskId}`` and
``relay reconcile``'s. The vendor is the simulator with two accounts on loopback: a lookup
without the right ``email`` is refused there (400) or finds nothing (404), so these tests fail
if the account is dropped on the way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask

from receiver import create_app, services
from receiver.clock import utcnow
from receiver.runtime import build_runtime
from receiver.store.repositories import Job
from simulator.app import create_app as create_simulator
from simulator.app import get_state
from simulator.config import SimulatorConfig
from tests import helpers
from tests.conftest import make_settings, task_body
from tests.integration.test_reconcile import job_state, serve, subscribe

A1, A2 = "one@example.com", "two@example.com"


@pytest.fixture
def vendor() -> Iterator[tuple[str, Flask]]:
    app = create_simulator(
        SimulatorConfig(accounts=[A1, A2], progress_steps=0, start_delay=0, step_delay=0)
    )
    server, base = serve(app)
    try:
        yield base, app
    finally:
        server.shutdown()
        get_state(app).shutdown()


def vendor_task(base: str, app: Flask, prompt: str = "") -> str:
    """A task run by account A2 (no replyUrl: the tests post the callbacks)."""
    r = requests.post(
        base + "/videos/create",
        json={"model": "gen4.5", "text_prompt": f"t {prompt}", "email": A2},
        headers={"Authorization": "Bearer sim-token"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    task_id = str(r.json()["taskId"])
    if "start=3600" not in prompt:
        state = get_state(app)
        for _ in range(1000):
            task = state.get_task(task_id)
            if task is not None and task["status"] == "SUCCEEDED":
                break
            state.stop_event.wait(0.01)
        else:
            pytest.fail("the simulated task did not finish")
    return task_id


def add_job(engine: Any, task_id: str, request: dict[str, Any], created: Any) -> Job:
    """A gen4.5 job, PENDING on ``task_id``, whose request names its account."""
    return helpers.add_job(
        engine, task_id=task_id, created=created, model="gen4.5", request=request
    )


def lookups(app: Flask) -> list[tuple[str, str | None]]:
    return [
        (r["path"], r["email"])
        for r in get_state(app).logged_requests()
        if r["path"].startswith("/tasks/")
    ]


@pytest.mark.parametrize(("stored", "confirmed"), [(A2, True), (None, False)])
def test_verify_with_vendor_asks_with_the_jobs_account(
    database_url: str, vendor: tuple[str, Flask], stored: str | None, confirmed: bool
) -> None:
    base, sim = vendor
    rt = build_runtime(make_settings(database_url, verify_with_vendor=True, useapi_base_url=base))
    try:
        app = create_app(runtime=rt)
        app.config["TESTING"] = True
        subscribe(rt.engine)
        task_id = vendor_task(base, sim)
        request = {"model": "gen4.5", **({"email": stored} if stored else {})}
        job = add_job(rt.engine, task_id, request, utcnow())
        body = task_body(rt.signer.sign(job.id), "SUCCEEDED")
        body["taskId"] = task_id
        r = helpers.post_and_apply(app.test_client(), body)
        assert (r.status_code, r.outcome) == (202, "applied" if confirmed else "unconfirmed")
        assert job_state(rt.engine, job.id)[0] == ("SUCCEEDED" if confirmed else "PENDING")
        assert lookups(sim) == [(f"/tasks/{task_id}", stored)]
    finally:
        rt.engine.dispose()


def test_reconcile_asks_with_the_jobs_account(database_url: str, vendor: tuple[str, Flask]) -> None:
    base, sim = vendor
    rt = build_runtime(make_settings(database_url, useapi_base_url=base))
    try:
        subscribe(rt.engine)
        old = utcnow() - timedelta(hours=3)
        done = add_job(rt.engine, vendor_task(base, sim), {"email": A2}, old)
        waiting = vendor_task(base, sim, "[sim:start=3600]")
        pending = add_job(rt.engine, waiting, {"email": A2}, old)
        with rt.vendor_client() as client:
            results = services.reconcile(rt.engine, client, utcnow() - timedelta(hours=2), utcnow)
        by_job = {item["job_id"]: item for item in results}
        assert by_job[done.id]["outcome"] == "applied"
        assert "error" not in by_job[pending.id], by_job[pending.id]
        assert {email for _, email in lookups(sim)} == {A2}
        assert job_state(rt.engine, done.id)[0] == "SUCCEEDED"
    finally:
        rt.engine.dispose()
