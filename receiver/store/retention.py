"""Retention: delete finished work older than ``RETENTION_DAYS``, in small batches.

What goes, with ``cutoff = now - RETENTION_DAYS``:

====================  ======================================================================
table                 removed when
====================  ======================================================================
deliveries            finished (succeeded, failed = dead letter, cancelled) before the
                      cutoff: a dead letter's window starts when it became one
attempts              their delivery is removed
events                created before the cutoff, its job (if any: operational events have
                      none) finished before the cutoff, and no delivery of it left
callbacks             received before the cutoff, for a job finished before the cutoff
jobs                  terminal, finished before the cutoff, no event or callback left
refused_callbacks     received before the cutoff
idempotency_keys      created before the cutoff (``RETENTION_DAYS`` >= 1: kept 24 h at least)
sessions              expired (a dashboard sign-in's 12 hours are over): no cookie is ever
                      accepted for it again, whatever ``RETENTION_DAYS`` says
artifact_copies       their event is removed (the stored video file too)
====================  ======================================================================

Never removed: a pending delivery (waiting or leased) and its event, a job that is not finished
(SUBMITTING, PENDING, THROTTLED, RUNNING) and its callbacks and events, subscribers.

Each batch is one short transaction of at most ``batch`` rows of one table (plus the attempts
of those deliveries), followed by a pause, so that a purge of many rows never holds the write
lock (SQLite) or row locks (PostgreSQL, ``FOR UPDATE SKIP LOCKED``: concurrent purges by
several workers take disjoint rows) for long: ingest and delivery go on between batches.
:func:`count` gives the same numbers without removing anything (``relay purge --dry-run``).

A good neighbour by design (the constants below, all times in seconds):

- **Duty cycle.** After a batch that took ``t`` seconds (wall clock, including any wait for
  the lock and the commit), the purge pauses ``max(PAUSE_SECONDS, t * (1 / DUTY - 1))``: it
  works at most :data:`DUTY` (a fifth) of the time, whatever the machine, so on a slow or busy
  machine it slows down instead of taking more of the cores that ingest and delivery need.
  No pause is longer than :data:`MAX_PAUSE_SECONDS` (one slow batch does not stall a purge).
- **Short write transactions.** On SQLite every stored callback needs the single write lock, so
  a batch holds it only to delete: the rows are searched for beforehand in a reader's snapshot
  (:func:`candidates`; searching is the costly part, up to tens of milliseconds), and the write
  transaction checks them again by key, deletes and commits without waiting for the disk
  (``synchronous=NORMAL`` for it alone: a purge lost at a power cut is simply redone, and the
  next callback's durable commit syncs it anyway); the batch size follows the time the last one
  held the lock: the next has ``rows * BATCH_SECONDS / held`` rows, between
  :data:`MIN_BATCH_ROWS` and ``batch``. On PostgreSQL one transaction of ``batch`` rows picks,
  locks (``FOR UPDATE SKIP LOCKED``) and deletes, and commits with ``synchronous_commit =
  off``, searching by index only (``enable_seqscan = off``: never a whole table read for the
  last rows of one); ingest never waits for those finished rows. Sizing PostgreSQL's batches
  by time as well was tried: its round trips alone take about 5 ms under load, so batches fell
  to the smallest size and a purge of 100,000 rows beside a saturating load did not finish in 10
  minutes.
- **No checkpoints of its own.** The write-ahead log is left to SQLite's automatic checkpoints
  (about one per 1,000 pages written): checkpointing after every batch, as the purge once did,
  synced the database file several times a second and stalled callbacks' commits behind those
  syncs for up to 100 ms (measured on a 2-core machine).
- **Giving way to ingest.** After each batch the purge reads the newest callback id; when
  callbacks came since the last batch it works :data:`DUTY_WHILE_INGESTING` (a
  three-hundredth) of the time instead of :data:`DUTY`: on SQLite every stored callback waits
  for a batch that holds the write lock; on PostgreSQL none waits for the purge's rows, but a
  batch takes one of the cores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    Table,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
)

from receiver.artifacts import open_store
from receiver.clock import utcnow
from receiver.domain.statuses import DeliveryStatus
from receiver.domain.tasks import Outcome, TaskStatus
from receiver.store import artifacts as copies_sql
from receiver.store.engine import is_sqlite
from receiver.store.tables import (
    artifact_copies,
    attempts,
    callbacks,
    deliveries,
    events,
    idempotency_keys,
    jobs,
    refused_callbacks,
    sessions,
)
from receiver.store.uow import UnitOfWork

#: A stored callback not applied yet (never purged).
QUEUED = Outcome.QUEUED.value

log = logging.getLogger(__name__)

#: Tables in the order they are purged (children before parents), as the counts report them.
TABLES = (
    "idempotency_keys",
    "refused_callbacks",
    "sessions",
    "attempts",
    "deliveries",
    "artifact_copies",
    "events",
    "callbacks",
    "jobs",
)
_PENDING = DeliveryStatus.PENDING.value
_FINISHED_DELIVERY = [s.value for s in DeliveryStatus if s is not DeliveryStatus.PENDING]

#: Rows of one table deleted per transaction, at most (a delivery batch also takes its attempts).
BATCH_ROWS = 500
#: Shortest pause after a batch, seconds: the write lock is free for others meanwhile.
PAUSE_SECONDS = 0.05
#: Share of the wall-clock time the purge spends in batches (0 < DUTY <= 1): after a batch of
#: ``t`` seconds it pauses ``max(PAUSE_SECONDS, t * (1 / DUTY - 1))`` seconds.
DUTY = 0.2
#: The share while callbacks are arriving (some came in since the last batch): the purge gives
#: way to ingest, and goes back to :data:`DUTY` once none arrive. The p99 is the slowest 1% of
#: callbacks, so the share of them that meet a batch must stay well below 1%. On SQLite every
#: stored callback needs the single write lock, and one that comes while a batch holds it waits
#: (at a steady 250 callbacks/s on a 2-core machine, 2026-12-01: such callbacks took 9-12 ms
#: against 3-4 ms); at a twentieth of the time 6% of them met a batch, at a hundredth 1.2%,
#: still enough (at 680 callbacks/s an A/B run gave a p99 of 17.5 ms at a hundredth, 14.7 ms at
#: a three-hundredth, against 11.2-15.8 ms without a purge). On PostgreSQL ingest never waits
#: for the purge's rows, but a batch (20-50 ms for 500 rows) takes one of the cores: callbacks
#: that came meanwhile took 6.6 ms (p50) against 3.3, and at a sixtieth of the time (2% of
#: them) every purge window beside a steady 490 callbacks/s had a p99 of 15.3-15.8 ms against
#: 9.1-11.9 ms in the windows without (2026-12-01, ``make bench``). A three-hundredth was
#: tried then and stalled (pauses of minutes after batches that read every finished job: see
#: :func:`_job_done_before`); with those bounded it is the share here too. The price: while
#: callbacks keep coming, a purge removes 64-75 rows/s on SQLite, about 35 on PostgreSQL (whose
#: batches of 500 rows took 20-50 ms beside a steady load); a task with its 3 callbacks,
#: events, deliveries and attempts is 13 rows, so retention keeps up with about 15 callbacks/s
#: (SQLite) or 8 (PostgreSQL, per worker) around the clock, and catches up at a fifth of the
#: time whenever they pause.
DUTY_WHILE_INGESTING = 1 / 300
#: The longest pause after a batch, seconds: at a three-hundredth of the time a batch of
#: 2.4 s (a whole table read on PostgreSQL: see :data:`_INDEXES_ONLY`) was followed by 12
#: minutes of nothing; a slow batch is rare, and need not stall the purge for that long.
MAX_PAUSE_SECONDS = 30.0
#: SQLite: how long one batch should hold the write lock, seconds; the next batch's size is
#: scaled to it (between :data:`MIN_BATCH_ROWS` and the
#: largest batch).
BATCH_SECONDS = 0.005
#: SQLite: the smallest batch, rows (below it the transaction's fixed costs outweigh its rows).
MIN_BATCH_ROWS = 25

_TERMINAL = [s.value for s in TaskStatus if s.is_terminal]


def cutoff_for(retention_days: int, now: datetime | None = None) -> datetime:
    """``now - retention_days`` (aware UTC)."""
    return (now or utcnow()) - timedelta(days=retention_days)


def _delivery_kept(cutoff: datetime) -> ColumnElement[bool]:
    d = deliveries.c
    return or_(d.status == _PENDING, d.completed_at.is_(None), d.completed_at >= cutoff)


def _deliveries_gone(cutoff: datetime) -> ColumnElement[bool]:
    """Finished deliveries that go. The finished statuses are named rather than "not pending"
    so that ``ix_deliveries_status_completed_at`` can bound the search to those old enough."""
    d = deliveries.c
    return and_(d.status.in_(_FINISHED_DELIVERY), d.completed_at < cutoff)


def _job_finished(job_id: Any, cutoff: datetime) -> ColumnElement[bool]:
    """The job ``job_id`` (a column) is terminal and finished before ``cutoff``."""
    j = jobs.c
    return exists().where(j.id == job_id, *_job_done_before(cutoff))


def _job_done_before(cutoff: datetime) -> tuple[ColumnElement[bool], ...]:
    """A job is terminal and finished before ``cutoff``; and, as a job is created before it
    finishes, created before it too. Said outright, the last lets ``ix_jobs_status_created_at``
    bound the search to jobs that old: without it PostgreSQL read every terminal job for each
    batch of events or callbacks (35-40 ms of a 60-80 ms batch with 100,000 finished jobs on a
    2-core machine, and more with each day's work kept; with it the batch took 20-30 ms)."""
    j = jobs.c
    return (
        j.status.in_(_TERMINAL),
        j.created_at < cutoff,
        func.coalesce(j.finished_at, j.updated_at) < cutoff,
    )


def _events_gone(
    cutoff: datetime, *, dry_run: bool, with_copies: bool = False
) -> ColumnElement[bool]:
    """Events to remove. For real, once no delivery of theirs is left (the deliveries go
    first); in a dry run, once none is left that the purge keeps."""
    e, d = events.c, deliveries.c
    left = exists().where(d.event_id == e.id)
    if dry_run:
        left = left.where(_delivery_kept(cutoff))
    gone = and_(
        e.created_at < cutoff,
        or_(e.job_id.is_(None), _job_finished(e.job_id, cutoff)),
        ~left,
    )
    if not dry_run and not with_copies:  # the copies go first (their phase comes before)
        gone = and_(gone, ~exists().where(artifact_copies.c.event_id == e.id))
    return gone


def _copies_gone(cutoff: datetime, *, dry_run: bool) -> ColumnElement[bool]:
    """``ARTIFACT_STORE`` copies of events that go (their files go with them)."""
    e = events.c
    return exists().where(
        e.id == artifact_copies.c.event_id,
        _events_gone(cutoff, dry_run=dry_run, with_copies=True),
    )


def _callbacks_gone(cutoff: datetime) -> ColumnElement[bool]:
    """Callbacks to remove: received before the cutoff, for a job finished before it, and
    applied (a queued one is live work, however old: it stays until applied)."""
    c = callbacks.c
    return and_(c.received_at < cutoff, c.outcome != QUEUED, _job_finished(c.job_id, cutoff))


def _jobs_gone(cutoff: datetime, *, dry_run: bool) -> ColumnElement[bool]:
    """Jobs to remove: terminal, finished before the cutoff, with no event or callback left
    (in a dry run: none that the purge keeps)."""
    j, e, c, d = jobs.c, events.c, callbacks.c, deliveries.c
    events_left = exists().where(e.job_id == j.id)
    callbacks_left = exists().where(c.job_id == j.id)
    if dry_run:
        events_left = events_left.where(
            or_(
                e.created_at >= cutoff,
                exists().where(d.event_id == e.id, _delivery_kept(cutoff)),
            )
        )
        callbacks_left = callbacks_left.where(or_(c.received_at >= cutoff, c.outcome == QUEUED))
    return and_(*_job_done_before(cutoff), ~events_left, ~callbacks_left)


def _plan(cutoff: datetime, *, dry_run: bool) -> list[tuple[str, Table, ColumnElement[bool]]]:
    """(name, table, which rows go) per table, attempts aside (they follow their delivery)."""
    return [
        ("idempotency_keys", idempotency_keys, idempotency_keys.c.created_at < cutoff),
        ("refused_callbacks", refused_callbacks, refused_callbacks.c.received_at < cutoff),
        # Expired dashboard sessions are dead now (sign-in also drops them, but only when
        # someone signs in): the clock, not the cutoff, decides.
        ("sessions", sessions, sessions.c.expires_at <= utcnow()),
        ("deliveries", deliveries, _deliveries_gone(cutoff)),
        ("artifact_copies", artifact_copies, _copies_gone(cutoff, dry_run=dry_run)),
        ("events", events, _events_gone(cutoff, dry_run=dry_run)),
        ("callbacks", callbacks, _callbacks_gone(cutoff)),
        ("jobs", jobs, _jobs_gone(cutoff, dry_run=dry_run)),
    ]


def count(engine: Engine, cutoff: datetime) -> dict[str, int]:
    """How many rows of each table :func:`purge` would remove now (nothing is removed).

    :returns: ``{table: rows}`` for every table of :data:`TABLES`.
    """
    out: dict[str, int] = {}
    with UnitOfWork(engine, read_only=True) as uow:
        conn = uow.repo.conn
        for name, table, where in _plan(cutoff, dry_run=True):
            out[name] = int(
                conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
            )
        out["attempts"] = int(
            conn.execute(
                select(func.count())
                .select_from(attempts)
                .where(
                    exists().where(
                        deliveries.c.id == attempts.c.delivery_id, _deliveries_gone(cutoff)
                    )
                )
            ).scalar_one()
        )
    return {name: out[name] for name in TABLES}


#: PostgreSQL, for a batch's transaction alone: search by index, never by reading a whole table.
#: A batch wants a few hundred rows, which every table's indexes find by their age (a time
#: column, or a job's ``created_at``) and by key; but a planner whose statistics are older than
#: the rows (a table analysed when small, or never: ``autovacuum`` off) may read a whole table
#: instead, cheap for the first batches (the old rows lie first) and not for the last, which
#: reads to the end: 0.3-0.4 s for 400,000 callbacks on an idle 2-core machine, 2.4 s beside a
#: steady load, then a pause of 299 times that (2026-12-01). ``enable_seqscan = off`` weighs
#: against such reads (a table without a usable index is still read).
_INDEXES_ONLY = "SET LOCAL enable_seqscan = off"


def _pick(table: Table, where: ColumnElement[bool], limit: int) -> Select[Any]:
    """PostgreSQL: at most ``limit`` keys of rows to remove, locked (``SKIP LOCKED``)."""
    (key,) = table.primary_key.columns
    return select(key).where(where).limit(limit).with_for_update(of=table, skip_locked=True)


def _timed_batch(
    engine: Engine,
    name: str,
    cutoff: datetime,
    *,
    limit: int,
    artifact_store: str,
    s3_endpoint_url: str,
) -> tuple[dict[str, int], float]:
    """Remove at most ``limit`` rows of table ``name`` (of :data:`TABLES`, not ``attempts``:
    a batch of deliveries takes their attempts along) in one transaction; the rows removed by
    table (``{"deliveries": n, "attempts": m}`` for deliveries), and the seconds its write
    transaction lasted (on SQLite: how long it held the write lock, from ``BEGIN IMMEDIATE``
    granted to the commit). The files of removed copies are deleted from ``artifact_store``
    (``ARTIFACT_STORE``; ``s3_endpoint_url``: ``ARTIFACT_S3_ENDPOINT_URL``) after the commit.

    On SQLite the rows are picked first in a reader's snapshot (:func:`candidates`), so the
    search, the costly part, never holds the write lock that every stored callback needs; the
    write transaction only checks them again and deletes. On PostgreSQL one transaction picks
    and locks them (``SKIP LOCKED``: concurrent purges take disjoint rows)."""
    picked = None
    if is_sqlite(engine):
        picked = candidates(engine, name, cutoff, limit)
        if not picked:
            return {name: 0}, 0.0
    removed, held, files = remove(engine, name, cutoff, picked, limit=limit)
    if files and artifact_store:  # after commit: never a row without its file
        store = open_store(artifact_store, endpoint_url=s3_endpoint_url)
        for file_key in files:
            store.delete(file_key)
    return removed, held


def candidates(engine: Engine, name: str, cutoff: datetime, limit: int) -> list[Any]:
    """Keys of at most ``limit`` rows of table ``name`` that retention lets go, read in a
    reader's snapshot (on SQLite outside the write lock); nothing is locked or removed.

    :raises KeyError: an unknown table name.
    """
    table, where = {n: (t, w) for n, t, w in _plan(cutoff, dry_run=False)}[name]
    (key,) = table.primary_key.columns
    with UnitOfWork(engine, read_only=True) as reader:
        return list(reader.repo.conn.execute(select(key).where(where).limit(limit)).scalars())


def remove(
    engine: Engine, name: str, cutoff: datetime, picked: list[Any] | None, *, limit: int
) -> tuple[dict[str, int], float, list[str]]:
    """Remove, in one transaction, the rows of table ``name`` with keys ``picked`` (from
    :func:`candidates`) that retention still lets go — a row that changed since it was picked
    stays, and so do its attempts — or with ``picked`` None at most ``limit`` rows that it
    picks and locks itself (PostgreSQL). The transaction is not durable on its own
    (:class:`UnitOfWork` ``durable=False``): a purge lost at a power cut is simply done again.

    :returns: rows removed by table, the seconds the write transaction lasted, and the
        ``ARTIFACT_STORE`` keys of removed copies (their files are the caller's to delete).
    :raises KeyError: an unknown table name.
    :raises sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was removed.
    """
    table, where = {n: (t, w) for n, t, w in _plan(cutoff, dry_run=False)}[name]
    (key,) = table.primary_key.columns
    with UnitOfWork(engine, durable=False) as uow:
        began = time.monotonic()
        conn = uow.repo.conn
        if picked is None:  # PostgreSQL: see _INDEXES_ONLY
            conn.exec_driver_sql(_INDEXES_ONLY)
        pick = (
            _pick(table, where, limit)
            if picked is None
            else select(key).where(key.in_(picked), where)
        )
        ids = list(conn.execute(pick).scalars())
        if not ids:
            return {name: 0}, time.monotonic() - began, []
        removed: dict[str, int] = {}
        if table is deliveries:
            result = conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(ids)))
            removed["attempts"] = int(result.rowcount)
        files = copies_sql.stored_keys(conn, ids) if table is artifact_copies else []
        result = conn.execute(delete(table).where(key.in_(ids), where))
        removed[name] = int(result.rowcount)
        uow.commit()
        held = time.monotonic() - began
    return removed, held, files


def _last_callback(engine: Engine) -> int | None:
    """The id of the newest stored callback (ids only grow): a change means callbacks came."""
    with UnitOfWork(engine, read_only=True) as reader:
        newest = reader.repo.conn.execute(select(func.max(callbacks.c.id))).scalar_one()
    return None if newest is None else int(newest)


def pause_after(seconds: float, *, duty: float = DUTY, least: float = PAUSE_SECONDS) -> float:
    """The pause after a batch that took ``seconds``: ``max(least, seconds * (1 / duty - 1))``,
    so that batches take at most ``duty`` of the time (seconds in, seconds out).

    :raises ValueError: ``duty`` is not in (0, 1].
    """
    if not 0 < duty <= 1:
        raise ValueError(f"duty must be in (0, 1], not {duty!r}")
    return max(least, seconds * (1 / duty - 1))


def next_batch_rows(rows: int, held: float, largest: int) -> int:
    """SQLite: the size of the next batch after one of ``rows`` rows that held the write lock
    ``held`` seconds, scaled so that a batch holds it about :data:`BATCH_SECONDS` (between
    ``min(MIN_BATCH_ROWS, largest)`` and ``largest``)."""
    least = min(MIN_BATCH_ROWS, largest)
    if held <= 0:
        return largest
    return max(least, min(largest, round(rows * BATCH_SECONDS / held)))


def purge(
    engine: Engine,
    cutoff: datetime,
    *,
    batch: int = BATCH_ROWS,
    pause: float = PAUSE_SECONDS,
    duty: float = DUTY,
    busy_duty: float | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    artifact_store: str = "",
    s3_endpoint_url: str = "",
) -> dict[str, int]:
    """Remove every row that retention lets go (see the module's docstring), table by table,
    in batches of at most ``batch`` rows (on SQLite fewer, so that one holds the write lock
    about :data:`BATCH_SECONDS`), pausing after each batch that removed rows (but the last of
    all: nothing follows it) for :func:`pause_after` its wall-clock duration (at least
    ``pause`` seconds, at most :data:`MAX_PAUSE_SECONDS`): batches take at most ``duty`` of the
    time (but for batches longer than ``MAX_PAUSE_SECONDS * duty / (1 - duty)``), or
    ``busy_duty`` after a
    batch during which (or during whose pause before) callbacks arrived (None:
    :data:`DUTY_WHILE_INGESTING`).

    :param stop: when set, the purge returns after the batch in progress (the rest waits for
        the next one).
    :param sleep: how to pause (seconds); ``stop.wait`` when ``stop`` is given.
    :returns: rows removed, ``{table: rows}`` for every table of :data:`TABLES`.
    :raises ValueError: ``duty`` or ``busy_duty`` is not in (0, 1].
    :raises sqlalchemy.exc.SQLAlchemyError: the database failed (batches already committed
        stay removed).
    """
    sqlite = is_sqlite(engine)
    if busy_duty is None:
        busy_duty = DUTY_WHILE_INGESTING
    for share in (duty, busy_duty):  # checked before any row goes
        pause_after(0.0, duty=share, least=pause)
    removed = dict.fromkeys(TABLES, 0)
    wait: Callable[[float], Any] = stop.wait if stop is not None else sleep
    rows = batch
    arrived = _last_callback(engine)
    for name in TABLES:
        if name == "attempts":
            continue
        while stop is None or not stop.is_set():
            started = time.monotonic()
            done, held = _timed_batch(
                engine,
                name,
                cutoff,
                limit=rows,
                artifact_store=artifact_store,
                s3_endpoint_url=s3_endpoint_url,
            )
            took = time.monotonic() - started
            for table, n in done.items():
                removed[table] += n
            if not done[name]:
                break
            if done[name] < rows and name == TABLES[-1]:  # the last rows of all: no pause
                break
            last, arrived = arrived, _last_callback(engine)
            share = busy_duty if arrived != last else duty
            wait(min(MAX_PAUSE_SECONDS, pause_after(took, duty=share, least=pause)))
            if done[name] < rows:  # the table's last rows
                break
            if sqlite:  # PostgreSQL keeps ``batch``: see the module's docstring
                rows = next_batch_rows(rows, held, batch)
    return removed
