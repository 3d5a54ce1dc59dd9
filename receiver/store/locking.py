"""One job read, worked on and written by many request threads and processes at once, with
the result the same as if they ran one at a time: the dialect decides how.

- PostgreSQL: the job's row is read with ``FOR UPDATE`` inside the write transaction, so the
  plan is made from the job as it is and cannot go stale.
- SQLite: one writer at a time holds the whole database, so a read inside the write
  transaction would lengthen every writer's turn; the job is read first, outside it, and the
  write must be guarded (update only if unchanged, else plan again inside the transaction).

Either way the write runs in the transaction of the moment (group commit:
:mod:`receiver.store.batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine

from receiver.store.batch import group_commit
from receiver.store.engine import is_sqlite
from receiver.store.repositories import Job, Repository
from receiver.store.uow import UnitOfWork

P = TypeVar("P")
R = TypeVar("R")


def plan_and_write_job(
    engine: Engine,
    job_id: str,
    plan: Callable[[Job | None], P],
    write: Callable[[Repository, P, bool], R],
) -> R:
    """Run ``write(repo, plan(job), locked)`` for the job ``job_id`` in a group-commit
    transaction.

    :param plan: works out what to write from the job as read (None: no such job); pure, may
        raise (nothing is written then).
    :param write: writes the plan through the repository. Its ``locked`` argument is True when
        the job was read in this transaction with its row locked (it cannot have changed);
        False when it was read before: ``write`` must then update guarded and plan again if the
        job changed meanwhile. It may run twice (a batch rolled back and run again alone).
    :returns: what ``write`` returns.
    :raises: whatever ``plan`` or ``write`` raise; :class:`sqlalchemy.exc.SQLAlchemyError`
        when the database fails (nothing was kept).
    """
    if is_sqlite(engine):
        with UnitOfWork(engine, read_only=True) as uow:
            seen = uow.repo.get_job(job_id)
        planned = plan(seen)
        return group_commit(engine).run(lambda repo: write(repo, planned, False), key=job_id)

    def locked(repo: Repository) -> R:
        return write(repo, plan(repo.get_job(job_id, for_update=True)), True)

    return group_commit(engine).run(locked, key=job_id)
