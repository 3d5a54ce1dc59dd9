"""Operational events: ``relay subscribers add --events a,b``, the ``webhook.test`` sent on
request (CLI and API), and ``subscriber.disabled`` when the worker disables a subscriber.

Real SQLite file and PostgreSQL, the real ``relay`` command in a subprocess, real subscribers
over loopback HTTP that verify every signature with ``standardwebhooks``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from receiver import services
from receiver.clock import utcnow
from receiver.store.uow import UnitOfWork
from simulator.processes import bin_path
from simulator.subscriber import SubscriberServer
from tests.conftest import ADMIN_TOKEN, SECRET, JobFactory, subscribe, table_counts
from tests.integration.test_dashboard import Operator
from tests.integration.test_delivery import drain, finish, register, worker_for


@pytest.fixture
def subscriber() -> Iterator[SubscriberServer]:
    with SubscriberServer() as server:
        yield server


def relay(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``relay`` console script on ``database_url`` (settings from the environment)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "DATABASE_"))},
        "RELAY_ENV": "test",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "ALLOW_PRIVATE_URLS": "1",
        "DELIVERY_TIMEOUT_SECONDS": "5",
    }
    return subprocess.run(
        [bin_path("relay"), *args], env=env, capture_output=True, text=True, timeout=60
    )


# -- relay subscribers add --events ---------------------------------------------------------


def test_events_take_a_comma_separated_list_and_the_repeated_form(
    database_url: str, engine: Engine
) -> None:
    added = relay(
        database_url,
        "subscribers",
        "add",
        "http://127.0.0.1:9/hook",
        "--events",
        "task.failed, subscriber.disabled",
        "--events",
        "task.succeeded,task.failed",
    )
    assert added.returncode == 0, added.stderr
    out = json.loads(added.stdout)
    assert out["event_types"] == ["task.failed", "subscriber.disabled", "task.succeeded"]
    assert services.get_subscriber(engine, out["id"]).event_types == out["event_types"]


def test_unknown_event_type_in_a_list_is_refused_and_nothing_stored(
    database_url: str, engine: Engine
) -> None:
    refused = relay(
        database_url,
        "subscribers",
        "add",
        "http://127.0.0.1:9/hook",
        "--events",
        "task.succeeded,task.exploded",
    )
    assert refused.returncode == 2
    assert "unknown event type(s) task.exploded" in refused.stderr
    assert "subscriber.disabled" in refused.stderr  # the known types are listed
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscribers")).scalar_one() == 0


# -- webhook.test -----------------------------------------------------------------------------


def test_cli_test_sends_one_signed_webhook_test_and_prints_the_answer(
    database_url: str, engine: Engine, subscriber: SubscriberServer
) -> None:
    sub_id = register(engine, subscriber)
    before = table_counts(engine)
    result = relay(database_url, "subscribers", "test", sub_id)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["ok"] is True and answer["outcome"] == "success"
    assert answer["status_code"] == 204 and answer["duration_ms"] >= 0
    assert answer["subscriber_id"] == sub_id and answer["type"] == "webhook.test"
    assert len(subscriber.received) == 1
    got = subscriber.received[0]
    assert got.verified, got.error
    assert got.webhook_id == answer["webhook_id"]
    assert got.body is not None and got.body["type"] == "webhook.test"
    assert got.body["data"]["subscriber_id"] == sub_id
    assert table_counts(engine) == before  # a probe: nothing stored


def test_cli_test_of_a_failing_endpoint_exits_1_with_its_answer(
    database_url: str, engine: Engine, subscriber: SubscriberServer
) -> None:
    sub_id = register(engine, subscriber)
    subscriber.script(503)
    result = relay(database_url, "subscribers", "test", sub_id)
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and answer["outcome"] == "http_error"
    assert answer["status_code"] == 503 and answer["response_body"] == "no"
    missing = relay(database_url, "subscribers", "test", "sub_nope")
    assert missing.returncode == 1 and "no subscriber sub_nope" in missing.stderr


def test_api_test_signs_with_both_secrets_during_rotation(
    client: FlaskClient, admin: dict[str, str], engine: Engine, subscriber: SubscriberServer
) -> None:
    sub_id = register(engine, subscriber)
    old_secret = subscriber.secrets[0]
    rotated = client.post(f"/api/subscribers/{sub_id}/rotate-secret", headers=admin).json
    assert rotated is not None
    for secrets in ([rotated["secret"]], [old_secret]):  # each verifies alone
        subscriber.secrets[:] = secrets
        r = client.post(f"/api/subscribers/{sub_id}/test", headers=admin)
        assert r.status_code == 200, r.json
        assert r.json is not None and r.json["ok"] is True and r.json["status_code"] == 204
        assert subscriber.received[-1].verified, subscriber.received[-1].error
        assert subscriber.received[-1].webhook_id == r.json["webhook_id"]
    signature = subscriber.received[-1].signature or ""
    assert len(signature.split(" ")) == 2 and all(s.startswith("v1,") for s in signature.split())


def test_api_test_unknown_subscriber_is_404_and_disabled_one_is_still_probed(
    client: FlaskClient, admin: dict[str, str], engine: Engine, subscriber: SubscriberServer
) -> None:
    r = client.post("/api/subscribers/sub_nope/test", headers=admin)
    assert r.status_code == 404 and r.json is not None
    assert r.json["error"]["code"] == "subscriber_not_found"
    sub_id = register(engine, subscriber)
    services.set_subscriber_enabled(engine, sub_id, False, utcnow())
    r = client.post(f"/api/subscribers/{sub_id}/test", headers=admin)
    assert r.status_code == 200 and r.json is not None
    assert r.json["enabled"] is False and r.json["ok"] is True
    assert subscriber.received[-1].verified
    assert services.get_subscriber(engine, sub_id).enabled is False  # a probe changes nothing


# -- subscriber.disabled ----------------------------------------------------------------------


def _events_of_type(engine: Engine, event_type: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM events WHERE type = :t ORDER BY id"), {"t": event_type}
        )
        return [dict(r._mapping) for r in rows]


def test_410_disables_and_subscriber_disabled_reaches_those_who_asked(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer() as gone, SubscriberServer() as ops, SubscriberServer() as other:
        gone_id = register(engine, gone)
        ops_id = register(engine, ops, ["subscriber.disabled"])
        register(engine, other, ["task.succeeded"])
        gone.script(410)
        _, ref = make_job()
        finish(client, ref)
        worker = worker_for(engine)
        drain(worker, lambda: len(ops.received) >= 1)
        sub = services.get_subscriber(engine, gone_id)
        assert sub.enabled is False
        got = ops.received[0]
        assert got.verified, got.error
        assert got.body is not None and got.body["type"] == "subscriber.disabled"
        data = got.body["data"]
        assert data["subscriber_id"] == gone_id and data["url"] == gone.url
        assert "410" in data["reason"] and data["event_id"] == got.webhook_id
        worker.run_until_idle()
        # Neither the disabled subscriber nor one that did not ask for the type receives it.
        assert [r.body["type"] for r in gone.received if r.body] == ["task.succeeded"]
        assert [r.body["type"] for r in other.received if r.body] == ["task.succeeded"]
        (event,) = _events_of_type(engine, "subscriber.disabled")
        assert event["job_id"] is None
        # Written in the transaction that disabled the subscriber: the same instant.
        with UnitOfWork(engine, read_only=True) as uow:
            stored = uow.repo.get_event(event["id"])
        assert stored is not None and stored.created_at == sub.disabled_at
        with engine.connect() as conn:
            targets = conn.execute(
                text("SELECT subscriber_id, status FROM deliveries WHERE event_id = :e"),
                {"e": event["id"]},
            ).all()
        assert [tuple(t) for t in targets] == [(ops_id, "succeeded")]


def test_failing_too_long_disables_once_and_tells_once(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer(default_status=500) as failing, SubscriberServer() as ops:
        failing_id = register(engine, failing)
        register(engine, ops, ["subscriber.disabled", "task.failed"])
        worker = worker_for(engine, schedule=(0.05,) * 20, disable_after=0.3)
        _, ref = make_job()
        finish(client, ref)
        drain(worker, lambda: not services.get_subscriber(engine, failing_id).enabled)
        drain(
            worker,
            lambda: any(r.body and r.body["type"] == "subscriber.disabled" for r in ops.received),
        )
        worker.run_until_idle()
        disabled = [r for r in ops.received if r.body and r.body["type"] == "subscriber.disabled"]
        assert len(disabled) == 1 and disabled[0].verified
        assert disabled[0].body is not None
        assert "only failures since" in disabled[0].body["data"]["reason"]
        assert disabled[0].body["data"]["failing_since"] is not None
        # Enabled again and failing again: a second disabling is a second event.
        services.set_subscriber_enabled(engine, failing_id, True, utcnow())
        _, ref2 = make_job()
        finish(client, ref2)
        drain(worker, lambda: not services.get_subscriber(engine, failing_id).enabled)
        worker.run_until_idle()
        assert len(_events_of_type(engine, "subscriber.disabled")) == 2


def test_dashboard_deliveries_page_shows_an_operational_event(
    client: FlaskClient, engine: Engine
) -> None:
    from receiver.delivery.operational import record_subscriber_disabled

    gone_id = subscribe(engine, url="http://127.0.0.1:9/gone", max_in_flight=1)
    subscribe(engine, ["subscriber.disabled"], url="http://127.0.0.1:9/ops", max_in_flight=1)
    now = utcnow() - timedelta(seconds=1)
    with UnitOfWork(engine) as uow:
        sub = uow.repo.get_subscriber(gone_id)
        assert sub is not None
        event_id = record_subscriber_disabled(
            uow.repo, sub, {"enabled": False, "disabled_reason": "test"}, now
        )
        uow.commit()
    operator = Operator(client)
    assert operator.sign_in() == 303
    html = operator.page("/dashboard/deliveries?status=all")
    assert "subscriber.disabled" in html and event_id in html
