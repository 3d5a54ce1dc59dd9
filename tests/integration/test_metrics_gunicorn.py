"""Metrics across real processes: two gunicorn workers sharing PROMETHEUS_MULTIPROC_DIR (a
``relay worker`` given it too, which the web's scrape must not count twice: the worker's counters
come from the database), and the worker's own endpoint on WORKER_METRICS_HOST:PORT."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from simulator.demo import tiny_png
from simulator.processes import free_port
from simulator.subscriber import SubscriberServer
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("metrics-stack")
    shared = tmp / "prometheus"
    running = Stack(
        tmp,
        f"sqlite:///{tmp / 'relay.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
        WORKER_METRICS_PORT=str(free_port()),
        WORKER_METRICS_HOST="127.0.0.1",
        WEB_CONCURRENCY="2",
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(url, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


REFUSED = (
    "runway_relay_callbacks_received_total",
    (("outcome", "invalid_body"), ("result", "refused")),
)


def test_every_scrape_sees_the_sum_of_both_web_workers(stack: Stack) -> None:
    sent = 40
    session = requests.Session()  # keep-alive off below, so requests spread over workers
    for _ in range(sent):
        response = session.post(
            stack.base + "/callbacks/useapi",
            data=b"not json",
            headers={"Content-Type": "application/json", "Connection": "close"},
            timeout=10,
        )
        assert response.status_code == 400
    session.close()
    seen = [scrape(stack.base + "/metrics").get(REFUSED, 0.0) for _ in range(8)]
    assert seen == [sent] * 8, seen  # one worker alone would show only its own share
    directory = Path(stack.env["PROMETHEUS_MULTIPROC_DIR"])
    pids = {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}
    assert len(pids) >= 2  # both web workers (and the relay worker) wrote their own file


def test_the_web_scrape_includes_the_relay_worker_and_it_serves_its_own(
    stack: Stack, tmp_path: Path
) -> None:
    with SubscriberServer() as server:
        added = stack.relay_json("subscribers", "add", server.url)
        server.secrets.append(added["secret"])
        image = tmp_path / "frame.png"
        image.write_bytes(tiny_png())
        submitted = stack.relay_json("submit", "--image", str(image), "--prompt", "metrics")
        got = server.wait_for(
            lambda r: any(x.body and x.body["data"]["job_id"] == submitted["job_id"] for x in r),
            timeout=30,
        )
        assert any(x.verified for x in got)
    deadline = time.monotonic() + 10
    web: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    while time.monotonic() < deadline:
        web = scrape(stack.base + "/metrics")
        if web.get(("runway_relay_delivery_latency_seconds_count", ()), 0) >= 1:
            break
        time.sleep(0.1)
    success = ("runway_relay_delivery_attempts_total", (("outcome", "success"),))
    assert web[success] >= 1
    assert web[("runway_relay_delivery_latency_seconds_count", ())] >= 1
    assert web[("runway_relay_task_transitions_total", (("state", "SUCCEEDED"),))] >= 1
    assert web[("runway_relay_database_up", ())] == 1
    assert web[("runway_relay_deliveries_pending", ())] == 0
    job = stack.api("GET", f"/api/tasks/{submitted['job_id']}").json()
    assert job["status"] == "SUCCEEDED", json.dumps(job)[:500]

    port = stack.env["WORKER_METRICS_PORT"]
    assert f"worker metrics on 127.0.0.1:{port}/metrics" in stack.workers[0].output()
    own = f"http://127.0.0.1:{port}/metrics"
    assert requests.get(own, timeout=5).status_code == 401
    mine = scrape(own)
    assert mine[success] >= 1
    assert web[success] == mine[success]  # one worker: its own count, once (not twice)
    assert ("runway_relay_database_up", ()) not in mine  # the gauges are the web's to serve
