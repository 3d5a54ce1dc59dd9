"""The worker's claim and recording statements (``receiver.store.repositories.claims``) on a real
SQLite file and a real PostgreSQL database: how many statements they cost on PostgreSQL, and that
claimers working at once never take one delivery twice nor go over a subscriber's cap."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from receiver.clock import utcnow
from receiver.ids import new_id
from receiver.store.engine import make_engine
from receiver.store.repositories import AttemptRecord, ClaimedDelivery, Delivery, Event
from receiver.store.uow import UnitOfWork
from tests.conftest import subscribe
from tests.helpers import run_in_threads

LEASE = 300.0  # seconds: no lease expires during a test, so no delivery is due twice


def _subscriber(engine: Engine, cap: int) -> str:
    return subscribe(engine, url=f"http://127.0.0.1:9/{new_id('t')}", max_in_flight=cap)


def _backlog(engine: Engine, subscriber_id: str, count: int, due: datetime) -> list[str]:
    """``count`` operational events, each with a delivery to ``subscriber_id``, due one
    millisecond apart from ``due`` on (oldest first); their ids, in that order."""
    rows = [Event(new_id("msg"), None, "subscriber.disabled", n, "{}", due) for n in range(count)]
    deliveries = [
        replace(
            Delivery.new_pending(e.id, subscriber_id, due),
            next_attempt_at=due + timedelta(milliseconds=n),
        )
        for n, e in enumerate(rows)
    ]
    with UnitOfWork(engine) as uow:
        uow.repo.add_events(rows)
        uow.repo.add_deliveries(deliveries)
        uow.commit()
    return [d.id for d in deliveries]


def _success(item: ClaimedDelivery, now: datetime) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=item.delivery.id,
        number=item.delivery.attempts + 1,
        started_at=now,
        duration_ms=1.0,
        status_code=204,
        outcome="success",
        error=None,
        response_body=None,
        status="succeeded",
        next_attempt_at=None,
        completed_at=now,
    )


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL of every statement sent to the database within the block."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_postgresql_claims_in_two_statements_and_records_in_one(
    postgres_database_url: str,
) -> None:
    engine = make_engine(postgres_database_url)
    try:
        sub = _subscriber(engine, 3)
        due = utcnow() - timedelta(seconds=1)
        ids = _backlog(engine, sub, 5, due)
        now = utcnow()
        with UnitOfWork(engine) as uow:
            uow.repo.conn.execute(text("SELECT 1"))  # the transaction has begun
            with _statements(engine) as sent:
                claimed, next_due = uow.repo.claim(
                    worker="w1", now=now, lease_seconds=LEASE, limit=4
                )
            uow.commit()
        # short of 4 (the cap is 3): the next due time came with the claim, not on its own
        assert next_due == due
        assert len(sent) == 2, sent
        assert sent[0].startswith("SELECT subscribers.id FROM subscribers")
        assert sent[0].endswith("FOR NO KEY UPDATE SKIP LOCKED")
        assert sent[1].startswith("WITH ") and " UPDATE deliveries SET lease_owner=" in sent[1]
        assert " RETURNING " in sent[1]
        # what the sender needs came back with the lease: the event's body, the subscriber
        assert [c.delivery.id for c in claimed] == ids[:3]  # the cap, oldest first
        assert all(c.delivery.lease_owner == "w1" for c in claimed)
        assert all(c.event.payload == "{}" and c.subscriber.id == sub for c in claimed)
        assert all(c.subscriber.secret.startswith("whsec_") for c in claimed)

        later = utcnow()
        with UnitOfWork(engine) as uow:
            uow.repo.conn.execute(text("SELECT 1"))
            with _statements(engine) as sent:
                kept = uow.repo.record_attempts(
                    worker="w1", now=later, records=[_success(c, later) for c in claimed]
                )
            uow.commit()
        assert len(sent) == 1, sent
        assert kept == {c.delivery.id for c in claimed}
        with engine.connect() as conn:
            states = dict(
                conn.execute(
                    text("SELECT id, status FROM deliveries WHERE lease_owner IS NULL")
                ).all()
            )
            attempts = conn.execute(text("SELECT count(*) FROM attempts")).scalar_one()
        assert states == {
            **{c.delivery.id: "succeeded" for c in claimed},
            **{i: "pending" for i in ids if i not in kept},
        }
        assert attempts == 3
    finally:
        engine.dispose()


def test_a_second_claimer_skips_a_subscriber_another_holds_then_sees_its_leases(
    engine: Engine,
) -> None:
    """Two transactions claim for one subscriber (cap 3, 60 due) at once: the second gets
    nothing while the first is open, nor after it committed (the cap is full)."""
    sub = _subscriber(engine, 3)
    _backlog(engine, sub, 60, utcnow() - timedelta(seconds=1))
    now = utcnow()
    with UnitOfWork(engine) as first:
        got = first.repo.claim_due(worker="a", now=now, lease_seconds=LEASE, limit=10)
        assert len(got) == 3
        if engine.dialect.name == "postgresql":  # SQLite: one writer at a time anyway
            with UnitOfWork(engine) as second:
                assert (
                    second.repo.claim_due(worker="b", now=now, lease_seconds=LEASE, limit=10) == []
                )
                first.commit()
                assert (
                    second.repo.claim_due(worker="b", now=now, lease_seconds=LEASE, limit=10) == []
                )
                second.commit()
        else:
            first.commit()
    with UnitOfWork(engine) as third:
        assert third.repo.claim_due(worker="c", now=now, lease_seconds=LEASE, limit=10) == []
    with engine.connect() as conn:
        owners = Counter(conn.execute(text("SELECT lease_owner FROM deliveries")).scalars().all())
    assert owners == {"a": 3, None: 57}


def test_concurrent_claimers_take_each_delivery_once_and_keep_every_cap(
    engine: Engine,
) -> None:
    """Four threads claim and record at once over three subscribers (caps 1, 2 and 3).

    A shared count of leases per subscriber goes up right after a claim's statement (before its
    commit makes the leases visible) and down before the commit that records them (which frees
    the slots), so it is never below the number of leases live or being taken: it must never
    exceed a cap. Every delivery is claimed and attempted exactly once.
    """
    caps = {_subscriber(engine, cap): cap for cap in (1, 2, 3)}
    due = utcnow() - timedelta(seconds=1)
    backlog = {sid: set(_backlog(engine, sid, 40, due)) for sid in caps}
    guard = threading.Lock()
    in_flight: Counter[str] = Counter()
    over: list[tuple[str, int]] = []
    claimed_ids: list[str] = []
    total = sum(len(ids) for ids in backlog.values())

    def claimer(n: int) -> None:
        rng = random.Random(n)
        idle = 0
        while idle < 50:
            with UnitOfWork(engine) as uow:
                got = uow.repo.claim_due(
                    worker=f"w{n}", now=utcnow(), lease_seconds=LEASE, limit=rng.randint(1, 5)
                )
                with guard:
                    for item in got:
                        sid = item.subscriber.id
                        in_flight[sid] += 1
                        if in_flight[sid] > caps[sid]:
                            over.append((sid, in_flight[sid]))
                        claimed_ids.append(item.delivery.id)
                uow.commit()
            if not got:
                idle += 1
                threading.Event().wait(0.01)
                continue
            idle = 0
            with UnitOfWork(engine) as uow:
                now = utcnow()
                kept = uow.repo.record_attempts(
                    worker=f"w{n}", now=now, records=[_success(c, now) for c in got]
                )
                assert kept == {c.delivery.id for c in got}
                with guard:
                    for item in got:
                        in_flight[item.subscriber.id] -= 1
                uow.commit()

    run_in_threads(*(partial(claimer, n) for n in range(4)), timeout=120)
    assert over == []
    assert len(claimed_ids) == len(set(claimed_ids)) == total
    with engine.connect() as conn:
        statuses = Counter(conn.execute(text("SELECT status FROM deliveries")).scalars())
        per_delivery = Counter(conn.execute(text("SELECT delivery_id FROM attempts")).scalars())
    assert statuses == {"succeeded": total}
    assert set(per_delivery) == set().union(*backlog.values())
    assert set(per_delivery.values()) == {1}


@pytest.mark.parametrize("leased_by_other", [False, True])
def test_recording_keeps_the_first_of_two_attempts_and_skips_a_lost_lease(
    engine: Engine, leased_by_other: bool
) -> None:
    """Two attempts of one delivery in one batch: both rows are written, the first sets the
    delivery's next step (as when each was updated in turn under the lease guard); a delivery
    another worker leased meanwhile keeps its row and gets the attempt row only."""
    sub = _subscriber(engine, 4)
    _backlog(engine, sub, 2, utcnow() - timedelta(seconds=1))
    now = utcnow()
    with UnitOfWork(engine) as uow:
        twice, other = uow.repo.claim_due(worker="w", now=now, lease_seconds=LEASE, limit=4)
        uow.commit()
    if leased_by_other:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE deliveries SET lease_owner = 'x' WHERE id = :i"),
                {"i": other.delivery.id},
            )
    first = _success(twice, now)
    retry = replace(first, status="pending", completed_at=None, outcome="timeout")
    with UnitOfWork(engine) as uow:
        kept = uow.repo.record_attempts(
            worker="w", now=now, records=[retry, first, _success(other, now)]
        )
        uow.commit()
    expected = {twice.delivery.id} | (set() if leased_by_other else {other.delivery.id})
    assert kept == expected
    with engine.connect() as conn:
        rows = {
            r.id: r for r in conn.execute(text("SELECT id, status, lease_owner FROM deliveries"))
        }
        outcomes = sorted(conn.execute(text("SELECT outcome FROM attempts")).scalars())
    assert outcomes == ["success", "success", "timeout"]
    # sorted by (delivery, number), ties kept in the order given: ``retry`` came first
    assert (rows[twice.delivery.id].status, rows[twice.delivery.id].lease_owner) == (
        "pending",
        None,
    )
    if leased_by_other:
        assert (rows[other.delivery.id].status, rows[other.delivery.id].lease_owner) == (
            "pending",
            "x",
        )
    else:
        assert rows[other.delivery.id].status == "succeeded"
