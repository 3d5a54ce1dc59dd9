"""How the purge shares the database with ingest, on a real SQLite file and PostgreSQL: it
searches for rows without SQLite's write lock, deletes only what still qualifies when it
holds it (a row that changed since it was picked stays, with its attempts), and its write
transactions do not wait for the disk while every other one still does."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text

from receiver.clock import utcnow
from receiver.services.deliveries import retry_delivery
from receiver.store import retention
from receiver.store.engine import make_engine
from receiver.store.migrate import upgrade
from receiver.store.tables import attempts, deliveries, refused_callbacks
from receiver.store.uow import UnitOfWork
from tests.integration.test_retention import OLD, Seed, Writer

CUTOFF = retention.cutoff_for(30)


def synchronous(uow: UnitOfWork) -> str:
    """How the unit of work's commit waits for the disk: SQLite's ``synchronous`` (1 NORMAL,
    2 FULL) or PostgreSQL's ``synchronous_commit`` (``off``, ``on``)."""
    conn = uow.repo.conn
    if conn.dialect.name == "sqlite":
        return str(conn.execute(text("PRAGMA synchronous")).scalar_one())
    return str(conn.execute(text("SHOW synchronous_commit")).scalar_one())


def test_a_purge_transaction_skips_the_wait_for_the_disk_and_only_it(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)  # one connection, reused
    try:
        with UnitOfWork(engine, durable=False) as uow:
            uow.repo.conn.execute(
                insert(refused_callbacks).values(
                    received_at=OLD, reason="bad_signature", http_status=401, body_size=1
                )
            )
            relaxed = synchronous(uow)
            uow.commit()
        with UnitOfWork(engine) as uow:
            after = synchronous(uow)
            kept = uow.repo.conn.execute(select(func.count()).select_from(refused_callbacks))
            assert kept.scalar_one() == 1  # committed all the same
    finally:
        engine.dispose()
    if engine.dialect.name == "sqlite":
        assert (relaxed, after) == ("1", "2")  # NORMAL for the purge, FULL again for the next
    else:
        assert (relaxed, after) == ("off", "on")  # SET LOCAL: this transaction only


def test_the_search_runs_while_another_writer_holds_sqlites_lock(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(refused_callbacks),
                [
                    {
                        "received_at": OLD,
                        "reason": "bad_signature",
                        "http_status": 401,
                        "body_size": 1,
                    }
                    for _ in range(40)
                ],
            )
        holder = sqlite3.connect(path, isolation_level=None)  # another process's writer
        holder.execute("BEGIN IMMEDIATE")
        try:
            picked = retention.candidates(engine, "refused_callbacks", CUTOFF, 25)
        finally:
            holder.rollback()
            holder.close()
        assert len(picked) == 25
        removed, _held, files = retention.remove(
            engine, "refused_callbacks", CUTOFF, picked, limit=25
        )
        assert (removed, files) == ({"refused_callbacks": 25}, [])
        with engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(refused_callbacks)).scalar_one()
        assert left == 15
    finally:
        engine.dispose()


def test_a_delivery_retried_after_it_was_picked_stays_with_its_attempts(
    engine: Engine, tmp_path: Path
) -> None:
    writer = Writer(engine, Seed(), tmp_path)
    event_id = writer.event(writer.job("SUCCEEDED", OLD, OLD, keep=False), OLD, keep=False)
    retried = writer.delivery(event_id, "failed", OLD, OLD, keep=True, tries=2)
    other = writer.delivery(event_id, "succeeded", OLD, OLD, keep=False, tries=3)
    picked = retention.candidates(engine, "deliveries", CUTOFF, 10)
    assert sorted(picked) == sorted([retried, other])

    retry_delivery(engine, retried, utcnow())  # an operator re-sends the dead letter meanwhile
    removed, _held, _files = retention.remove(engine, "deliveries", CUTOFF, picked, limit=10)

    assert removed == {"deliveries": 1, "attempts": 3}
    with engine.connect() as conn:
        left = conn.execute(select(deliveries.c.id, deliveries.c.status)).all()
        tries = conn.execute(
            select(attempts.c.delivery_id, func.count()).group_by(attempts.c.delivery_id)
        ).all()
    assert [(row.id, row.status) for row in left] == [(retried, "pending")]
    assert [tuple(row) for row in tries] == [(retried, 2)]


def test_a_search_that_finds_rows_gone_removes_nothing(engine: Engine, tmp_path: Path) -> None:
    writer = Writer(engine, Seed(), tmp_path)
    writer.refused(OLD, keep=False)
    picked = retention.candidates(engine, "refused_callbacks", CUTOFF, 10)
    assert len(picked) == 1
    assert retention.remove(engine, "refused_callbacks", CUTOFF, picked, limit=10)[0] == {
        "refused_callbacks": 1
    }
    # Another purge had picked the same row: by the time it holds the lock, it is gone.
    assert retention.remove(engine, "refused_callbacks", CUTOFF, picked, limit=10)[0] == {
        "refused_callbacks": 0
    }


def test_attempts_go_only_with_their_delivery(engine: Engine) -> None:
    with pytest.raises(KeyError):
        retention.candidates(engine, "attempts", CUTOFF, 5)


def test_a_purge_running_beside_a_writer_thread_loses_none_of_its_rows(engine: Engine) -> None:
    # Fresh rows written while the purge runs are never picked (they are not expired).
    with engine.begin() as conn:
        conn.execute(
            insert(refused_callbacks),
            [
                {"received_at": OLD, "reason": "bad_signature", "http_status": 401, "body_size": 1}
                for _ in range(300)
            ],
        )
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        while not stop.is_set() and len(written) < 2000:
            with UnitOfWork(engine) as uow:
                uow.repo.conn.execute(
                    insert(refused_callbacks).values(
                        received_at=utcnow(), reason="bad_signature", http_status=401, body_size=2
                    )
                )
                uow.commit()
            written.append(1)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        removed = retention.purge(engine, CUTOFF, batch=25, pause=0.0, duty=1.0)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert removed["refused_callbacks"] == 300
    with engine.connect() as conn:
        fresh = conn.execute(
            select(func.count())
            .select_from(refused_callbacks)
            .where(refused_callbacks.c.body_size == 2)
        ).scalar_one()
        old = conn.execute(
            select(func.count())
            .select_from(refused_callbacks)
            .where(refused_callbacks.c.body_size == 1)
        ).scalar_one()
    assert (fresh, old) == (len(written), 0)
    assert written  # the writer did write while the purge ran


def expired_batches_and_a_running_job(
    engine: Engine, tmp_path: Path, batches: int
) -> tuple[Writer, str]:
    """``batches`` of SQLite's smallest batch of expired refused callbacks, and a running job
    to store callbacks for while the purge runs: its writer and its id."""
    writer = Writer(engine, Seed(), tmp_path)
    job_id = writer.job("RUNNING", utcnow(), None, keep=True)
    with engine.begin() as conn:
        conn.execute(
            insert(refused_callbacks),
            [
                {"received_at": OLD, "reason": "bad_signature", "http_status": 401, "body_size": 1}
                for _ in range(batches * retention.MIN_BATCH_ROWS)
            ],
        )
    return writer, job_id


def test_the_purge_gives_way_while_callbacks_arrive(engine: Engine, tmp_path: Path) -> None:
    batches = 16
    writer, job_id = expired_batches_and_a_running_job(engine, tmp_path, batches)
    pauses: list[tuple[float, float]] = []  # (work since the last pause, pause), seconds
    mark = time.monotonic()

    def sleep(seconds: float) -> None:
        nonlocal mark
        pauses.append((time.monotonic() - mark, seconds))
        if 2 <= len(pauses) <= 8:  # a callback is stored while the purge pauses
            writer.callback(job_id, utcnow(), keep=True)
        mark = time.monotonic()

    removed = retention.purge(
        engine,
        CUTOFF,
        batch=retention.MIN_BATCH_ROWS,
        pause=0.0,
        duty=0.5,  # calm: pauses as long as the batch
        busy_duty=0.1,  # callbacks arriving: 9 times as long
        sleep=sleep,
    )
    assert removed["refused_callbacks"] == batches * retention.MIN_BATCH_ROWS
    assert len(pauses) == batches
    # A callback stored during pause k shows after batch k + 1: pauses 3..9 give way.
    busy, calm = pauses[2:9], pauses[:2] + pauses[9:]
    busy_ratio = sum(p for _, p in busy) / sum(w for w, _ in busy)
    calm_ratio = sum(p for _, p in calm) / sum(w for w, _ in calm)
    assert busy_ratio > 3 * calm_ratio, (busy_ratio, calm_ratio)
    with pytest.raises(ValueError, match="duty"):
        retention.purge(engine, CUTOFF, busy_duty=1.5)


def test_while_callbacks_arrive_the_purge_works_a_three_hundredth_of_the_time(
    engine: Engine, tmp_path: Path
) -> None:
    """By default the purge works :data:`DUTY_WHILE_INGESTING` (a three-hundredth) of the time
    while callbacks arrive, on SQLite (whose every callback waits for the write lock a batch
    holds) and on PostgreSQL (where a batch takes a core)."""
    batches = 6
    writer, job_id = expired_batches_and_a_running_job(engine, tmp_path, batches)
    ratios: list[float] = []  # pause / work before it
    mark = time.monotonic()

    def sleep(seconds: float) -> None:
        nonlocal mark
        ratios.append(seconds / (time.monotonic() - mark))
        writer.callback(job_id, utcnow(), keep=True)  # callbacks keep arriving
        mark = time.monotonic()

    removed = retention.purge(
        engine, CUTOFF, batch=retention.MIN_BATCH_ROWS, pause=0.0, duty=0.5, sleep=sleep
    )
    assert removed["refused_callbacks"] == batches * retention.MIN_BATCH_ROWS
    busy = ratios[1:]  # the first batch saw none arrive yet
    assert len(busy) == batches - 1
    share = retention.DUTY_WHILE_INGESTING
    assert share == 1 / 300
    # The purge times its own work, which lies inside what is timed here (with the read of
    # the newest callback id besides): never more than 1 / share - 1 times as long a pause,
    # and all batches together far more than the calm duty's 1 (duty=0.5).
    assert all(r <= 1 / share - 1 for r in busy), (share, busy)
    assert sum(busy) / len(busy) > 30, busy
