"""Asking the vendor, the only two ways runway-relay ever does: ``VERIFY_WITH_VENDOR``'s one
``GET /tasks/{taskId}`` to confirm a terminal callback, and ``relay reconcile``'s one GET per
job that went silent. Never on the normal path, never in a loop.

The vendor is the simulator (``simulator.app``) served over real HTTP on 127.0.0.1 in a thread;
its ``/_sim/stats`` counts the status requests. ``relay reconcile`` runs as the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, jsonify
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from client import ReplyRefSigner
from receiver import create_app
from receiver.clock import utcnow
from receiver.runtime import Runtime, build_runtime
from receiver.settings import Settings
from receiver.store.repositories import Job
from simulator.app import create_app as create_simulator
from simulator.app import get_state
from simulator.config import SimulatorConfig
from simulator.processes import bin_path, free_port
from tests import helpers
from tests.conftest import SECRET, make_settings, new_subscriber, task_body

EVIL = "https://evil.example/malware.mp4"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def serve(app: Flask) -> tuple[BaseWSGIServer, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@dataclass
class Vendor:
    """The simulator on loopback: create tasks in a chosen state, count status requests."""

    base: str
    app: Flask

    def task(self, prompt: str = "") -> str:
        """A task that ends as ``[sim:…]`` says (default: SUCCEEDED at once; start=3600 keeps
        it PENDING). No replyUrl: the simulator posts no callbacks, the tests do."""
        r = requests.post(
            self.base + "/gen3turbo/create",
            json={"text_prompt": f"test {prompt}"},
            headers={"Authorization": "Bearer sim-token"},
            timeout=5,
        )
        assert r.status_code == 200, r.text
        task_id = str(r.json()["taskId"])
        if "start=3600" not in prompt:
            deadline = time.monotonic() + 10
            while self.status(task_id) == "PENDING":
                assert time.monotonic() < deadline, "the simulated task did not finish"
                time.sleep(0.01)
        return task_id

    def status(self, task_id: str) -> str:
        return str(get_state(self.app).get_task(task_id)["status"])  # type: ignore[index]

    def object(self, task_id: str) -> dict[str, Any]:
        found = get_state(self.app).get_task(task_id)
        assert found is not None
        return found

    @property
    def status_requests(self) -> int:
        return int(requests.get(self.base + "/_sim/stats", timeout=5).json()["status_requests"])


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    app = create_simulator(SimulatorConfig(progress_steps=0, start_delay=0, step_delay=0))
    server, base = serve(app)
    try:
        yield Vendor(base, app)
    finally:
        server.shutdown()
        get_state(app).shutdown()


def add_job(
    engine: Engine,
    *,
    task_id: str | None,
    status: str = "PENDING",
    created: datetime,
    last_callback: datetime | None = None,
) -> Job:
    """A gen3turbo job (:func:`tests.helpers.add_job`) with metadata, which its events carry."""
    return helpers.add_job(
        engine,
        task_id=task_id,
        status=status,
        created=created,
        last_callback=last_callback,
        metadata={"order": 7},
    )


def job_state(engine: Engine, job_id: str) -> tuple[str, list[dict[str, Any]]]:
    row = helpers.job_columns(engine, job_id, "status", "artifacts")
    return row["status"], row["artifacts"]


def event_types(engine: Engine, job_id: str) -> list[str]:
    return helpers.sql_column(
        engine, "SELECT type FROM events WHERE job_id = :j ORDER BY sequence", j=job_id
    )


def subscribe(engine: Engine) -> None:
    new_subscriber(engine, ["task.progress", "task.succeeded", "task.failed"])


# -- VERIFY_WITH_VENDOR ---------------------------------------------------------------------


@pytest.fixture
def verifying(database_url: str, vendor: Vendor) -> Iterator[tuple[FlaskClient, Runtime]]:
    rt = build_runtime(
        make_settings(database_url, verify_with_vendor=True, useapi_base_url=vendor.base)
    )
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    subscribe(rt.engine)
    yield app.test_client(), rt
    rt.engine.dispose()


def post(client: FlaskClient, body: dict[str, Any]) -> helpers.Posted:
    """Post ``body`` and apply it (``relay worker``'s applier, here)."""
    return helpers.post_and_apply(client, body)


def callback_for(ref: str, task_id: str, status: str, **extra: Any) -> dict[str, Any]:
    body = task_body(ref, status, **extra)
    body["taskId"] = task_id
    return body


def test_confirmed_terminal_callback_emits_what_the_vendor_says(
    verifying: tuple[FlaskClient, Runtime], vendor: Vendor
) -> None:
    """A SUCCEEDED with a valid replyRef (say, replayed by someone who saw it) but a swapped
    video URL: the vendor confirms SUCCEEDED, and its own artifacts are what is emitted."""
    client, rt = verifying
    task_id = vendor.task()
    job = add_job(rt.engine, task_id=task_id, created=utcnow())
    ref = rt.signer.sign(job.id)
    before = vendor.status_requests

    r = post(client, callback_for(ref, task_id, "RUNNING", progressRatio=0.5))
    assert r.status_code == 202
    assert vendor.status_requests == before  # progress is never confirmed

    r = post(client, callback_for(ref, task_id, "SUCCEEDED", artifacts=[{"url": EVIL}]))
    assert (r.status_code, r.outcome) == (202, "applied")
    assert vendor.status_requests == before + 1
    status, artifacts = job_state(rt.engine, job.id)
    real = vendor.object(task_id)["artifacts"][0]["url"]
    assert status == "SUCCEEDED" and [a["url"] for a in artifacts] == [real]
    payload = helpers.sql_value(
        rt.engine, "SELECT payload FROM events WHERE type = 'task.succeeded'"
    )
    assert EVIL not in payload and real in payload

    # a duplicate of the terminal callback is a no-op and asks nobody
    r = post(client, callback_for(ref, task_id, "SUCCEEDED", artifacts=[{"url": EVIL}]))
    assert r.outcome == "already_terminal"
    assert vendor.status_requests == before + 1


@pytest.mark.parametrize(
    ("prompt", "claimed"),
    [
        ("[sim:start=3600]", "SUCCEEDED"),  # still PENDING at the vendor
        ("[sim:fail]", "SUCCEEDED"),  # the vendor says FAILED
        ("", "FAILED"),  # the vendor says SUCCEEDED
    ],
)
def test_unconfirmed_terminal_callback_is_kept_and_emits_nothing(
    verifying: tuple[FlaskClient, Runtime], vendor: Vendor, prompt: str, claimed: str
) -> None:
    client, rt = verifying
    task_id = vendor.task(prompt)
    job = add_job(rt.engine, task_id=task_id, created=utcnow())
    ref = rt.signer.sign(job.id)
    before = vendor.status_requests

    r = post(client, callback_for(ref, task_id, claimed, artifacts=[{"url": EVIL}]))
    assert (r.status_code, r.outcome) == (202, "unconfirmed")
    assert vendor.status_requests == before + 1
    assert job_state(rt.engine, job.id) == ("PENDING", [])
    assert event_types(rt.engine, job.id) == []
    kept = helpers.sql_rows(rt.engine, "SELECT outcome, status FROM callbacks")
    assert [tuple(k) for k in kept] == [("unconfirmed", claimed)]


def test_unknown_task_at_the_vendor_is_unconfirmed(
    verifying: tuple[FlaskClient, Runtime], vendor: Vendor
) -> None:
    client, rt = verifying
    task_id = "user:1234-runwayml:sim@example.com-task:never-created"
    job = add_job(rt.engine, task_id=task_id, created=utcnow())
    r = post(client, callback_for(rt.signer.sign(job.id), task_id, "SUCCEEDED"))
    assert (r.status_code, r.outcome) == (202, "unconfirmed")
    assert event_types(rt.engine, job.id) == []


def timed_success_callback(rt: Runtime, task_id: str) -> tuple[Job, Any, float]:
    """A new PENDING job on ``task_id`` and a SUCCEEDED callback for it (its replyRef signed)
    posted through a fresh app: the job, the answer, and how long the answer took (seconds)."""
    app = create_app(runtime=rt)
    job = add_job(rt.engine, task_id=task_id, created=utcnow())
    started = time.monotonic()
    r = post(app.test_client(), callback_for(rt.signer.sign(job.id), task_id, "SUCCEEDED"))
    return job, r, time.monotonic() - started


def test_vendor_down_leaves_the_callback_unconfirmed_and_answers_quickly(
    database_url: str,
) -> None:
    rt = build_runtime(
        make_settings(
            database_url,
            verify_with_vendor=True,
            useapi_base_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        )
    )
    try:
        job, r, elapsed = timed_success_callback(rt, "user:1-runwayml:a-task:down")
        assert elapsed < 10
        assert (r.status_code, r.outcome) == (202, "unconfirmed")
        assert job_state(rt.engine, job.id) == ("PENDING", [])
        assert event_types(rt.engine, job.id) == []
    finally:
        rt.engine.dispose()


@pytest.mark.parametrize("behaviour", ["hangs", "busy"])
def test_a_slow_or_busy_vendor_does_not_hold_the_callback(sqlite_url: str, behaviour: str) -> None:
    """The vendor does not retry a callback it could not deliver, so confirming must not keep
    it waiting: a vendor that never answers, or answers 429 with a long Retry-After, leaves
    the callback unconfirmed within seconds, not after the client's 30 s read timeout or its
    429 retries."""
    release = threading.Event()
    asked: list[str] = []
    fake = Flask("slow-vendor")

    @fake.get("/tasks/<path:task_id>")
    def get_task(task_id: str) -> Any:
        asked.append(task_id)
        if behaviour == "hangs":
            release.wait(60)
            return jsonify(taskId=task_id, status="SUCCEEDED")
        return jsonify(error="busy", code=429), 429, {"Retry-After": "100"}

    server, base = serve(fake)
    rt = build_runtime(make_settings(sqlite_url, verify_with_vendor=True, useapi_base_url=base))
    try:
        task_id = "user:1-runwayml:a-task:slow"
        _, r, elapsed = timed_success_callback(rt, task_id)
        assert (r.status_code, r.outcome) == (202, "unconfirmed")
        assert elapsed < 10, elapsed
        assert asked == [task_id]  # asked once, no retry loop
    finally:
        release.set()
        server.shutdown()
        rt.engine.dispose()


def test_forged_reply_ref_never_reaches_the_vendor(
    verifying: tuple[FlaskClient, Runtime], vendor: Vendor
) -> None:
    """Verification comes first: a forged callback costs no vendor request."""
    client, rt = verifying
    task_id = vendor.task()
    job = add_job(rt.engine, task_id=task_id, created=utcnow())
    before = vendor.status_requests
    forged = ReplyRefSigner(["an-attackers-guess-at-the-key-0000"]).sign(job.id)
    r = post(client, callback_for(forged, task_id, "SUCCEEDED"))
    assert r.status_code == 401
    assert vendor.status_requests == before


# -- relay reconcile ------------------------------------------------------------------------


def relay(settings: Settings, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "DATABASE_"))}
    env.update(
        RELAY_ENV="test",
        SECRET_KEY=SECRET,
        DATABASE_URL=settings.database_url,
        USEAPI_TOKEN=settings.useapi_token,
        USEAPI_BASE_URL=settings.useapi_base_url,
        LOG_FORMAT="text",
    )
    return subprocess.run(
        [bin_path("relay"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def reported(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {line["job_id"]: line for line in lines}


def test_reconcile_asks_once_per_silent_job_and_only_those(
    database_url: str, vendor: Vendor, tmp_path: Path
) -> None:
    settings = make_settings(database_url, useapi_base_url=vendor.base)
    rt = build_runtime(settings)
    try:
        engine = rt.engine
        subscribe(engine)
        now = utcnow()
        hours = lambda n: now - timedelta(hours=n)  # noqa: E731
        succeeded, pending, failed = (
            vendor.task(),
            vendor.task("[sim:start=3600]"),
            vendor.task("[sim:fail]"),
        )
        jobs = {
            # silent for 3 h: asked
            "lost_success": add_job(
                engine,
                task_id=succeeded,
                status="RUNNING",
                created=hours(4),
                last_callback=hours(3),
            ),
            "still_running": add_job(
                engine, task_id=pending, status="PENDING", created=hours(4), last_callback=hours(3)
            ),
            "never_called_back": add_job(engine, task_id=failed, created=hours(5)),
            "vendor_forgot": add_job(
                engine, task_id="user:1234-runwayml:sim@example.com-task:gone", created=hours(6)
            ),
            # not asked: heard from recently, finished, or no task to ask about
            "recent": add_job(
                engine, task_id=vendor.task(), created=hours(4), last_callback=hours(0.5)
            ),
            "young": add_job(engine, task_id=vendor.task(), created=hours(0.2)),
            "finished": add_job(
                engine, task_id=vendor.task(), status="SUCCEEDED", created=hours(9)
            ),
            "no_task_id": add_job(engine, task_id=None, status="SUBMITTING", created=hours(9)),
        }
        before = vendor.status_requests

        first = reported(relay(settings, "reconcile", "--older-than", "2h", cwd=tmp_path))
        assert vendor.status_requests == before + 4  # exactly one GET per silent job
        ids = {name: job.id for name, job in jobs.items()}
        assert set(first) == {
            ids[n]
            for n in (
                "lost_success",
                "still_running",
                "never_called_back",
                "vendor_forgot",
                "no_task_id",
            )
        }
        assert first[ids["lost_success"]]["outcome"] == "applied"
        assert first[ids["never_called_back"]]["outcome"] == "applied"
        assert first[ids["still_running"]]["outcome"] in ("duplicate", "stale")
        assert "error" in first[ids["vendor_forgot"]] and "error" in first[ids["no_task_id"]]

        assert job_state(engine, ids["lost_success"])[0] == "SUCCEEDED"
        assert event_types(engine, ids["lost_success"]) == ["task.succeeded"]
        assert job_state(engine, ids["never_called_back"])[0] == "FAILED"
        assert event_types(engine, ids["never_called_back"]) == ["task.failed"]
        for name in ("still_running", "recent", "young", "finished", "no_task_id"):
            assert event_types(engine, ids[name]) == [], name
        assert job_state(engine, ids["recent"])[0] == "PENDING"

        # a second pass right after: the settled and the just-heard-from are left alone; only
        # the job whose check failed is asked again
        second = reported(relay(settings, "reconcile", "--older-than", "2h", cwd=tmp_path))
        assert vendor.status_requests == before + 5
        assert set(second) == {ids["vendor_forgot"], ids["no_task_id"]}
    finally:
        rt.engine.dispose()


def test_reconcile_survives_a_broken_vendor_answer(database_url: str, tmp_path: Path) -> None:
    """A vendor answering junk for one task (a number too large for a float, another task's
    id, a NUL that PostgreSQL cannot store) costs that job its check, not the whole pass."""
    asked: list[str] = []
    answers: dict[str, Callable[[], Any]] = {}
    fake = Flask("broken-vendor")

    @fake.get("/tasks/<path:task_id>")
    def get_task(task_id: str) -> Any:
        asked.append(task_id)
        return answers[task_id]()

    ok_task = "user:1-runwayml:a-task:fine"
    answers["user:1-runwayml:a-task:huge"] = lambda: fake.response_class(
        '{"status": "RUNNING", "progressRatio": 1' + "0" * 400 + "}",
        mimetype="application/json",
    )
    answers["user:1-runwayml:a-task:other"] = lambda: jsonify(
        taskId="user:1-runwayml:a-task:someone-else", status="SUCCEEDED"
    )
    answers["user:1-runwayml:a-task:nul"] = lambda: jsonify(
        taskId="user:1-runwayml:a-task:nul", status="RUNNING", progressText="a\u0000b"
    )
    answers[ok_task] = lambda: jsonify(
        taskId=ok_task, status="SUCCEEDED", artifacts=[{"url": "https://cdn/v.mp4"}]
    )
    server, base = serve(fake)
    settings = make_settings(database_url, useapi_base_url=base)
    rt = build_runtime(settings)
    try:
        old = utcnow() - timedelta(hours=3)
        jobs = {task: add_job(rt.engine, task_id=task, created=old) for task in answers}
        result = reported(relay(settings, "reconcile", "--older-than", "1h", cwd=tmp_path))
        assert sorted(asked) == sorted(answers)
        assert len(result) == 4
        assert job_state(rt.engine, jobs[ok_task].id)[0] == "SUCCEEDED"
        # too large a ratio reads as no ratio (the lenient task model), the status still counts
        huge = jobs["user:1-runwayml:a-task:huge"].id
        assert result[huge]["outcome"] == "applied"
        assert job_state(rt.engine, huge)[0] == "RUNNING"
        # an answer about another task is refused for this job
        other = jobs["user:1-runwayml:a-task:other"].id
        assert "error" in result[other], result
        assert job_state(rt.engine, other)[0] == "PENDING"
    finally:
        server.shutdown()
        rt.engine.dispose()
