"""The operator's signals: ``GET /metrics`` (Prometheus text) and the JSON log lines.

Counters are process-wide, so each test reads them before and after and checks the change.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine

from receiver import metrics, services
from receiver.clock import utcnow
from receiver.delivery.metrics_server import WorkerMetricsServer
from receiver.delivery.worker import Worker
from receiver.logs import configure_logging
from receiver.runtime import Runtime
from receiver.store.uow import UnitOfWork
from simulator.subscriber import SubscriberServer
from tests.conftest import ADMIN_TOKEN, JobFactory, new_subscriber, task_body
from tests.helpers import apply_for, post_and_apply, python_output, worker_config

ROOT = Path(__file__).resolve().parents[2]


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics`` parsed: (sample name, sorted labels) -> value."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def add_subscriber(engine: Engine, server: SubscriberServer, *types: str) -> str:
    sub = new_subscriber(engine, list(types) or None, url=server.url)
    server.secrets.append(sub.secret)
    return sub.id


def worker_for(engine: Engine) -> Worker:
    config = worker_config((0.01, 0.01), idle_poll=0.2)
    return Worker(engine, config, rng=random.Random(1))


# -- /metrics ---------------------------------------------------------------------------------


def deliver_after_one_retry(client: FlaskClient, engine: Engine, make_job: JobFactory) -> None:
    """A new job succeeds (its callback stored and applied) and its one event reaches a new
    subscriber at the second attempt (the first is answered 500), the worker running in this
    thread: a pass, then a short pause for the retry to fall due. Asserts that it did."""
    with SubscriberServer() as server:
        add_subscriber(engine, server)
        server.script(500)
        _job, ref = make_job()
        done = task_body(ref, "SUCCEEDED", artifacts=[{"url": "https://cdn.example/v.mp4"}])
        assert post_and_apply(client, done).status_code == 202
        worker = worker_for(engine)

        def delivered() -> bool:
            events = {body["data"]["event_id"] for body in server.verified_events()}
            return len(events) == 1 and server.received[-1].status_answered == 204

        for _ in range(200):
            worker.run_until_idle()
            if delivered():
                break
            time.sleep(0.02)
        assert delivered(), [r.status_answered for r in server.received]


def test_metrics_need_the_admin_token(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.json is not None and wrong.json["error"]["code"] == "unauthorized"
    assert "runway_relay" not in wrong.text
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200 and "runway_relay_callbacks_received_total" in ok.text


def test_callbacks_transitions_and_events_are_counted(
    client: FlaskClient, make_job: JobFactory
) -> None:
    before = scrape(client)
    job, ref = make_job()
    assert client.post("/callbacks/useapi", json=task_body(ref, "RUNNING")).status_code == 202
    assert client.post("/callbacks/useapi", json=task_body(ref, "RUNNING")).status_code == 202
    done = task_body(ref, "SUCCEEDED", artifacts=[{"url": "https://cdn.example/v.mp4"}])
    assert client.post("/callbacks/useapi", json=done).status_code == 202
    assert client.post("/callbacks/useapi", json=task_body("forged.ref.value")).status_code == 401
    stored = scrape(client)
    assert value(stored, "runway_relay_callbacks_queued") == 3
    assert len(apply_for(client)) == 3  # relay worker's applier, here
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    name = "runway_relay_callbacks_received_total"
    assert delta(name, result="accepted", outcome="queued") == 3
    assert delta(name, result="refused", outcome="reply_ref_invalid") == 1
    # the applier's counters, read from the database by the web's /metrics
    assert delta("runway_relay_callbacks_applied_total", outcome="applied") == 2
    assert delta("runway_relay_callbacks_applied_total", outcome="duplicate") == 1
    assert delta("runway_relay_task_transitions_total", state="RUNNING") == 1
    assert delta("runway_relay_task_transitions_total", state="SUCCEEDED") == 1
    assert delta("runway_relay_events_emitted_total", type="task.progress") == 1
    assert delta("runway_relay_events_emitted_total", type="task.succeeded") == 1
    assert value(after, "runway_relay_callbacks_queued") == 0


def test_database_gauges_follow_the_tables(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer() as server:
        add_subscriber(engine, server)
        other = add_subscriber(engine, server)
        services.set_subscriber_enabled(engine, other, False, utcnow())
        job, ref = make_job(task_id="user:1-runwayml:sim@example.com-task:g-1")
        running = task_body(ref, "RUNNING", task_uuid="g-1")
        assert client.post("/callbacks/useapi", json=running).status_code == 202
        apply_for(client)
        gauges = scrape(client)
        assert value(gauges, "runway_relay_tasks_in_flight", state="RUNNING") == 1
        assert value(gauges, "runway_relay_deliveries_pending") == 0  # progress not subscribed
        done = task_body(ref, "SUCCEEDED", task_uuid="g-1", artifacts=[{"url": "https://x/v"}])
        assert client.post("/callbacks/useapi", json=done).status_code == 202
        apply_for(client)
        gauges = scrape(client)
        assert value(gauges, "runway_relay_database_up") == 1
        assert value(gauges, "runway_relay_deliveries_pending") == 1
        assert value(gauges, "runway_relay_subscribers_disabled") == 1
        assert value(gauges, "runway_relay_tasks_in_flight", state="RUNNING") == 0
        assert 0 <= value(gauges, "runway_relay_delivery_oldest_pending_age_seconds") < 60
        with UnitOfWork(engine) as uow:
            oldest = uow.repo.oldest_pending_delivery()
        assert oldest is not None
        later = oldest + timedelta(seconds=600)
        fixed = {
            m.name: m.samples[0].value
            for m in metrics.DatabaseCollector(engine, now=later).collect()
            if m.samples
        }
        assert fixed["runway_relay_delivery_oldest_pending_age_seconds"] == pytest.approx(600)


def test_delivery_attempts_and_end_to_end_latency(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    before = scrape(client)
    deliver_after_one_retry(client, engine, make_job)
    after = scrape(client)
    attempts = "runway_relay_delivery_attempts_total"
    assert (
        value(after, attempts, outcome="http_error") - value(before, attempts, outcome="http_error")
        == 1
    )
    assert (
        value(after, attempts, outcome="success") - value(before, attempts, outcome="success") == 1
    )
    count = "runway_relay_delivery_latency_seconds_count"
    assert value(after, count) - value(before, count) == 1
    total = "runway_relay_delivery_latency_seconds_sum"
    latency = value(after, total) - value(before, total)
    assert 0 < latency < 30  # callback received -> subscriber 2xx, including one retry
    inf = value(after, "runway_relay_delivery_latency_seconds_bucket", le="+Inf")
    assert inf >= value(after, count)


def test_a_database_that_is_away_reads_as_down_not_as_an_error(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'nope.sqlite3'}")
    families = {m.name: m for m in metrics.DatabaseCollector(engine).collect()}
    assert families["runway_relay_database_up"].samples[0].value == 0
    assert "runway_relay_deliveries_pending" not in families
    engine.dispose()


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    """Two processes count into PROMETHEUS_MULTIPROC_DIR; a third one's scrape sees the sum."""
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    count = textwrap.dedent(
        """
        import sys
        from receiver import metrics
        for _ in range(int(sys.argv[1])):
            metrics.callback_refused("invalid_body")
        metrics.delivery_attempted("success", 0.2)
        """
    )
    for n in ("3", "4"):
        subprocess.run([sys.executable, "-c", count, n], env=env, check=True, timeout=60)
    show = "from receiver import metrics; print(metrics.render(None).decode())"
    out = python_output(show, env)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    key = (
        "runway_relay_callbacks_received_total",
        (("outcome", "invalid_body"), ("result", "refused")),
    )
    assert samples[key] == 7
    assert samples[("runway_relay_delivery_latency_seconds_count", ())] == 2
    assert len(list(directory.glob("*.db"))) >= 2  # one file per process and kind


def test_the_worker_serves_its_own_metrics_behind_the_token() -> None:
    metrics.delivery_attempted("timeout")
    server = WorkerMetricsServer("127.0.0.1", 0, ADMIN_TOKEN).start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert requests.get(url, timeout=5).status_code == 401
        bad = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert bad.status_code == 401
        ok = requests.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
        assert ok.status_code == 200
        assert 'runway_relay_delivery_attempts_total{outcome="timeout"}' in ok.text
        assert requests.get(url.replace("/metrics", "/x"), timeout=5).status_code == 404
    finally:
        server.stop()


# -- logs -------------------------------------------------------------------------------------


@pytest.fixture
def log_lines(client: FlaskClient) -> Iterator[io.StringIO]:
    """Capture the app's log output as JSON lines, at INFO (``client`` built the app first)."""
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    yield stream
    configure_logging("text", "WARNING")


def records(stream: io.StringIO) -> list[dict[str, object]]:
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # each line is one JSON object


def test_error_responses_and_log_lines_share_the_request_id(
    client: FlaskClient, log_lines: io.StringIO
) -> None:
    response = client.get("/api/tasks", headers={"Authorization": "Bearer wrong-token-123"})
    assert response.status_code == 401
    body = response.json
    assert body is not None
    request_id = body["error"]["request_id"]
    assert request_id and response.headers["X-Request-ID"] == request_id
    mine = [r for r in records(log_lines) if r.get("request_id") == request_id]
    assert mine, log_lines.getvalue()
    assert mine[0]["message"] == "error response" and mine[0]["status"] == 401
    assert mine[0]["path"] == "/api/tasks"
    given = client.get("/api/tasks/nope", headers={"X-Request-ID": "trace-abc-123"})
    assert given.json is not None and given.json["error"]["request_id"] == "trace-abc-123"
    assert any(r.get("request_id") == "trace-abc-123" for r in records(log_lines))


def test_logs_carry_job_and_task_ids_and_never_a_secret(
    client: FlaskClient, admin: dict[str, str], make_job: JobFactory, log_lines: io.StringIO
) -> None:
    job, ref = make_job()
    body = task_body(ref, "RUNNING", task_uuid="log-1")
    assert client.post("/callbacks/useapi", json=body).status_code == 202
    created = client.post(
        "/api/subscribers", json={"url": "http://127.0.0.1:9/hook"}, headers=admin
    )
    assert created.status_code == 201 and created.json is not None
    secret = created.json["secret"]
    rotated = client.post(f"/api/subscribers/{created.json['id']}/rotate-secret", headers=admin)
    assert rotated.json is not None
    client.get("/api/tasks", headers={"Authorization": "Bearer guess-of-the-token"})
    text = log_lines.getvalue()
    accepted = [r for r in records(log_lines) if r["message"] == "callback stored"]
    assert accepted and accepted[0]["job_id"] == job.id
    assert accepted[0]["task_id"] == body["taskId"]
    assert accepted[0]["request_id"]
    for forbidden in (ref, ADMIN_TOKEN, secret, rotated.json["secret"], "guess-of-the-token"):
        assert forbidden not in text


def test_a_careless_log_call_is_still_redacted() -> None:
    import logging

    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        logging.getLogger("test").info(
            "sent with whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
            extra={"secret": "whsec_abcdefgh", "replyRef": "a.b.c", "job_id": "job_1"},
        )
    finally:
        configure_logging("text", "WARNING")
    line = json.loads(stream.getvalue())
    assert line["secret"] == "[redacted]" and line["replyRef"] == "[redacted]"
    assert line["job_id"] == "job_1"
    assert "c2VjcmV0" not in line["message"] and "whsec_[redacted]" in line["message"]


def test_text_format_for_local_development(runtime: Runtime) -> None:
    import logging

    stream = io.StringIO()
    configure_logging("text", "INFO", stream=stream)
    try:
        logging.getLogger("relay.test").info("hello", extra={"job_id": "job_9"})
    finally:
        configure_logging("text", "WARNING")
    line = stream.getvalue().strip()
    assert "relay.test: hello" in line and "job_id=job_9" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_importing_metrics_touches_nothing_until_a_metric_is_used(tmp_path: Path) -> None:
    """receiver.metrics reads PROMETHEUS_MULTIPROC_DIR when a metric is first used, not at
    import: only then is a missing directory made and this process's file written there."""
    directory = tmp_path / "not-yet" / "prom"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    script = textwrap.dedent(
        """
        import os, sys
        from receiver import metrics
        assert not os.path.exists(sys.argv[1]), "made at import"
        metrics.callback_refused("invalid_body")
        print(sorted(os.listdir(sys.argv[1])))
        """
    )
    out = python_output(script, env, str(directory))
    assert directory.is_dir()
    assert "counter_" in out  # this process's counter file
