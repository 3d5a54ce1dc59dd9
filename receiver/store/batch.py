"""Group commit: the writes of several request threads in one SQLite transaction.

SQLite has one writer at a time, and with ``synchronous=FULL`` every commit waits for an
fsync. When each request took the writer queue, began, wrote and committed on its own, the
lock went round the threads one at a time, each paying ``BEGIN IMMEDIATE``, the commit's fsync
and a hand-over. :class:`GroupCommit` lets the threads of one process share those costs: the
first thread to arrive becomes the *leader*, takes every piece of work queued so far, runs each
in its own ``SAVEPOINT`` inside one transaction, commits once, and hands each thread its own
result or its own exception; threads that arrive meanwhile form the next batch. Nothing is
answered before the commit that holds it (a 2xx still means "on disk").

One piece of work failing (an exception from its function) rolls back its savepoint only; the
commit failing fails every piece of the batch, and none of them is kept.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Engine

from receiver.store.repositories import Repository
from receiver.store.uow import UnitOfWork

R = TypeVar("R")


class _Work(Generic[R]):
    """One thread's piece of a batch and, once ``done``, its result or exception."""

    __slots__ = ("done", "error", "fn", "value")

    def __init__(self, fn: Callable[[Repository], R]) -> None:
        self.fn = fn
        self.done = False
        self.value: R | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Runs functions of a :class:`Repository` from many threads in shared transactions.

    :param engine: the engine (one ``GroupCommit`` per engine: :func:`group_commit`).
    :param max_batch: the most pieces of work in one transaction; the others wait for the next.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 64) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Work[object]] = []
        self._leading = False
        #: Transactions committed and pieces of work in them (for tests and the benchmark).
        self.batches = 0
        self.pieces = 0

    @property
    def queued(self) -> int:
        """Pieces of work waiting for the next transaction (not yet taken by a leader)."""
        with self._cond:
            return len(self._queue)

    def run(self, fn: Callable[[Repository], R]) -> R:
        """Run ``fn(repo)`` in a transaction shared with other threads' work; return its value
        once that transaction has committed.

        ``fn`` must write through the repository it is given and nothing else (it may run on
        another thread), and must not commit. Whatever it raises is raised here, and its writes
        are rolled back (its savepoint); the others' are kept.

        :raises sqlalchemy.exc.SQLAlchemyError: the transaction could not begin or commit
            (nothing of this batch is kept).
        """
        work: _Work[R] = _Work(fn)
        with self._cond:
            self._queue.append(work)  # type: ignore[arg-type]
        while True:
            with self._cond:
                while not work.done and (self._leading or work not in self._queue):
                    self._cond.wait()
                if work.done:
                    break
                self._leading = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._run_batch(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if work.error is not None:
            raise work.error
        return work.value  # type: ignore[return-value]

    def _run_batch(self, batch: list[_Work[object]]) -> None:
        try:
            with UnitOfWork(self._engine) as uow:
                if len(batch) == 1:
                    # Alone: no savepoint needed; an exception rolls the transaction back.
                    only = batch[0]
                    try:
                        only.value = only.fn(uow.repo)
                    except BaseException as exc:
                        only.error = exc
                        return
                else:
                    for work in batch:
                        savepoint = uow.connection.begin_nested()
                        try:
                            work.value = work.fn(uow.repo)
                        except Exception as exc:
                            savepoint.rollback()
                            work.error = exc
                        else:
                            savepoint.commit()
                uow.commit()
                self.batches += 1
                self.pieces += len(batch)
        except BaseException as exc:
            for work in batch:
                if work.error is None:
                    work.value, work.error = None, exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for work in batch:
                work.done = True


_by_engine: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()
_by_engine_lock = threading.Lock()


def group_commit(engine: Engine) -> GroupCommit:
    """The process's :class:`GroupCommit` for ``engine`` (made on first use)."""
    with _by_engine_lock:
        found = _by_engine.get(engine)
        if found is None:
            found = _by_engine[engine] = GroupCommit(engine)
        return found


__all__ = ["GroupCommit", "group_commit"]
