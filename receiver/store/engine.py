"""Engines for SQLite (the embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, ``synchronous=FULL`` (a 2xx means the callback is on
disk) and ``BEGIN IMMEDIATE`` transactions, so that several gunicorn workers and the delivery
worker can write one file safely: writers queue instead of failing on a lock upgrade. They queue
in a *writer queue* (:class:`_QueuedConnection`): a lock per engine for the threads of a process
and an ``flock`` on ``<database>.lock`` between processes, taken before ``BEGIN IMMEDIATE`` and
given back at commit or rollback. Without it, writers wait in SQLite's busy handler, which
sleeps up to 100 ms between tries: the lock sits idle while they sleep, and under load some
requests starve for seconds (``make bench`` measured a p99 of 1.7 s at 8 connections; 0.17 s
with the queue). The busy timeout still bounds every wait. PostgreSQL gets a small bounded pool
with pre-ping, so that a lost connection is replaced instead of failing a request.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite's ``synchronous`` for every connection: a commit returns once it is on disk.
SQLITE_SYNCHRONOUS = "FULL"

#: PostgreSQL ``application_name`` of our connections (``pg_stat_activity``) unless the URL's
#: query names another (``…/relay?application_name=relay-eu-1``).
DEFAULT_APPLICATION_NAME = "runway-relay"

#: How long a process waits between tries of another process's writer lock, seconds.
WRITER_LOCK_POLL_SECONDS = 0.0005

#: The connection execution option that makes a SQLite transaction a reader (a plain
#: ``BEGIN``, outside the writer queue); see :class:`receiver.store.uow.UnitOfWork`.
READ_ONLY = "relay_read_only"


def is_sqlite(engine: Engine) -> bool:
    """True when the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


def database_url(value: str) -> str:
    """``DATABASE_URL`` as our engines take it: ``postgres://`` and ``postgresql://`` (as PaaS
    hosts write them; SQLAlchemy 2 no longer accepts the first) get our driver, psycopg 3.

    An empty value is returned as it is (the caller picks a default).

    :raises ValueError: the value is not a database URL, or names a database other than
        SQLite or PostgreSQL; the message never repeats the value (it may hold a password).
    """
    value = value.strip()
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            value = "postgresql+psycopg://" + value[len(prefix) :]
            break
    if value:
        try:
            url = make_url(value)
            backend, _ = url.get_backend_name(), url.port  # .port parses the port
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL (expected sqlite:///PATH or "
                "postgres://USER:PASSWORD@HOST:PORT/NAME)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"{backend!r} is not supported: use SQLite or PostgreSQL")
    return value


def ping(engine: Engine) -> None:
    """Run ``SELECT 1`` on a reader connection (on SQLite outside the writer queue, so that a
    readiness check never waits behind writers).

    :raises Exception: whatever the driver raises when the database does not answer.
    """
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        conn.execute(text("SELECT 1"))


def application_name(url: str) -> str:
    """The PostgreSQL ``application_name`` of our connections to ``url``: the one in its query,
    else :data:`DEFAULT_APPLICATION_NAME`."""
    value = make_url(url).query.get("application_name")
    if isinstance(value, tuple):  # given more than once: libpq takes the last
        value = value[-1]
    return value or DEFAULT_APPLICATION_NAME


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """Build the engine for ``url``.

    :param url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://…``). For
        PostgreSQL, ``application_name`` in its query names the connections in
        ``pg_stat_activity`` (default :data:`DEFAULT_APPLICATION_NAME`).
    :param pool_size: PostgreSQL connections kept open per process.
    :param max_overflow: extra PostgreSQL connections allowed under load, per process.
    :raises sqlalchemy.exc.ArgumentError: for a URL SQLAlchemy cannot parse.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
                "factory": _writer_queue(parsed.database),
            },
            pool_size=pool_size + max_overflow,
            max_overflow=0,
            pool_pre_ping=False,
        )
        _configure_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "pool_timeout": 10,
    }
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5, "application_name": application_name(url)}
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader: WAL gives it a snapshot without the write lock, so it neither queues
            # nor blocks writers. A write in it would fail (SQLite refuses the lock upgrade
            # while another writer holds the lock, instead of queueing).
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        if isinstance(dbapi_conn, _QueuedConnection):
            dbapi_conn.queue_for_write()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if isinstance(dbapi_conn, _QueuedConnection):
                dbapi_conn.leave_queue()
            raise


class _QueuedConnection(sqlite3.Connection):
    """A SQLite connection that waits its turn to write in the engine's writer queue.

    :meth:`queue_for_write` runs before ``BEGIN IMMEDIATE``; commit, rollback and close give the
    turn back. Every wait is bounded by the busy timeout: past it, the connection goes on to
    ``BEGIN IMMEDIATE`` anyway and SQLite's own busy handling decides, as without the queue.
    """

    _thread_lock: threading.Lock
    _lock_path: str | None
    _held_thread = False
    _held_file = False
    _pinned = False
    _fd = -1

    def queue_for_write(self) -> None:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        if not self._pinned:  # else :func:`writer_turn` holds the thread lock for it
            self._held_thread = self._thread_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            if not self._held_thread:
                return
        if self._lock_path is None:
            return
        if self._fd < 0:
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(WRITER_LOCK_POLL_SECONDS)
            else:
                self._held_file = True
                return

    def leave_queue(self) -> None:
        if self._held_file:
            self._held_file = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self._held_thread:
            self._held_thread = False
            self._thread_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_queue()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@contextmanager
def writer_turn(engine: Engine) -> Iterator[Connection]:
    """A SQLite connection checked out, and the writer queue's thread lock (the process's part
    of :class:`_QueuedConnection`'s queue) held for it, from entry to exit, *in the calling
    thread*; its transactions, wherever they run, still take and give back the file lock
    between processes each (a kernel lock that any thread may release).

    For running write transactions on another thread: under gevent (the web's gunicorn worker)
    the thread lock is one of gevent's, and a native thread that took or released it could
    leave greenlets of this thread waiting for a release they never saw, until the busy timeout
    (30 s: a ``POST /api/tasks`` that hung, found by a flaky end-to-end test). The thread the
    connection is handed to then waits only for the other processes, on the file lock.

    :raises ValueError: ``engine`` is not a SQLite engine of :func:`make_engine`.
    """
    with engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        if not isinstance(driver, _QueuedConnection):
            raise ValueError("writer_turn needs a SQLite engine made by make_engine")
        driver._thread_lock.acquire()
        driver._pinned = True
        try:
            yield conn
        finally:
            driver._pinned = False
            driver._thread_lock.release()


def _writer_queue(database: str | None) -> type[_QueuedConnection]:
    """The connection class of one engine: its own thread lock, and the lock file next to the
    database (none for an in-memory database, which only its own process can see)."""
    lock_path = f"{database}.lock" if database and database != ":memory:" else None

    class EngineConnection(_QueuedConnection):
        _thread_lock = threading.Lock()
        _lock_path = lock_path

    return EngineConnection
