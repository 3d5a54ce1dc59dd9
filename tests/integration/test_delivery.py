"""The delivery worker against real subscribers over loopback HTTP (in-process servers)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from standardwebhooks.webhooks import Webhook

from receiver import services
from receiver.clock import utcnow
from receiver.delivery.worker import Worker, WorkerConfig
from simulator.subscriber import SubscriberServer
from tests.conftest import JobFactory, new_subscriber, task_body
from tests.helpers import apply_for


def worker_for(engine: Engine, **kw: Any) -> Worker:
    config = WorkerConfig(
        retry_schedule=kw.pop("schedule", (0.05, 0.05, 0.05, 0.05)),
        timeout=kw.pop("timeout", 2.0),
        concurrency=kw.pop("concurrency", 4),
        allow_private=True,
        disable_after=kw.pop("disable_after", 3600.0),
        idle_poll=0.2,
    )
    return Worker(engine, config, rng=random.Random(1))


@pytest.fixture
def subscriber() -> Iterator[SubscriberServer]:
    with SubscriberServer() as server:
        yield server


def register(
    engine: Engine, server: SubscriberServer, types: list[str] | None = None, **kw: Any
) -> str:
    sub = new_subscriber(engine, types, url=server.url, max_in_flight=kw.get("max_in_flight", 4))
    server.secrets.append(sub.secret)
    return sub.id


def finish(client: FlaskClient, ref: str, status: str = "SUCCEEDED") -> None:
    """Post the task's terminal callback and apply it (``relay worker``'s applier, here): its
    event and deliveries are then written."""
    body = task_body(
        ref,
        status,
        artifacts=[{"url": "https://cdn.example/v.mp4"}],
        error=None,
        task_uuid=ref[-12:],
    )
    assert client.post("/callbacks/useapi", json=body).status_code == 202
    assert list(apply_for(client).values()) == ["applied"]


def drain(worker: Worker, until: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_until_idle()
        if until():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def delivery_row(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM deliveries")).one()._mapping)


def test_event_arrives_signed_and_verifies(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    register(engine, subscriber)
    job, ref = make_job(metadata={"customer": "c-1"})
    finish(client, ref)
    worker = worker_for(engine)
    assert worker.run_until_idle() == 1
    events = subscriber.verified_events()
    assert len(events) == 1
    assert events[0]["type"] == "task.succeeded"
    assert events[0]["data"]["metadata"] == {"customer": "c-1"}
    assert events[0]["data"]["artifacts"][0]["url"] == "https://cdn.example/v.mp4"
    row = delivery_row(engine)
    assert row["status"] == "succeeded" and row["attempts"] == 1


def test_retries_until_success_with_the_same_webhook_id(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    register(engine, subscriber)
    subscriber.script(500, 500, 500, 200)
    job, ref = make_job()
    finish(client, ref)
    worker = worker_for(engine)
    drain(worker, lambda: delivery_row(engine)["status"] == "succeeded")
    ids = {r.webhook_id for r in subscriber.received}
    assert len(subscriber.received) == 4 and len(ids) == 1
    assert [r.status_answered for r in subscriber.received] == [500, 500, 500, 200]
    with engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT number, status_code, outcome FROM attempts ORDER BY id")
        ).all()
    assert [tuple(a) for a in attempts] == [
        (1, 500, "http_error"),
        (2, 500, "http_error"),
        (3, 500, "http_error"),
        (4, 200, "success"),
    ]


def test_exhausted_retries_make_a_dead_letter_that_recover_resends(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    register(engine, subscriber)
    subscriber.default_status = 503
    job, ref = make_job()
    finish(client, ref)
    worker = worker_for(engine, schedule=(0.01, 0.01))
    drain(worker, lambda: delivery_row(engine)["status"] == "failed")
    assert len(subscriber.received) == 3
    first_id = subscriber.received[0].webhook_id
    subscriber.default_status = 204
    since = utcnow() - timedelta(minutes=5)
    assert services.recover_deliveries(engine, since, utcnow()) == 1
    drain(worker, lambda: delivery_row(engine)["status"] == "succeeded")
    assert subscriber.received[-1].webhook_id == first_id
    assert subscriber.received[-1].status_answered == 204


def test_redirect_is_a_failure_and_410_disables(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    sub_id = register(engine, subscriber)
    subscriber.script("redirect", 410)
    job, ref = make_job()
    finish(client, ref)
    worker = worker_for(engine)
    drain(worker, lambda: delivery_row(engine)["status"] == "failed")
    with engine.connect() as conn:
        outcomes = [r[0] for r in conn.execute(text("SELECT outcome FROM attempts ORDER BY id"))]
    assert outcomes == ["redirect", "gone"]
    sub = services.get_subscriber(engine, sub_id)
    assert sub.enabled is False and "410" in (sub.disabled_reason or "")


def test_rotation_signs_with_both_secrets(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    sub_id = register(engine, subscriber)
    old_secret = subscriber.secrets[0]
    rotated = services.rotate_secret(engine, sub_id, 3600, utcnow())
    job, ref = make_job()
    finish(client, ref)
    worker_for(engine).run_until_idle()
    got = subscriber.received[-1]
    assert got.signature is not None and len(got.signature.split(" ")) == 2
    body = json.dumps(got.body, separators=(",", ":"), ensure_ascii=False)
    headers = {
        "webhook-id": got.webhook_id or "",
        "webhook-timestamp": got.timestamp or "",
        "webhook-signature": got.signature,
    }
    for secret in (old_secret, rotated.secret):  # each side of the rotation verifies alone
        Webhook(secret).verify(body, headers)


def test_concurrency_cap_keeps_a_hanging_subscriber_from_blocking_others(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer(hang_seconds=3) as slow, SubscriberServer() as fast:
        register(engine, slow, max_in_flight=1)
        register(engine, fast)
        slow.default_status = "hang"  # type: ignore[assignment]
        for _ in range(3):
            _, ref = make_job()
            finish(client, ref)
        worker = worker_for(engine, concurrency=4, timeout=5.0)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            got = fast.wait_for(lambda r: len(r) >= 3, timeout=2.5)
            assert len(got) == 3  # all three arrived while the slow one was still hanging
            assert len(slow.received) == 0
        finally:
            worker.stop()
            thread.join(10)
        assert not thread.is_alive()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_delivery_time_guard_blocks_a_private_address(
    client: FlaskClient,
    engine: Engine,
    make_job: JobFactory,
    subscriber: SubscriberServer,
    host: str,
) -> None:
    """The check runs against the address actually connected to: a URL that slipped in (or a
    name that now resolves to loopback) is refused at connect time, and nothing is sent."""
    sub_id = register(engine, subscriber)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE subscribers SET url = :u WHERE id = :i"),
            {"u": f"https://{host}:{subscriber.port}/hook", "i": sub_id},
        )
    job, ref = make_job()
    finish(client, ref)
    worker = Worker(
        engine,
        WorkerConfig(
            retry_schedule=(60.0,),
            timeout=2.0,
            concurrency=2,
            allow_private=False,
            disable_after=3600.0,
        ),
    )
    worker.run_until_idle()
    with engine.connect() as conn:
        outcome, error = conn.execute(text("SELECT outcome, error FROM attempts")).one()
    assert outcome == "blocked"
    assert "127.0.0.1" in error or "loopback" in error
    assert subscriber.arrivals == 0


def test_http_url_is_blocked_at_delivery_without_allow_private(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    register(engine, subscriber)  # registered as http:// while private URLs were allowed
    job, ref = make_job()
    finish(client, ref)
    config = WorkerConfig((60.0,), 2.0, 2, allow_private=False, disable_after=3600.0)
    Worker(engine, config).run_until_idle()
    with engine.connect() as conn:
        outcome, error = conn.execute(text("SELECT outcome, error FROM attempts")).one()
    assert outcome == "blocked" and "https" in error
    assert subscriber.arrivals == 0


def test_subscriber_failing_longer_than_the_span_is_disabled_then_enabled(
    client: FlaskClient, engine: Engine, make_job: JobFactory, subscriber: SubscriberServer
) -> None:
    sub_id = register(engine, subscriber)
    subscriber.default_status = 500
    worker = worker_for(engine, schedule=(0.05,) * 20, disable_after=0.3)
    job, ref = make_job()
    finish(client, ref)
    drain(worker, lambda: not services.get_subscriber(engine, sub_id).enabled, timeout=10)
    sub = services.get_subscriber(engine, sub_id)
    assert sub.disabled_reason is not None and "only failures since" in sub.disabled_reason
    arrivals = subscriber.arrivals
    worker.run_until_idle()  # a disabled subscriber's deliveries wait
    assert subscriber.arrivals == arrivals
    subscriber.default_status = 204
    services.set_subscriber_enabled(engine, sub_id, True, utcnow())
    drain(worker, lambda: delivery_row(engine)["status"] == "succeeded")
    assert services.get_subscriber(engine, sub_id).failing_since is None
