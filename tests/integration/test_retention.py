"""Retention on a real SQLite file and PostgreSQL: ``relay purge --dry-run`` counts and
removes nothing, ``relay purge`` and the worker's scheduled purge remove finished work older
than ``RETENTION_DAYS`` and keep live work (pending deliveries, unfinished jobs, dead letters
younger than their window)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text

from receiver.clock import utcnow
from receiver.ids import new_id
from receiver.store import retention
from receiver.store.engine import make_engine
from receiver.store.tables import (
    artifact_copies,
    attempts,
    callbacks,
    deliveries,
    events,
    idempotency_keys,
    jobs,
    metadata,
    refused_callbacks,
    sessions,
    subscribers,
)
from simulator.processes import Process, bin_path
from tests.conftest import ADMIN_TOKEN, SECRET

NOW = utcnow()
OLD = NOW - timedelta(days=40)  # beyond the default 30 days
RECENT = NOW - timedelta(days=1)


@dataclass
class Seed:
    """What was written, by what must survive (``kept``) and what must go (``gone``)."""

    kept: dict[str, set[Any]] = field(default_factory=dict)
    gone: dict[str, set[Any]] = field(default_factory=dict)

    def add(self, table: str, key: Any, *, keep: bool) -> Any:
        (self.kept if keep else self.gone).setdefault(table, set()).add(key)
        return key

    def expected_counts(self) -> dict[str, int]:
        return {t: len(self.gone.get(t, ())) for t in retention.TABLES}


class Writer:
    def __init__(self, engine: Engine, seed: Seed, root: Path) -> None:
        self.engine, self.seed, self.root = engine, seed, root
        self.sequence = itertools.count(1)
        self.sub_ids = [new_id("sub"), new_id("sub")]
        self.per_event: dict[str, int] = {}
        with engine.begin() as conn:
            for sub_id in self.sub_ids:
                conn.execute(
                    insert(subscribers).values(
                        id=sub_id,
                        url="http://127.0.0.1:9/hook",
                        event_types=["task.succeeded"],
                        secret="whsec_x",
                        enabled=True,
                        max_in_flight=4,
                        created_at=OLD,
                    )
                )

    def job(self, status: str, created: datetime, finished: datetime | None, *, keep: bool) -> str:
        job_id = self.seed.add("jobs", new_id("job"), keep=keep)
        with self.engine.begin() as conn:
            conn.execute(
                insert(jobs).values(
                    id=job_id,
                    model="gen3turbo",
                    request={},
                    metadata={},
                    status=status,
                    artifacts=[],
                    sequence=0,
                    created_at=created,
                    updated_at=finished or created,
                    finished_at=finished,
                )
            )
        return job_id

    def callback(self, job_id: str, at: datetime, *, keep: bool) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(callbacks).values(
                    job_id=job_id,
                    received_at=at,
                    status="RUNNING",
                    outcome="applied",
                    body={"raw": "x" * 100},
                    body_sha256="0" * 64,
                )
            )
            (pk,) = result.inserted_primary_key or (None,)
        self.seed.add("callbacks", pk, keep=keep)

    def event(self, job_id: str | None, at: datetime, *, keep: bool) -> str:
        event_id = self.seed.add("events", new_id("msg"), keep=keep)
        with self.engine.begin() as conn:
            conn.execute(
                insert(events).values(
                    id=event_id,
                    job_id=job_id,
                    type="task.succeeded" if job_id else "subscriber.disabled",
                    sequence=next(self.sequence),
                    payload="{}",
                    created_at=at,
                )
            )
        return event_id

    def delivery(
        self,
        event_id: str,
        status: str,
        created: datetime,
        completed: datetime | None,
        *,
        keep: bool,
        tries: int = 2,
        leased: bool = False,
    ) -> str:
        delivery_id = self.seed.add("deliveries", new_id("dlv"), keep=keep)
        index = self.per_event[event_id] = self.per_event.get(event_id, -1) + 1
        with self.engine.begin() as conn:
            conn.execute(
                insert(deliveries).values(
                    id=delivery_id,
                    event_id=event_id,
                    subscriber_id=self.sub_ids[index],
                    status=status,
                    attempts=tries,
                    next_attempt_at=NOW + timedelta(hours=1),
                    lease_owner="w-1" if leased else None,
                    lease_expires_at=NOW + timedelta(minutes=5) if leased else None,
                    created_at=created,
                    updated_at=completed or created,
                    completed_at=completed,
                )
            )
            for number in range(1, tries + 1):
                result = conn.execute(
                    insert(attempts).values(
                        delivery_id=delivery_id,
                        number=number,
                        started_at=created,
                        duration_ms=12.0,
                        status_code=500,
                        outcome="http_error",
                        response_body="y" * 200,
                    )
                )
                (pk,) = result.inserted_primary_key or (None,)
                self.seed.add("attempts", pk, keep=keep)
        return delivery_id

    def copy(self, event_id: str, job_id: str, *, keep: bool) -> None:
        """A done ``ARTIFACT_STORE`` copy of the event, with its file in :attr:`root`."""
        key = f"{job_id}/0-video.mp4"
        (self.root / job_id).mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(b"video")
        self.seed.add("artifact_copies", event_id, keep=keep)
        self.seed.add("files", key, keep=keep)
        with self.engine.begin() as conn:
            conn.execute(
                insert(artifact_copies).values(
                    event_id=event_id,
                    job_id=job_id,
                    status="done",
                    attempts=1,
                    next_attempt_at=OLD,
                    stored=[{"key": key, "size": 5, "sha256": "0" * 64, "source": "x"}],
                    created_at=OLD,
                    updated_at=OLD,
                )
            )

    def refused(self, at: datetime, *, keep: bool) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(refused_callbacks).values(
                    received_at=at, reason="bad_signature", http_status=401, body_size=10
                )
            )
            (pk,) = result.inserted_primary_key or (None,)
        self.seed.add("refused_callbacks", pk, keep=keep)

    def key(self, at: datetime, state: str, *, keep: bool) -> None:
        key = self.seed.add("idempotency_keys", str(uuid.uuid4()), keep=keep)
        with self.engine.begin() as conn:
            conn.execute(
                insert(idempotency_keys).values(
                    idempotency_key=key, request_hash="0" * 64, state=state, created_at=at
                )
            )

    def session(self, signed_in: datetime, *, keep: bool) -> None:
        """A dashboard session signed in at ``signed_in``, ending 12 hours later."""
        key = self.seed.add("sessions", uuid.uuid4().hex * 2, keep=keep)
        with self.engine.begin() as conn:
            conn.execute(
                insert(sessions).values(
                    id_sha256=key, created_at=signed_in, expires_at=signed_in + timedelta(hours=12)
                )
            )


def seed_history(engine: Engine, root: Path) -> Seed:
    """Finished and live work, old and recent; see each line for why it stays or goes.
    ``ARTIFACT_STORE`` files are written under ``root``."""
    seed = Seed()
    w = Writer(engine, seed, root)
    # A job finished long ago: everything of it goes.
    a = w.job("SUCCEEDED", OLD, OLD + timedelta(hours=1), keep=False)
    w.callback(a, OLD, keep=False)
    w.callback(a, OLD + timedelta(minutes=5), keep=False)
    e = w.event(a, OLD, keep=False)
    w.copy(e, a, keep=False)  # its video's durable copy, file included
    w.delivery(e, "succeeded", OLD, OLD + timedelta(seconds=1), keep=False)
    w.delivery(e, "failed", OLD, OLD + timedelta(days=3), keep=False)  # an old dead letter
    # Finished long ago, but a dead letter of it died yesterday (younger than its window):
    # that delivery, its attempts, its event and the job stay; the old callbacks go.
    b = w.job("FAILED", OLD, OLD + timedelta(hours=1), keep=True)
    w.callback(b, OLD, keep=False)
    e = w.event(b, OLD, keep=True)
    w.copy(e, b, keep=True)
    w.delivery(e, "failed", OLD, RECENT, keep=True)
    # Still running after 40 days: the job, its callbacks and events stay; a pending (and
    # leased) delivery stays; a delivery that succeeded long ago is finished work and goes.
    c = w.job("RUNNING", OLD, None, keep=True)
    w.callback(c, OLD, keep=True)
    e = w.event(c, OLD, keep=True)
    w.delivery(e, "pending", OLD, None, keep=True, leased=True)
    e = w.event(c, OLD + timedelta(minutes=1), keep=True)
    w.delivery(e, "succeeded", OLD, OLD + timedelta(seconds=1), keep=False)
    # Created long ago, finished yesterday: all of it stays.
    d = w.job("SUCCEEDED", OLD, RECENT, keep=True)
    w.callback(d, OLD, keep=True)
    e = w.event(d, RECENT, keep=True)
    w.delivery(e, "succeeded", RECENT, RECENT, keep=True)
    # A submission whose create answer was lost long ago (SUBMITTING): live, stays.
    w.job("SUBMITTING", OLD, None, keep=True)
    w.job("SUBMIT_FAILED", OLD, OLD, keep=False)  # a refused submission: finished, goes
    # Operational events (no job): an old delivered one goes, an old one still pending stays.
    e = w.event(None, OLD, keep=False)
    w.delivery(e, "succeeded", OLD, OLD, keep=False, tries=1)
    e = w.event(None, OLD, keep=True)
    w.delivery(e, "pending", OLD, None, keep=True, tries=0)
    w.delivery(w.event(None, OLD, keep=False), "cancelled", OLD, OLD, keep=False, tries=0)
    for at, keep in ((OLD, False), (OLD, False), (RECENT, True)):
        w.refused(at, keep=keep)
    w.key(OLD, "completed", keep=False)
    w.key(OLD, "in_flight", keep=False)
    w.key(NOW - timedelta(hours=23), "completed", keep=True)  # under a day: always kept
    # Dashboard sessions: expired ones go at once (not after RETENTION_DAYS), live ones stay.
    w.session(OLD, keep=False)
    w.session(NOW - timedelta(hours=13), keep=False)
    w.session(NOW - timedelta(hours=1), keep=True)
    return seed


def keys_of(engine: Engine, root: Path | None = None) -> dict[str, set[Any]]:
    """The primary keys in each table the purge purges (``retention.TABLES``) and, under
    ``root``, the stored files (key ``files``, paths relative to it)."""
    out = {}
    with engine.connect() as conn:
        for name in retention.TABLES:
            (key,) = metadata.tables[name].primary_key.columns
            out[name] = set(conn.execute(select(key)).scalars())
    if root is not None:
        out["files"] = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    return out


def assert_purged(engine: Engine, seed: Seed, root: Path | None = None) -> None:
    present = keys_of(engine, root)
    for table, keys in seed.kept.items():
        if table in present:
            assert keys <= present[table], (table, keys - present[table])
    for table, keys in seed.gone.items():
        if table in present:
            assert not keys & present[table], (table, keys & present[table])


def relay_env(database_url: str, **env: str) -> dict[str, str]:
    """The environment of a ``relay`` command on ``database_url`` (``env`` added)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "DATABASE_"))},
        "RELAY_ENV": "test",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        **env,
    }


def relay(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("relay"), *args],
        env=relay_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dry_run_counts_and_removes_nothing_then_purge_removes_exactly_that(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    seed = seed_history(engine, root)
    expected = seed.expected_counts()
    assert all(expected.values()), expected  # the seed exercises every table
    before = keys_of(engine, root)
    env = {"ARTIFACT_STORE": str(root), "PUBLIC_BASE_URL": "http://127.0.0.1:9"}
    dry = relay(database_url, "purge", "--dry-run", **env)
    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["dry_run"] is True and out["retention_days"] == 30
    assert out["would_remove"] == expected
    assert keys_of(engine, root) == before  # nothing removed

    real = relay(database_url, "purge", **env)
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["removed"] == expected
    assert_purged(engine, seed, root)  # the purged copy's file too
    again = relay(database_url, "purge", **env)
    assert json.loads(again.stdout)["removed"] == dict.fromkeys(retention.TABLES, 0)


def test_the_bench_purge_process_removes_what_relay_purge_would(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """``bench.purger``, the process the fixed-rate bench purges with (started before the load,
    as the worker is), runs the purge ``relay purge`` runs: the same counts, files included."""
    from bench.purger import Purger

    root = tmp_path / "artifacts"
    seed = seed_history(engine, root)
    expected = seed.expected_counts()
    env = relay_env(database_url, ARTIFACT_STORE=str(root), PUBLIC_BASE_URL="http://127.0.0.1:9")
    purger = Purger(env, Path(__file__).resolve().parents[2], timeout=60)
    try:
        assert purger.purge(30, timeout=60) == expected
        assert purger.purge(30, timeout=60) == dict.fromkeys(retention.TABLES, 0)
    finally:
        purger.close()
    assert purger.proc.returncode == 0
    assert_purged(engine, seed, root)


def test_the_bench_purge_process_stops_after_its_seconds_and_goes_on_from_there(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """The fixed-rate bench's purge windows: ``purge_for`` stops the purge after its seconds
    (a batch of one row, then a pause longer than those seconds), and the calls that follow
    remove the rest, so that together they remove what one purge would."""
    from bench.purger import Purger

    root = tmp_path / "artifacts"
    seed = seed_history(engine, root)
    expected = seed.expected_counts()
    # One row a batch and a pause of at least 5 s after each: a 0.5 s window holds one batch.
    env = relay_env(database_url, ARTIFACT_STORE=str(root), PUBLIC_BASE_URL="http://127.0.0.1:9")
    args = ["--batch-rows", "1", "--pause-seconds", "5"]
    purger = Purger(env, Path(__file__).resolve().parents[2], timeout=60, args=args)
    total = dict.fromkeys(retention.TABLES, 0)
    calls = []
    try:
        finished = False
        while not finished and len(calls) <= sum(expected.values()) + len(retention.TABLES):
            began = time.monotonic()
            removed, finished = purger.purge_for(30, 0.5, timeout=60)
            calls.append((sum(removed.values()), time.monotonic() - began, finished))
            for table, n in removed.items():
                total[table] += n
    finally:
        purger.close()
    assert purger.proc.returncode == 0
    assert finished and total == expected
    assert_purged(engine, seed, root)
    # Each call stopped after its 0.5 s (the 5 s pause cut short), having removed a row, but
    # the last, which found nothing left and said so at once.
    *stopped, last = calls
    assert len(stopped) >= sum(v for k, v in expected.items() if k != "attempts") - 1
    assert all(rows >= 1 and 0.4 <= took < 3.0 and not done for rows, took, done in stopped)
    assert last[2] and last[1] < 3.0


def test_small_batches_remove_the_same_and_a_stop_leaves_the_rest(
    engine: Engine, tmp_path: Path
) -> None:
    seed = seed_history(engine, tmp_path)
    cutoff = retention.cutoff_for(30)
    stop = threading.Event()
    stop.set()
    assert retention.purge(engine, cutoff, batch=1, stop=stop) == dict.fromkeys(retention.TABLES, 0)
    pauses: list[float] = []
    removed = retention.purge(engine, cutoff, batch=1, pause=0.0, sleep=pauses.append)
    assert removed == seed.expected_counts()
    # One pause after each full batch: many small transactions, not one long one.
    assert len(pauses) == sum(v for k, v in removed.items() if k != "attempts")
    assert_purged(engine, seed)


def test_the_purge_returns_without_pausing_after_its_last_rows(
    engine: Engine, tmp_path: Path
) -> None:
    """Nothing follows the last table's last rows: no pause after them (a pause there only made
    ``relay purge`` take longer)."""
    seed = seed_history(engine, tmp_path)
    pauses: list[float] = []
    removed = retention.purge(
        engine, retention.cutoff_for(30), batch=10_000, pause=0.0, sleep=pauses.append
    )
    assert removed == seed.expected_counts()
    assert removed["jobs"] > 0
    # Each table's rows fit one batch: a pause after each table's batch, but the jobs' (last).
    assert retention.TABLES[-1] == "jobs"
    tables_with_rows = [k for k, v in removed.items() if v and k != "attempts"]
    assert len(pauses) == len(tables_with_rows) - 1, (pauses, removed)


def test_a_shorter_retention_removes_more_and_never_live_work(
    engine: Engine, tmp_path: Path
) -> None:
    seed = seed_history(engine, tmp_path)
    retention.purge(engine, retention.cutoff_for(1, NOW + timedelta(days=2)))
    present = keys_of(engine)
    # Recent finished work goes too now, but not what is live.
    with engine.connect() as conn:
        live_jobs = set(
            conn.execute(
                select(jobs.c.id).where(jobs.c.status.in_(["RUNNING", "SUBMITTING"]))
            ).scalars()
        )
        pending = set(
            conn.execute(select(deliveries.c.id).where(deliveries.c.status == "pending")).scalars()
        )
        finished = conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.status == "SUCCEEDED")
        ).scalar_one()
    assert len(live_jobs) == 2 and len(pending) == 2
    assert finished == 0
    assert live_jobs <= present["jobs"] and pending <= present["deliveries"]
    assert seed.kept["callbacks"] & present["callbacks"]  # the running job's


def test_retention_days_is_validated() -> None:
    from receiver.settings import ConfigError
    from tests.conftest import make_settings

    assert make_settings("sqlite:////tmp/x.sqlite3").retention_days == 30
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="RETENTION_DAYS"):
            make_settings("sqlite:////tmp/x.sqlite3", retention_days=bad)


def test_the_worker_purges_on_its_schedule(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    seed = seed_history(engine, root)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "DATABASE_"))},
        "RELAY_ENV": "test",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "RETENTION_PURGE_INTERVAL_SECONDS": "0.5",
        "ARTIFACT_STORE": str(root),
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "LOG_FORMAT": "text",
    }
    worker = Process("worker", [bin_path("relay"), "worker"], env=env)
    try:
        line = worker.wait_for_line("retention purge", 30)
        assert "retention purge" in line
    finally:
        assert worker.stop() == 0, worker.output()
    assert_purged(engine, seed, root)


def expired_refused_callbacks(engine: Engine, rows: int) -> None:
    """``rows`` refused callbacks received 40 days ago (all of them expired)."""
    with engine.begin() as conn:
        conn.execute(
            insert(refused_callbacks),
            [
                {"received_at": OLD, "reason": "bad_signature", "http_status": 401, "body_size": 9}
                for _ in range(rows)
            ],
        )


def test_the_purge_pauses_in_proportion_to_its_work(engine: Engine) -> None:
    # 750 expired refused callbacks: 30 batches of 25 rows, each timed for real (25 rows is
    # SQLite's smallest batch, so the size cannot adapt to the lock time there).
    rows = 30 * retention.MIN_BATCH_ROWS
    expired_refused_callbacks(engine, rows)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        began = time.monotonic()
        time.sleep(seconds)
        slept.append(time.monotonic() - began)

    duty = 0.1  # work a tenth of the time: pauses 9 times as long as each batch
    began = time.monotonic()
    removed = retention.purge(
        engine,
        retention.cutoff_for(30),
        batch=retention.MIN_BATCH_ROWS,
        pause=0.0,
        duty=duty,
        sleep=sleep,
    )
    total = time.monotonic() - began
    assert removed["refused_callbacks"] == rows
    assert len(slept) == 30  # one pause after each batch
    work = total - sum(slept)
    # Each batch is paid for 9 times over; the empty batches that end each table are not, so
    # ask for less than 9.
    assert sum(slept) >= 4 * work, (sum(slept), work)
    with pytest.raises(ValueError, match="duty"):
        retention.purge(engine, retention.cutoff_for(30), duty=0.0)


def test_sqlite_batches_follow_the_time_they_hold_the_write_lock() -> None:
    target = retention.BATCH_SECONDS
    # 500 rows held the lock 4 times the target: the next batch has a quarter of them.
    assert retention.next_batch_rows(500, 4 * target, 500) == 125
    floor = retention.MIN_BATCH_ROWS
    assert retention.next_batch_rows(500, 100 * target, 500) == floor
    assert retention.next_batch_rows(floor, target / 100, 500) == 500  # the ceiling
    assert retention.next_batch_rows(1, 100 * target, 1) == 1  # never above batch
    assert retention.pause_after(0.03, duty=0.2, least=0.05) == pytest.approx(0.12)
    assert retention.pause_after(0.001, duty=0.2, least=0.05) == 0.05


def _jobs_rows_read(plan: dict[str, Any]) -> int:
    """Rows of ``jobs`` that an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan node and those under it
    read: returned or filtered out, in every loop."""
    read = 0
    if plan.get("Relation Name") == "jobs":
        returned = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
        read += returned + plan.get("Rows Removed by Filter", 0)
    for child in plan.get("Plans", []):
        read += _jobs_rows_read(child)
    return read


def test_a_batch_reads_only_jobs_as_old_as_the_cutoff(postgres_database_url: str) -> None:
    """On PostgreSQL the search for a batch of callbacks, events or jobs reads the jobs that
    finished before the cutoff, not every finished job: it once read all of them for each
    batch (35-40 ms of a 60-80 ms batch with 100,000 finished jobs). 3,000 tasks that finished
    today beside 40 that finished 40 days ago, each with a callback and an event."""
    engine = make_engine(postgres_database_url)
    recent, old = 3000, 40
    rows: dict[str, list[dict[str, Any]]] = {"jobs": [], "callbacks": [], "events": []}
    for n in range(recent + old):
        at = OLD if n < old else NOW - timedelta(minutes=5)
        job_id = f"job_{n:05d}"
        rows["jobs"].append(
            {
                "id": job_id,
                "model": "gen3turbo",
                "request": {},
                "metadata": {},
                "status": "SUCCEEDED",
                "artifacts": [],
                "sequence": 1,
                "created_at": at - timedelta(minutes=2),
                "updated_at": at,
                "finished_at": at,
            }
        )
        rows["callbacks"].append(
            {
                "job_id": job_id,
                "received_at": at,
                "status": "SUCCEEDED",
                "outcome": "applied",
                "body": {"raw": "x" * 100},
                "body_sha256": "0" * 64,
            }
        )
        rows["events"].append(
            {
                "id": f"msg_{n:05d}",
                "job_id": job_id,
                "type": "task.succeeded",
                "sequence": 1,
                "payload": "{}",
                "created_at": at,
            }
        )
    try:
        with engine.begin() as conn:
            for table in (jobs, callbacks, events):
                conn.execute(insert(table), rows[table.name])
            conn.execute(text("ANALYZE jobs, callbacks, events"))
        cutoff = retention.cutoff_for(30)
        plans = {
            name: (table, where) for name, table, where in retention._plan(cutoff, dry_run=False)
        }
        for name in ("events", "callbacks"):
            table, where = plans[name]
            (key,) = table.primary_key.columns
            pick = select(key).where(where).limit(retention.BATCH_ROWS)
            sql = str(pick.compile(engine, compile_kwargs={"literal_binds": True}))
            with engine.begin() as conn:
                (plan,) = conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")).scalar_one()
                picked = len(conn.execute(pick).all())
            assert picked == old, (name, picked)
            read = _jobs_rows_read(plan["Plan"])
            assert old <= read < recent, (name, read, json.dumps(plan)[:2000])
        removed = retention.purge(engine, cutoff, pause=0.0, sleep=lambda _: None)
        assert (removed["events"], removed["callbacks"], removed["jobs"]) == (old, old, old)
    finally:
        engine.dispose()


def test_no_pause_is_longer_than_the_cap(engine: Engine) -> None:
    """At a millionth of the time a batch of even a millisecond would be followed by over 16
    minutes of nothing: each pause is cut to MAX_PAUSE_SECONDS, and the purge goes on."""
    rows = 3 * retention.MIN_BATCH_ROWS
    expired_refused_callbacks(engine, rows)
    asked: list[float] = []
    removed = retention.purge(
        engine,
        retention.cutoff_for(30),
        batch=retention.MIN_BATCH_ROWS,
        duty=1e-6,
        busy_duty=1e-6,
        sleep=asked.append,
    )
    assert removed["refused_callbacks"] == rows
    assert asked == [retention.MAX_PAUSE_SECONDS] * 3, asked
