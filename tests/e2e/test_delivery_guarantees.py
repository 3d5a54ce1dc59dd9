"""Delivery you can trust, end to end: real gunicorn, real `relay worker` processes, the
simulator's callbacks, and subscribers that verify every signature, all over loopback."""

from __future__ import annotations

import base64
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from standardwebhooks.webhooks import Webhook

from receiver import services
from simulator.demo import tiny_png
from simulator.processes import Process, bin_path
from simulator.subscriber import Received, SubscriberProcess, SubscriberServer
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

# A compressed retry schedule and a short attempt timeout, so retries and leases play out in
# seconds (lease = 2 x timeout + 5 s = 9 s).
STACK_ENV = {"DELIVERY_RETRY_SCHEDULE": "0.2,0.2,0.2", "DELIVERY_TIMEOUT_SECONDS": "2"}
IMAGE = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


@pytest.fixture(autouse=True)
def live_worker(stack: Stack) -> None:
    """Each test starts with a live worker, whatever an earlier test did to the module's (the
    SIGTERM and kill -9 tests stop theirs): no test depends on the one before."""
    for worker in [w for w in stack.workers if w.proc.poll() is not None]:
        stack.workers.remove(worker)
        worker.stop()
    if not stack.workers:
        stack.start_worker()


def add(stack: Stack, server: SubscriberServer | SubscriberProcess) -> str:
    """Register ``server`` through the admin API (``relay subscribers add`` is exercised by the
    module fixtures; a process per subscriber here would only cost CPU). Its id."""
    r = stack.api("POST", "/api/subscribers", json={"url": server.url})
    assert r.status_code == 201, r.text
    server.add_secret(r.json()["secret"])
    return str(r.json()["id"])


def submit(stack: Stack, prompt: str = "a test") -> str:
    r = stack.api("POST", "/api/tasks", json={"image": IMAGE, "prompt": prompt})
    assert r.status_code == 201, r.text
    return str(r.json()["job_id"])


def terminal_for(job_id: str) -> Any:
    return lambda rs: any(
        r.body and r.body["data"]["job_id"] == job_id and r.status_answered < 300 for r in rs
    )


def deliveries_of(stack: Stack, subscriber_id: str) -> list[dict[str, Any]]:
    items = stack.api("GET", f"/api/deliveries?subscriber_id={subscriber_id}").json()["items"]
    return list(items)


def recorded(stack: Stack, delivery_id: str, status: str, seconds: float = 5.0) -> Any:
    """The delivery once the worker has recorded it as ``status`` (the subscriber gets the
    request before the worker writes the attempt down)."""
    deadline = time.monotonic() + seconds
    while True:
        detail = stack.api("GET", f"/api/deliveries/{delivery_id}").json()
        if detail["status"] == status or time.monotonic() > deadline:
            assert detail["status"] == status
            return detail
        time.sleep(0.05)


def test_failing_three_times_then_success_keeps_one_webhook_id(stack: Stack) -> None:
    with SubscriberServer() as server:
        sub_id = add(stack, server)
        server.script(500, 500, 500)
        job_id = submit(stack)
        got = server.wait_for(terminal_for(job_id), timeout=20)
        mine = [r for r in got if r.body and r.body["data"]["job_id"] == job_id]
        assert [r.status_answered for r in mine] == [500, 500, 500, 204]
        assert len({r.webhook_id for r in mine}) == 1
        assert all(r.verified for r in mine)
        (delivery,) = deliveries_of(stack, sub_id)
        detail = recorded(stack, delivery["id"], "succeeded")
        assert [a["status_code"] for a in detail["attempt_log"]] == [500, 500, 500, 204]
        assert all(a["duration_ms"] >= 0 for a in detail["attempt_log"])
        shown = stack.relay_json("deliveries", "show", delivery["id"])
        assert [a["outcome"] for a in shown["attempt_log"]][-1] == "success"


def test_dead_letter_is_listed_and_recovered_with_the_same_webhook_id(stack: Stack) -> None:
    with SubscriberServer(default_status=503) as server:
        sub_id = add(stack, server)
        job_id = submit(stack)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            failed = stack.relay_json(
                "deliveries", "list", "--status", "failed", "--subscriber", sub_id
            )
            if failed:
                break
            time.sleep(0.2)
        assert len(failed) == 1 and failed[0]["attempts"] == 4
        api_failed = stack.api(
            "GET", f"/api/deliveries?status=failed&subscriber_id={sub_id}"
        ).json()
        assert [d["id"] for d in api_failed["items"]] == [failed[0]["id"]]
        first_id = server.received[0].webhook_id

        server.default_status = 204  # the subscriber is back
        result = stack.relay_json("deliveries", "recover", "--since", "10m", "--subscriber", sub_id)
        assert result["requeued"] == 1
        got = server.wait_for(terminal_for(job_id), timeout=10)
        assert got[-1].status_answered == 204 and got[-1].webhook_id == first_id
        assert len(got) == 5


def _first_attempt(stack: Stack, subscriber_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The first recorded attempt of the subscriber's only delivery, waiting for it to be
    recorded (an attempt is written when it ends). Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        items = deliveries_of(stack, subscriber_id)
        if items:
            assert len(items) == 1, items
            shown = stack.api("GET", f"/api/deliveries/{items[0]['id']}").json()
            if shown["attempt_log"]:
                return dict(shown["attempt_log"][0])
        assert time.monotonic() < deadline, f"no attempt recorded for {subscriber_id}: {items}"
        time.sleep(0.1)


def _instant(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_hanging_subscriber_does_not_delay_nine_others(stack: Stack) -> None:
    with ExitStack() as stack_of_servers:
        slow = stack_of_servers.enter_context(SubscriberServer(hang_seconds=3))
        slow.default_status = "hang"  # type: ignore[assignment]
        fast = [stack_of_servers.enter_context(SubscriberServer()) for _ in range(9)]
        slow_id, *fast_ids = [add(stack, server) for server in [slow, *fast]]
        job_id = submit(stack)
        for server in fast:
            got = server.wait_for(terminal_for(job_id), timeout=15)
            assert any(r.verified for r in got)
        assert slow.wait_for_arrivals(1, timeout=10) >= 1  # the slow one was tried too
        # Measured by the worker's own clock (the attempt log), not the test's, so that a stall
        # of this process cannot decide the outcome: the hanging attempt ran until the 2 s
        # attempt timeout, and each of the nine began before it ended. A worker that waited for
        # it would have started them after its end.
        hung = _first_attempt(stack, slow_id)
        assert hung["outcome"] != "success" and hung["duration_ms"] >= 1900, hung
        hung_end = _instant(hung["started_at"]) + hung["duration_ms"] / 1000
        for fast_id in fast_ids:
            attempt = _first_attempt(stack, fast_id)
            assert attempt["outcome"] == "success", attempt
            assert _instant(attempt["started_at"]) < hung_end, (attempt, hung)


def test_410_disables_and_enable_brings_it_back(stack: Stack) -> None:
    with SubscriberServer() as server:
        sub_id = add(stack, server)
        server.script(410)
        submit(stack)
        server.wait_for(lambda rs: len(rs) >= 1, timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sub = stack.api("GET", f"/api/subscribers/{sub_id}").json()
            if not sub["enabled"]:
                break
            time.sleep(0.1)
        assert sub["enabled"] is False and "410" in sub["disabled_reason"]
        job_2 = submit(stack)  # no delivery is made for a disabled subscriber
        time.sleep(1.0)
        assert len(server.received) == 1
        enabled = stack.relay_json("subscribers", "enable", sub_id)
        assert enabled["enabled"] is True
        job_3 = submit(stack)
        got = server.wait_for(terminal_for(job_3), timeout=10)
        assert not any(r.body and r.body["data"]["job_id"] == job_2 for r in got)


def test_rotation_sends_two_signatures_that_each_verify(stack: Stack) -> None:
    with SubscriberServer() as server:
        sub_id = add(stack, server)
        old = server.secrets[0]
        rotated = stack.relay_json("subscribers", "rotate-secret", sub_id)
        new = rotated["secret"]
        assert new.startswith("whsec_") and new != old and rotated["previous_secret_expires_at"]
        job_id = submit(stack)
        got: list[Received] = server.wait_for(terminal_for(job_id), timeout=10)
        last = got[-1]
        assert last.signature is not None and len(last.signature.split(" ")) == 2
        headers = {
            "webhook-id": last.webhook_id or "",
            "webhook-timestamp": last.timestamp or "",
            "webhook-signature": last.signature,
        }
        for secret in (old, new):
            assert Webhook(secret).verify(last.raw, headers)["data"]["job_id"] == job_id


def test_subscriber_urls_are_guarded_at_registration(stack: Stack) -> None:
    refused = [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
        "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "https://0.0.0.0/hook",
    ]
    # Every one through the service the CLI and the API call, on the stack's database...
    engine = create_engine(stack.database_url)
    try:
        for url in refused:
            with pytest.raises(services.ServiceError, match="subscriber URL refused"):
                services.create_subscriber(
                    engine,
                    url=url,
                    event_types=None,
                    description=None,
                    max_in_flight=4,
                    allow_private=False,
                    now=datetime.now(UTC),
                )
    finally:
        engine.dispose()
    # ...and a few (one of each kind) through `relay subscribers add` itself, a process each.
    env = {**stack.env, "ALLOW_PRIVATE_URLS": "0"}

    def add_refused(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bin_path("relay"), "subscribers", "add", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    by_cli = [refused[0], refused[3], refused[6], refused[12]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(add_refused, by_cli))
    for url, result in zip(by_cli, results, strict=True):
        assert result.returncode == 2, (url, result.stdout)
        assert "subscriber URL refused" in result.stderr, (url, result.stderr)
    registered = {s["url"] for s in stack.api("GET", "/api/subscribers").json()["items"]}
    assert not registered & set(refused)  # nothing was written for any of them
    r = requests.post(
        stack.base + "/api/subscribers",
        json={"url": "https://169.254.169.254/"},
        headers={"Authorization": "Bearer " + stack.env["ADMIN_TOKEN"]},
        timeout=5,
    )
    # this stack allows private URLs (tests), so the API takes it; the CLI above did not
    assert r.status_code == 201


def signal_mid_delivery(
    stack: Stack, server: SubscriberProcess, signal_name: str, exit_code: int
) -> tuple[Process, str, str]:
    """Register ``server``, have it send the stack's newest worker ``SIG<signal_name>`` the
    moment a request arrives (the attempt is surely in flight at the signal), submit a task,
    and wait (20 s at most) for the request and for the worker to exit with ``exit_code``
    (a negative signal number: killed by it); the worker is then taken off the stack.

    Returns:
        The stopped worker, the subscriber's id and the job's id.
    """
    worker = stack.workers[-1]
    sub_id = add(stack, server)
    server.script(f"signal:{signal_name}:{worker.pid}")
    job_id = submit(stack)
    assert server.wait_for_arrivals(1, timeout=20) == 1
    assert worker.proc.wait(20) == exit_code
    stack.workers.remove(worker)
    worker.stop()
    return worker, sub_id, job_id


def test_sigterm_finishes_the_attempt_in_flight(stack: Stack) -> None:
    # A subscriber process of its own sends the worker SIGTERM the moment the request arrives
    # and answers 200 half a second later: the attempt is surely in flight at the signal, and
    # the answer comes well within the 2 s timeout.
    with SubscriberProcess(hang_seconds=0.5) as server:
        worker, sub_id, job_id = signal_mid_delivery(stack, server, "TERM", 0)
        assert "worker stopped" in worker.output()
        (delivery,) = deliveries_of(stack, sub_id)
        assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
        (received,) = server.received
        assert received.body and received.body["data"]["job_id"] == job_id
        assert received.status_answered == 200


def test_kill_9_mid_delivery_loses_nothing(stack: Stack) -> None:
    # The subscriber process SIGKILLs the worker the moment the request arrives: the attempt
    # is surely in flight, and never recorded.
    with SubscriberProcess(hang_seconds=0.5) as server:
        _, sub_id, job_id = signal_mid_delivery(stack, server, "KILL", -signal.SIGKILL)
        (delivery,) = deliveries_of(stack, sub_id)
        assert delivery["status"] == "pending" and delivery["attempts"] == 0
        stack.start_worker()  # claims it again once the dead worker's lease (9 s) expires
        detail = recorded(stack, delivery["id"], "succeeded", seconds=40)
        attempts = detail["attempt_log"]
        assert [a["outcome"] for a in attempts].count("success") == 1
        assert attempts[-1]["outcome"] == "success" and attempts[-1]["status_code"] == 204
        got = server.wait_for(lambda rs: len(rs) >= len(attempts) + 1, timeout=10)
        mine = [r for r in got if r.body and r.body["data"]["job_id"] == job_id]
        # At least once, and every extra request accounted for: the killed worker's request,
        # then one request per recorded attempt (a failed one, if any, was retried), all with
        # one webhook-id.
        assert len(mine) == len(got) == len(attempts) + 1
        assert len({r.webhook_id for r in mine}) == 1 and all(r.verified for r in mine)


def test_callbacks_stored_while_no_worker_runs_are_applied_and_delivered_once_one_starts(
    stack: Stack,
) -> None:
    """The web answers a callback once it is stored; applying it is the worker's. With every
    worker stopped, the simulator's callbacks are stored (and nothing else happens); a worker
    started later applies them in order and delivers the terminal event, once."""
    for worker in list(stack.workers):
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(20) == 0
        stack.workers.remove(worker)
        worker.stop()
    engine = create_engine(stack.database_url)
    try:
        with SubscriberServer() as server:
            sub_id = add(stack, server)
            job_id = submit(stack)
            stored = "SELECT status, outcome FROM callbacks WHERE job_id = :j ORDER BY id"
            deadline = time.monotonic() + 20
            while True:  # until the simulator's terminal callback is stored
                with engine.connect() as conn:
                    rows = [tuple(r) for r in conn.execute(text(stored), {"j": job_id})]
                if ("SUCCEEDED", "queued") in rows or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert ("SUCCEEDED", "queued") in rows
            assert {outcome for _, outcome in rows} == {"queued"}  # stored, none applied
            assert stack.api("GET", f"/api/tasks/{job_id}").json()["status"] != "SUCCEEDED"
            assert deliveries_of(stack, sub_id) == []

            stack.start_worker()

            got = server.wait_for(terminal_for(job_id), timeout=20)
            assert [r.body["type"] for r in got if r.body] == ["task.succeeded"]
            assert all(r.verified for r in got)
            assert stack.api("GET", f"/api/tasks/{job_id}").json()["status"] == "SUCCEEDED"
            with engine.connect() as conn:
                outcomes = [r[1] for r in conn.execute(text(stored), {"j": job_id})]
            assert "queued" not in outcomes and outcomes.count("applied") >= 2
    finally:
        engine.dispose()
