"""The worker records finished attempts in batches: one transaction writes several results (and
claims the slots they free). What must hold per delivery and per subscriber, on a real SQLite
file and on PostgreSQL, with real HTTP attempts to an in-process subscriber."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from receiver import services
from receiver.clock import utcnow
from receiver.delivery.pipeline import Finished
from receiver.delivery.worker import Worker
from receiver.store.repositories import ClaimedDelivery
from simulator.subscriber import SubscriberServer
from tests.conftest import JobFactory
from tests.integration.test_delivery import finish, register, worker_for


def _deliveries(engine: Engine, count: int, client: FlaskClient, make_job: JobFactory) -> None:
    for _ in range(count):
        _, ref = make_job()
        finish(client, ref)


def _row(engine: Engine, delivery_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM deliveries WHERE id = :i"), {"i": delivery_id})
        return dict(row.one()._mapping)


def _send_all(worker: Worker, claimed: list[ClaimedDelivery]) -> list[Finished]:
    """Attempt each claimed delivery in order (the subscriber answers its script in order)."""
    return [worker.pipeline.send(item) for item in claimed]


def test_one_batch_writes_each_attempt_and_step_and_keeps_a_lost_lease(
    client: FlaskClient,
    engine: Engine,
    make_job: JobFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SubscriberServer() as server:
        sub_id = register(engine, server)
        _deliveries(engine, 3, client, make_job)
        worker = worker_for(engine, schedule=(30.0,))
        claimed = worker.claim(4)
        assert len(claimed) == 3
        server.script(500, 204, 204)  # a failure, then a success, in one batch
        finished = _send_all(worker, claimed)
        failed, ok, stolen = (item.delivery.id for item in claimed)
        with engine.begin() as conn:  # its lease expired and another worker took it
            conn.execute(
                text("UPDATE deliveries SET lease_owner = 'other' WHERE id = :i"), {"i": stolen}
            )
        before = utcnow()
        with caplog.at_level(logging.WARNING, logger="receiver.delivery.pipeline"):
            step = worker.pipeline.step(finished, 0)
            worker.pipeline.report(step)
    assert [kept for _, _, kept in step.recorded] == [True, True, False]
    lost = [r for r in caplog.records if r.getMessage().startswith("lease lost")]
    assert [getattr(r, "delivery_id", None) for r in lost] == [stolen]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT delivery_id, number, status_code, outcome, worker FROM attempts")
        ).all()
    assert sorted(tuple(r) for r in rows) == sorted(
        [
            (failed, 1, 500, "http_error", worker.name),
            (ok, 1, 204, "success", worker.name),
            (stolen, 1, 204, "success", worker.name),  # the attempt happened: it is logged
        ]
    )
    retry = _row(engine, failed)
    assert retry["status"] == "pending" and retry["attempts"] == 1
    assert retry["last_status_code"] == 500 and retry["lease_owner"] is None
    assert retry["next_attempt_at"] is not None and retry["completed_at"] is None
    done = _row(engine, ok)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert done["completed_at"] is not None and done["lease_owner"] is None
    untouched = _row(engine, stolen)  # the other worker's lease and row are left alone
    assert untouched["status"] == "pending" and untouched["attempts"] == 0
    assert untouched["lease_owner"] == "other"
    sub = services.get_subscriber(engine, sub_id)
    # the success came after the failure in the batch: the subscriber is healthy
    assert sub.failing_since is None and sub.enabled
    assert sub.last_failure_at is not None and sub.last_failure_at >= before
    assert sub.last_success_at is not None and sub.last_success_at >= before
    assert sub.last_error == "HTTP 500"


def test_a_failure_after_a_success_in_one_batch_marks_failing_and_410_disables(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer() as server:
        sub_id = register(engine, server)
        _deliveries(engine, 2, client, make_job)
        worker = worker_for(engine)
        claimed = worker.claim(4)
        server.script(204, 410)
        step = worker.pipeline.step(_send_all(worker, claimed), 0)
    sub = services.get_subscriber(engine, sub_id)
    assert sub.failing_since == step.now and sub.last_success_at == step.now
    assert sub.enabled is False and "410" in (sub.disabled_reason or "")
    gone = _row(engine, claimed[1].delivery.id)
    assert gone["status"] == "failed" and gone["completed_at"] is not None


def test_recording_frees_the_cap_slot_for_a_claim_in_the_same_transaction(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer() as server:
        register(engine, server, max_in_flight=1)
        _deliveries(engine, 3, client, make_job)
        worker = worker_for(engine)
        first = worker.claim(4)
        assert len(first) == 1  # the cap
        assert worker.claim(4) == []  # still in flight until recorded
        step = worker.pipeline.step(_send_all(worker, first), 4)
        assert [kept for _, _, kept in step.recorded] == [True]
        assert len(step.claimed) == 1 and step.claimed[0].delivery.id != first[0].delivery.id
        assert _row(engine, step.claimed[0].delivery.id)["lease_owner"] == worker.name
        worker.pipeline.step(_send_all(worker, step.claimed), 0)
        assert worker.run_until_idle() == 1
    with engine.connect() as conn:
        counts = dict(
            conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all()
        )
        attempts = conn.execute(text("SELECT count(*) FROM attempts")).scalar_one()
    assert counts == {"succeeded": 3} and attempts == 3
