"""Idempotent submission through the real stack: gunicorn with two worker processes (the
Procfile's ``web:`` line), the vendor simulator, SQLite file or PostgreSQL. The simulator's own
counters say how many creates and uploads the vendor saw."""

from __future__ import annotations

import base64
import threading
import uuid
from typing import Any

import pytest
import requests

from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

DATA_URI = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


def body(marker: str, prompt: str = "a paper boat in the rain") -> dict[str, Any]:
    return {"image": DATA_URI, "prompt": prompt, "metadata": {"marker": marker}}


def post_task(stack: Stack, key: str, payload: dict[str, Any]) -> requests.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": key}
    return requests.post(stack.base + "/api/tasks", json=payload, headers=headers, timeout=60)


def jobs_with_marker(stack: Stack, marker: str) -> list[dict[str, Any]]:
    r = stack.api("GET", "/api/tasks?limit=200")
    assert r.status_code == 200
    return [j for j in r.json()["items"] if j["metadata"].get("marker") == marker]


def hold_next_create(stack: Stack, seconds: float) -> None:
    """The next create answers only after ``seconds`` (the task is made at once): the request
    stays in flight that long, well inside the client's read timeout."""
    r = requests.post(
        stack.sim + "/_sim/next",
        json={"outcomes": ["lose_answer"], "lose_answer_seconds": seconds},
        timeout=5,
    )
    assert r.status_code == 200, r.text


def test_identical_requests_sent_at_once_make_one_job_and_one_create(stack: Stack) -> None:
    marker, key = uuid.uuid4().hex, str(uuid.uuid4())
    payload = body(marker)
    before = stack.sim_stats()
    hold_next_create(stack, 3.0)
    senders = 4
    barrier = threading.Barrier(senders)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait(timeout=10)
        r = post_task(stack, key, payload)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == senders
    created = [r for r in answers if r.status_code == 201]
    in_flight = [r for r in answers if r.status_code == 409]
    # One request created the job; the others, arriving while its create was held, were told
    # it is in flight (a replay would be a 201 with the same job and the replay header).
    first = [r for r in created if r.headers.get("Idempotent-Replayed") != "true"]
    assert len(first) == 1, [(r.status_code, r.text[:200]) for r in answers]
    assert len(created) + len(in_flight) == senders
    assert len(in_flight) >= 1
    for r in in_flight:
        assert r.json()["error"]["code"] == "idempotency_key_in_flight"
        assert r.headers["Retry-After"]
    job_id = first[0].json()["job_id"]
    assert all(r.json()["job_id"] == job_id for r in created)
    after = stack.sim_stats()
    assert after["creates"] - before["creates"] == 1
    assert after["uploads"] - before["uploads"] == 1
    assert [j["job_id"] for j in jobs_with_marker(stack, marker)] == [job_id]

    # Later, the same key and body: the first job again, nothing sent.
    again = post_task(stack, key, payload)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["job_id"] == job_id and again.json()["task_id"]
    final = stack.sim_stats()
    assert (final["creates"], final["uploads"]) == (after["creates"], after["uploads"])


def test_same_key_with_another_body_is_refused(stack: Stack) -> None:
    marker, key = uuid.uuid4().hex, str(uuid.uuid4())
    first = post_task(stack, key, body(marker))
    assert first.status_code == 201
    before = stack.sim_stats()
    other = post_task(stack, key, body(marker, prompt="another prompt"))
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused" and key in error["message"]
    after = stack.sim_stats()
    assert (after["creates"], after["uploads"]) == (before["creates"], before["uploads"])
    assert len(jobs_with_marker(stack, marker)) == 1


def test_request_in_flight_answers_409_then_the_first_job(stack: Stack) -> None:
    marker, key = uuid.uuid4().hex, str(uuid.uuid4())
    payload = body(marker)
    hold_next_create(stack, 3.0)
    result: dict[str, requests.Response] = {}
    first = threading.Thread(target=lambda: result.update(first=post_task(stack, key, payload)))
    first.start()
    # Wait until the first request holds the key (its job is recorded before the create).
    for _ in range(100):
        if jobs_with_marker(stack, marker):
            break
        threading.Event().wait(0.05)
    assert jobs_with_marker(stack, marker), "the first request never recorded its job"
    second = post_task(stack, key, payload)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_in_flight"
    first.join(timeout=30)
    assert result["first"].status_code == 201
    third = post_task(stack, key, payload)
    assert third.status_code == 201 and third.headers["Idempotent-Replayed"] == "true"
    assert third.json()["job_id"] == result["first"].json()["job_id"]


def test_vendor_refusal_frees_the_key_and_a_lost_answer_keeps_it(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    key = str(uuid.uuid4())
    requests.post(stack.sim + "/_sim/next", json={"outcomes": ["412"]}, timeout=5)
    refused = post_task(stack, key, body(marker))
    assert refused.status_code == 402
    retried = post_task(stack, key, body(marker))  # nothing was created: the key is free
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers

    # A vendor 5xx may hide a task: the failure is kept and replayed, never re-sent.
    failed_key = str(uuid.uuid4())
    before = stack.sim_stats()
    requests.post(stack.sim + "/_sim/next", json={"outcomes": ["500"]}, timeout=5)
    failed = post_task(stack, failed_key, body(marker, prompt="vendor error"))
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "vendor_error"
    replay = post_task(stack, failed_key, body(marker, prompt="vendor error"))
    assert replay.status_code == 502 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == failed.json()
    assert stack.sim_stats()["creates"] - before["creates"] == 1


def test_invalid_key_is_400(stack: Stack) -> None:
    for bad in ("", "x" * 256, "caf\u00e9"):
        r = post_task(stack, bad.encode("utf-8").decode("latin-1"), body("x"))
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_idempotency_key"


def test_cli_submit_with_a_key_twice_prints_the_first_job(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    image = tmp_path / "frame.png"
    image.write_bytes(tiny_png())
    key = str(uuid.uuid4())
    args = ("submit", "--image", str(image), "--prompt", "a kite", "--idempotency-key", key)
    before = stack.sim_stats()
    first = stack.relay_json(*args)
    second = stack.relay_json(*args)
    assert second["job_id"] == first["job_id"] and second["task_id"] == first["task_id"]
    assert stack.sim_stats()["creates"] - before["creates"] == 1
    other = stack.relay(
        "submit",
        "--image",
        str(image),
        "--prompt",
        "another kite",
        "--idempotency-key",
        key,
        check=False,
    )
    assert other.returncode == 2 and "idempotency_key_reused" not in other.stdout
    assert "was used for another request" in other.stderr


def test_subscriber_test_through_gunicorn(stack: Stack) -> None:
    with SubscriberServer() as server:
        added = stack.relay_json(
            "subscribers", "add", server.url, "--events", "task.failed,task.succeeded"
        )
        server.secrets.append(added["secret"])
        assert added["event_types"] == ["task.failed", "task.succeeded"]
        r = stack.api("POST", f"/api/subscribers/{added['id']}/test")
        assert r.status_code == 200 and r.json()["ok"] is True
        assert (
            server.received[-1].verified
            and server.received[-1].webhook_id == r.json()["webhook_id"]
        )
        stack.relay("subscribers", "remove", added["id"])
