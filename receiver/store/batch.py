"""Group commit: the writes of several request threads in one transaction.

With one transaction per callback, every callback pays the transaction's fixed costs: on SQLite
the writer queue, ``BEGIN IMMEDIATE``, the commit's fsync (``synchronous=FULL``) and handing
the write lock on, one thread at a time; on PostgreSQL the round trips of the pool's pre-ping,
``BEGIN``, ``NOTIFY`` and ``COMMIT``. :class:`GroupCommit` lets the threads of one process
share them: the first thread to arrive becomes the *leader*, takes every piece of work queued so
far, runs them one after the other in one transaction, commits once, and hands each thread its
own result; threads that arrive meanwhile form the next batch. Nothing is answered before the
commit that holds it (a 2xx still means "stored").

A piece that raises spoils the transaction of its batch (on PostgreSQL any error aborts it), so
the leader rolls the batch back and runs each of its pieces again alone, in a transaction of
its own: every piece then gets exactly the result or the exception it would have had alone.
Pieces must therefore be safe to run twice when the first run was rolled back, which functions
of the repository that only write through it are. Pieces run in the order of their ``key``
(arrival order among equal keys), so that two batches lock rows in the same order and cannot
deadlock each other.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from receiver.store.engine import is_sqlite, writer_turn
from receiver.store.repositories import Repository
from receiver.store.uow import UnitOfWork

R = TypeVar("R")


_UNSET: Any = object()


class _Work(Generic[R]):
    """One thread's piece of a batch and, once ``done``, its result or exception."""

    __slots__ = ("done", "error", "fn", "key", "value")

    def __init__(self, fn: Callable[[Repository], R], key: str) -> None:
        self.fn = fn
        self.key = key
        self.done = False
        self.value: R = _UNSET
        self.error: BaseException | None = None


class GroupCommit:
    """Runs functions of a :class:`Repository` from many threads in shared transactions.

    :param engine: the engine (one ``GroupCommit`` per engine and process: :func:`group_commit`).
    :param max_batch: the most pieces of work in one transaction; the others wait for the next.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 64) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Work[Any]] = []
        self._leading = False
        #: Transactions committed and pieces of work in them (for tests and the benchmark).
        self.batches = 0
        self.pieces = 0

    @property
    def queued(self) -> int:
        """Pieces of work waiting for the next transaction (not yet taken by a leader)."""
        with self._cond:
            return len(self._queue)

    def run(self, fn: Callable[[Repository], R], *, key: str = "") -> R:
        """Run ``fn(repo)`` in a transaction shared with other threads' work; return its value
        once that transaction has committed.

        ``fn`` must write through the repository it is given and nothing else (it may run on
        another thread, and twice: see the module's docstring), and must not commit.

        :param key: pieces of one batch run in ``key`` order (e.g. the id of the row they lock).
        :raises Exception: whatever ``fn`` raised, run alone (nothing of it is kept), or the
            database's error if the transaction could not begin or commit (nothing kept).
        """
        work: _Work[R] = _Work(fn, key)
        with self._cond:
            self._queue.append(work)
        while True:
            with self._cond:
                while not work.done and (self._leading or work not in self._queue):
                    self._cond.wait()
                if work.done:
                    break
                self._leading = True
                # Its own piece (a leader never returns with its work still queued) and the
                # oldest others, in the order they arrived; run in key order, which keeps that
                # order among pieces of one key (one job's callbacks apply as they came).
                others = [w for w in self._queue if w is not work][: self._max_batch - 1]
                batch = sorted([work, *others], key=self._queue.index)
                self._queue = [w for w in self._queue if w not in batch]
            try:
                if self._sqlite and _gevent_patched():
                    self._run_off_the_hub(batch)
                else:  # psycopg already yields to gevent while it waits for the server
                    self._run_batch(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if work.error is not None:
            raise work.error
        return work.value

    def _run_off_the_hub(self, batch: list[_Work[Any]]) -> None:
        """Run a SQLite batch's transactions where their blocking calls do not stop the
        process: on a native thread of gevent's pool, so that while SQLite's commit waits for
        its fsync (a C call that never yields) the process's greenlets keep serving requests
        and queueing their callbacks for the next batch.

        The locks of this process are taken and given back here, on the hub: the writer
        queue's thread lock and the pooled connection
        (:func:`~receiver.store.engine.writer_turn`). The native thread runs SQLite's calls on
        that connection and waits, if it must, only for the file lock that other processes
        hold (a kernel lock): gevent's locks (the writer queue's, the pool's, this class's
        condition) must not be taken or released on a thread other than the one whose greenlets
        wait on them, where a release can go unseen.
        """
        import gevent

        try:
            with writer_turn(self._engine) as conn:
                task = gevent.get_hub().threadpool.spawn(self._run_batch, batch, conn)
                try:
                    task.get()
                finally:  # interrupted (a kill): the connection and turn stay until it is done
                    task.wait()
        except BaseException as exc:  # no turn or connection, or a kill: answer every piece
            for work in batch:
                if not work.done:
                    work.error = exc
                    work.done = True
            if not isinstance(exc, Exception):
                raise

    def _run_batch(self, batch: list[_Work[Any]], conn: Connection | None = None) -> None:
        """Run a batch (on ``conn`` when given, else on connections of the pool); every piece
        ends with a value or an error, each raised in its own thread by :meth:`run` (a
        ``BaseException`` included: it is never raised in the leader's thread on another
        piece's behalf)."""
        try:
            batch.sort(key=lambda piece: piece.key)
            if len(batch) == 1 or not self._run_together(batch, conn):
                for work in batch:
                    if work.error is None:
                        self._run_alone(work, conn)
        except BaseException as exc:  # the database failed, or the process is stopping
            for work in batch:
                if work.value is _UNSET and work.error is None:
                    work.error = exc
        finally:
            for work in batch:
                if work.value is _UNSET and work.error is None:  # never ran: do not hang
                    work.error = RuntimeError("the batch was abandoned")
                work.done = True

    def _run_together(self, batch: list[_Work[Any]], conn: Connection | None) -> bool:
        """Run every piece in one transaction; False (all rolled back) if one raised."""
        values: list[object] = []
        with UnitOfWork(self._engine, connection=conn) as uow:
            for work in batch:
                try:
                    values.append(work.fn(uow.repo))
                except Exception:
                    return False
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: its own, once
                    work.error = exc
                    return False
            uow.commit()
        for work, value in zip(batch, values, strict=True):
            work.value = value
        self.batches += 1
        self.pieces += len(batch)
        return True

    def _run_alone(self, work: _Work[Any], conn: Connection | None) -> None:
        try:
            with UnitOfWork(self._engine, connection=conn) as uow:
                value = work.fn(uow.repo)
                uow.commit()
        except BaseException as exc:
            work.error = exc
            return
        work.value = value
        self.batches += 1
        self.pieces += 1


def _gevent_patched() -> bool:
    module = sys.modules.get("gevent.monkey")
    return bool(module is not None and module.is_module_patched("threading"))


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
