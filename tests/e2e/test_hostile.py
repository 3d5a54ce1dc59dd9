"""Hostile callbacks against the running system (gunicorn, relay worker, the simulator, a
verifying subscriber), on SQLite and on PostgreSQL: forged completions for a live task and a
flood of junk while its genuine callbacks arrive. Nothing forged is delivered, no genuine
callback is refused, and the flood gets 4xx only."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import requests

from client import ReplyRefSigner
from receiver.clock import utcnow
from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.conftest import SECRET
from tests.e2e.conftest import Stack
from tests.integration.test_hostile_callbacks import sign_at, with_job_id

pytestmark = pytest.mark.e2e

EVIL = "https://evil.example/malware.mp4"
DATA_URI = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


def forged_completions(job_id: str, task_id: str) -> dict[str, dict[str, Any]]:
    """SUCCEEDED bodies with a malicious video for the live job, one per way of forging."""
    refs = {
        "wrong_key": ReplyRefSigner(["an-attackers-guess-at-the-key-0000"]).sign(job_id),
        "changed_job_id": with_job_id(ReplyRefSigner([SECRET]).sign("job_someone_else"), job_id),
        "expired": sign_at([SECRET], job_id, utcnow() - timedelta(days=31)),
        "missing": "",
    }
    return {
        name: {
            "taskId": task_id,
            "status": "SUCCEEDED",
            "progressRatio": "1",
            "artifacts": [{"url": EVIL}],
            **({"replyRef": ref} if ref else {}),
        }
        for name, ref in refs.items()
    }


def junk(rng: random.Random, job_id: str, task_id: str) -> bytes:
    forged = forged_completions(job_id, task_id)
    pick = rng.randrange(5)
    if pick == 0:
        return rng.randbytes(rng.randrange(1, 400))
    if pick == 1:
        return b"[" * rng.randrange(1, 3000)
    if pick == 2:
        raw = bytearray(json.dumps(rng.choice(list(forged.values()))).encode())
        raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    return json.dumps(rng.choice(list(forged.values()))).encode()


def flood(base: str, job_id: str, task_id: str, stop: threading.Event, seed: int) -> Counter[Any]:
    """Post junk until ``stop`` is set (at most 150 requests); count the answers."""
    rng = random.Random(seed)
    seen: Counter[Any] = Counter()
    with requests.Session() as session:
        session.trust_env = False
        for _ in range(150):
            if stop.is_set():
                break
            try:
                r = session.post(
                    base + "/callbacks/useapi",
                    data=junk(rng, job_id, task_id),
                    headers={"Content-Type": rng.choice(["application/json", "text/plain"])},
                    timeout=10,
                )
                seen[r.status_code] += 1
            except requests.RequestException as exc:
                seen[type(exc).__name__] += 1
    return seen


def test_forgeries_and_a_flood_during_a_live_task_deliver_nothing_forged(stack: Stack) -> None:
    with SubscriberServer() as server:
        added = stack.add_subscriber(server.url, "task.progress", "task.succeeded", "task.failed")
        server.secrets.append(added["secret"])
        before = stack.sim_stats()
        r = stack.api(
            "POST",
            "/api/tasks",
            json={"image": DATA_URI, "prompt": "[sim:start=1] [sim:steps=3] [sim:delay=0.3] x"},
        )
        assert r.status_code == 201, r.text
        job_id, task_id = r.json()["job_id"], r.json()["task_id"]

        # forged completions while the task is live: refused, nothing changes
        for name, body in forged_completions(job_id, task_id).items():
            answer = requests.post(stack.base + "/callbacks/useapi", json=body, timeout=10)
            assert answer.status_code == 401, (name, answer.text)
        assert stack.api("GET", f"/api/tasks/{job_id}").json()["status"] in ("PENDING", "RUNNING")

        # a flood of junk from four clients while the genuine callbacks arrive
        stop = threading.Event()
        results: list[Counter[Any]] = []
        threads = [
            threading.Thread(
                target=lambda s=seed: results.append(flood(stack.base, job_id, task_id, stop, s))
            )
            for seed in range(4)
        ]
        for thread in threads:
            thread.start()
        try:
            got = server.wait_for(
                lambda rs: any(
                    x.body
                    and x.body["type"] == "task.succeeded"
                    and x.body["data"]["job_id"] == job_id
                    for x in rs
                ),
                timeout=40,
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        answers = sum(results, Counter())
        assert answers and set(answers) <= {400, 401, 404, 413}, answers

        # the genuine callbacks were all accepted
        attempts = requests.get(
            stack.sim + "/_sim/callbacks", params={"taskId": task_id}, timeout=5
        ).json()
        assert attempts and all(a["ok"] for a in attempts), attempts
        # the subscriber got the genuine story, verified, with one terminal event
        mine = [x for x in got if x.body and x.body["data"]["job_id"] == job_id]
        assert all(x.verified for x in mine)
        # in sequence order (delivery order is not promised)
        ordered = sorted((x.body for x in mine if x.body), key=lambda b: b["data"]["sequence"])
        types = [b["type"] for b in ordered]
        assert types.count("task.succeeded") == 1 and types[-1] == "task.succeeded"
        assert all(EVIL not in json.dumps(x.body) for x in got)
        final = stack.api("GET", f"/api/tasks/{job_id}").json()
        assert final["status"] == "SUCCEEDED"
        assert final["artifacts"][0]["url"].startswith(stack.sim)
        refused = stack.api("GET", "/api/refused-callbacks?limit=200").json()["items"]
        assert {"reply_ref_invalid", "reply_ref_expired", "reply_ref_missing"} <= {
            item["reason"] for item in refused
        }
        assert stack.sim_stats()["status_requests"] == before["status_requests"]  # no polling


def test_a_chunked_body_over_the_limit_is_refused_by_gunicorn(stack: Stack) -> None:
    """No Content-Length to check up front: the limit holds while reading the stream."""

    def chunks() -> Any:  # one JSON object of 512 KiB, twice MAX_CONTENT_LENGTH
        yield b'{"pad": "'
        for _ in range(8):
            yield b"x" * 65536
        yield b'"}'

    started = time.monotonic()
    try:
        r = requests.post(stack.base + "/callbacks/useapi", data=chunks(), timeout=20)
        assert r.status_code == 413, r.text
    except requests.ConnectionError:
        pass  # the server may close the connection while the client is still sending
    assert time.monotonic() - started < 20
    refused = stack.api("GET", "/api/refused-callbacks?limit=5").json()["items"]
    assert refused[0]["reason"] == "request_entity_too_large"  # refused, not cut and parsed
    assert requests.get(stack.base + "/healthz", timeout=5).status_code == 200
