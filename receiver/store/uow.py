"""Unit of work: one connection, one transaction, explicit commit, rollback on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine

from receiver.store.engine import READ_ONLY, SQLITE_SYNCHRONOUS
from receiver.store.repositories import Repository


class UnitOfWork:
    """One database transaction.

    Use as ``with UnitOfWork(engine) as uow: ...; uow.commit()``. Leaving the block without
    :meth:`commit` rolls everything back, so a crash or an exception never half-writes.
    ``uow.repo`` is the :class:`~receiver.store.repositories.Repository` bound to it.

    ``read_only=True`` makes it a reader: on SQLite a plain ``BEGIN`` (a WAL snapshot, outside
    the writer queue, so it never waits for or delays a writer); it must not write. PostgreSQL
    ignores the flag (its readers never block writers).

    ``durable=False`` is for work that may be lost at a power cut and simply done again (the
    retention purge's deletes): its commit does not wait for the disk (SQLite
    ``synchronous=NORMAL`` for this transaction, so it holds the write lock for less time;
    PostgreSQL ``SET LOCAL synchronous_commit = off``). What it wrote reaches the disk with the
    next durable commit of any connection, which syncs the write-ahead log up to its own end
    (or, on PostgreSQL, the WAL writer within a fraction of a second); a crash before then
    loses this transaction whole, never part of it.

    ``connection`` runs the transaction on a connection the caller checked out (and closes):
    for several transactions in a row on one, e.g. under :func:`~receiver.store.engine.writer_turn`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        read_only: bool = False,
        durable: bool = True,
        connection: Connection | None = None,
    ) -> None:
        self._engine = engine
        self._read_only = read_only
        self._relaxed = not durable and not read_only and engine.dialect.name == "sqlite"
        self._async_commit = not durable and not read_only and engine.dialect.name == "postgresql"
        self._given = connection
        self._conn: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        self._conn = self._given if self._given is not None else self._engine.connect()
        if self._read_only:
            self._conn.execution_options(**{READ_ONLY: True})
        if self._relaxed:  # outside any transaction: SQLite refuses it inside one
            self._driver().execute("PRAGMA synchronous=NORMAL")
        self._conn.begin()
        if self._async_commit:  # this transaction only
            self._conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        self.repo = Repository(self._conn)
        return self

    def commit(self) -> None:
        """Commit the transaction (the only way anything is kept)."""
        assert self._conn is not None
        self._conn.commit()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if self._conn.in_transaction():
                self._conn.rollback()
            if self._relaxed:  # the pooled connection goes back durable
                self._driver().execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        finally:
            if self._given is None:
                self._conn.close()
            self._conn = None

    def _driver(self) -> Any:
        assert self._conn is not None
        return self._conn.connection.dbapi_connection
