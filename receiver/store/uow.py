"""Unit of work: one connection, one transaction, explicit commit, rollback on exit."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine

from receiver.store.engine import READ_ONLY
from receiver.store.repositories import Repository


class UnitOfWork:
    """One database transaction.

    Use as ``with UnitOfWork(engine) as uow: ...; uow.commit()``. Leaving the block without
    :meth:`commit` rolls everything back, so a crash or an exception never half-writes.
    ``uow.repo`` is the :class:`~receiver.store.repositories.Repository` bound to it.

    ``read_only=True`` makes it a reader: on SQLite a plain ``BEGIN`` (a WAL snapshot, outside
    the writer queue, so it never waits for or delays a writer); it must not write. PostgreSQL
    ignores the flag (its readers never block writers).
    """

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._conn: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        self._conn = self._engine.connect()
        if self._read_only:
            self._conn.execution_options(**{READ_ONLY: True})
        self._conn.begin()
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
        finally:
            self._conn.close()
            self._conn = None
