"""The main job end to end: relay submit -> simulator -> callbacks -> gunicorn -> outbox ->
relay worker -> a subscriber that verifies every signature. No status polling anywhere."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from client import ReplyRefSigner
from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def add_subscriber(stack: Stack, server: SubscriberServer, *events: str) -> str:
    added = stack.add_subscriber(server.url, *events)
    assert added["secret"].startswith("whsec_")
    server.secrets.append(added["secret"])
    return str(added["id"])


def test_submitted_task_reaches_the_subscriber_verified(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with SubscriberServer() as server:
        add_subscriber(stack, server, "task.progress", "task.succeeded", "task.failed")
        image = tmp_path / "frame.png"
        image.write_bytes(tiny_png())
        before = stack.sim_stats()
        submitted = stack.relay_json(
            "submit",
            "--image",
            str(image),
            "--prompt",
            "a lighthouse at dawn",
            "--metadata",
            json.dumps({"order": "A-1"}),
        )
        assert submitted["job_id"].startswith("job_")
        assert submitted["task_id"] and submitted["status"] in {
            "PENDING",
            "RUNNING",
            "THROTTLED",
            "SUCCEEDED",
        }

        def whole_story(received: list[Any]) -> bool:
            """The terminal event and every event before it (by sequence) have arrived."""
            mine = [x.body for x in received if x.body]
            mine = [b for b in mine if b["data"]["job_id"] == submitted["job_id"]]
            ends = [b["data"]["sequence"] for b in mine if b["type"] == "task.succeeded"]
            return bool(ends) and {b["data"]["sequence"] for b in mine} >= set(
                range(1, ends[0] + 1)
            )

        got = server.wait_for(whole_story, timeout=20)
        assert all(r.verified for r in got), [r.error for r in got]
        bodies = [r.body for r in got if r.body]
        mine = [b for b in bodies if b["data"]["job_id"] == submitted["job_id"]]
        # Delivery order is not promised (the last progress event and the terminal one may go
        # out at once): a subscriber orders a task's events by their sequence.
        mine.sort(key=lambda b: b["data"]["sequence"])
        sequences = [b["data"]["sequence"] for b in mine]
        assert sequences == list(range(1, len(mine) + 1))  # each once, none missing
        types = [b["type"] for b in mine]
        assert types[-1] == "task.succeeded" and "task.progress" in types
        final = mine[-1]["data"]
        assert final["artifacts"][0]["url"].startswith("http")
        assert final["metadata"] == {"order": "A-1"}
        assert final["task_id"] == submitted["task_id"]

        job = stack.api("GET", f"/api/tasks/{submitted['job_id']}").json()
        assert job["status"] == "SUCCEEDED"
        assert [e["type"] for e in job["events"]][-1] == "task.succeeded"
        after = stack.sim_stats()
        assert after["status_requests"] == before["status_requests"] == 0  # push, never poll


def test_failed_task_is_delivered_as_task_failed(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with SubscriberServer() as server:
        add_subscriber(stack, server)  # default: terminal events only
        image = tmp_path / "frame.png"
        image.write_bytes(tiny_png())
        submitted = stack.relay_json(
            "submit", "--image", str(image), "--prompt", "[sim:moderate] x"
        )
        got = server.wait_for(
            lambda r: any(x.body and x.body["data"]["job_id"] == submitted["job_id"] for x in r),
            timeout=20,
        )
        mine = [r.body for r in got if r.body and r.body["data"]["job_id"] == submitted["job_id"]]
        assert [b["type"] for b in mine] == ["task.failed"]
        assert mine[0]["data"]["status"] == "FAILED"
        assert mine[0]["data"]["error"]["message"]


def test_vendor_refusal_marks_the_job_failed_to_submit(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import requests

    requests.post(
        stack.sim + "/_sim/next", json={"outcomes": ["412"]}, timeout=5
    ).raise_for_status()
    image = tmp_path / "frame.png"
    image.write_bytes(tiny_png())
    result = stack.relay("submit", "--image", str(image), "--prompt", "no credits", check=False)
    assert result.returncode == 1
    assert "InsufficientCredits" in result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    job = stack.api("GET", f"/api/tasks/{job_id}").json()
    assert job["status"] == "SUBMIT_FAILED"
    assert job["submit_error"]["http_status"] == 412


def test_api_submission_with_a_data_uri(stack: Stack) -> None:
    with SubscriberServer() as server:
        add_subscriber(stack, server)
        data_uri = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
        r = stack.api(
            "POST",
            "/api/tasks",
            json={
                "image": data_uri,
                "prompt": "a red kite",
                "options": {"duration": 10},
                "metadata": {"k": 1},
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        server.wait_for(
            lambda rs: any(x.body and x.body["data"]["job_id"] == job_id for x in rs), timeout=20
        )
        assert stack.api("GET", f"/api/tasks/{job_id}").json()["status"] == "SUCCEEDED"


def test_forged_success_changes_nothing(stack: Stack) -> None:
    import requests

    with SubscriberServer() as server:
        add_subscriber(stack, server)
        forged_ref = ReplyRefSigner(["not-our-key-00000000000000000000"]).sign("job_x")
        r = requests.post(
            stack.base + "/callbacks/useapi",
            json={
                "taskId": "t",
                "status": "SUCCEEDED",
                "replyRef": forged_ref,
                "artifacts": [{"url": "https://evil.example/x.mp4"}],
            },
            timeout=5,
        )
        assert r.status_code == 401
        refused = stack.api("GET", "/api/refused-callbacks").json()["items"]
        assert refused[0]["reason"] == "reply_ref_invalid"
        assert server.received_during(1.0) == []


def test_concurrent_copies_of_one_callback_emit_one_event(stack: Stack) -> None:
    """Sixteen copies of the same terminal callback at once, through gunicorn's processes and
    threads: the database settles them, one applies, fifteen are no-ops."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.conftest import SECRET

    data_uri = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    # the simulator holds its own callbacks back for a minute; ours come first
    r = stack.api("POST", "/api/tasks", json={"image": data_uri, "prompt": "[sim:start=60] x"})
    assert r.status_code == 201, r.text
    job = r.json()
    ref = ReplyRefSigner([SECRET]).sign(job["job_id"], {})
    body = {
        "taskId": job["task_id"],
        "status": "SUCCEEDED",
        "progressRatio": "1",
        "artifacts": [{"url": "https://cdn.example/race.mp4"}],
        "replyRef": ref,
    }

    def post(_: int) -> requests.Response:
        return requests.post(stack.base + "/callbacks/useapi", json=body, timeout=10)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(16)))
    assert [a.status_code for a in answers] == [202] * 16
    assert {a.json()["outcome"] for a in answers} == {"queued"}
    deadline = time.monotonic() + 20
    while True:  # the stack's worker applies them right after
        detail = stack.api("GET", f"/api/tasks/{job['job_id']}").json()
        outcomes = sorted(c["outcome"] for c in detail["callbacks"])
        if "queued" not in outcomes or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert outcomes.count("applied") == 1 and outcomes.count("already_terminal") == 15
    assert [e["type"] for e in detail["events"]] == ["task.succeeded"]
    assert len(detail["callbacks"]) == 16
