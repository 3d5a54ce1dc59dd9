"""Jobs (table ``jobs``): a submission of ours and the state of its vendor task."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, insert, select, update

from receiver.domain.tasks import LIVE_STATUSES
from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.rows import Job, as_values, from_row
from receiver.store.tables import jobs

#: The columns a :class:`Job` is made of (not ``vendor_task``, the last task object as
#: received, which only the dashboard's job page reads): selecting only these spares decoding
#: that JSON on every read.
_JOB_COLUMNS = tuple(jobs.c[f.name] for f in fields(Job))
#: Prebuilt: one statement object, its compiled form cached, the id a bound parameter.
_GET_JOB = select(*_JOB_COLUMNS).where(jobs.c.id == bindparam("job_id"))
# FOR NO KEY UPDATE: the web's callback inserts (a foreign-key share lock on the job) need not
# wait for it; an update that binds the unique task_id takes the stronger lock itself.
_GET_JOB_FOR_UPDATE = _GET_JOB.with_for_update(key_share=True)
_UPDATE_JOB = update(jobs).where(jobs.c.id == bindparam("job_id_"))
#: The job update of a callback whose job was read before the transaction: only if unchanged.
_UPDATE_JOB_IF_UNCHANGED = _UPDATE_JOB.where(
    jobs.c.status == bindparam("status_"), jobs.c.sequence == bindparam("sequence_")
)
_UPDATE_JOB_IF_UNBOUND = _UPDATE_JOB_IF_UNCHANGED.where(jobs.c.task_id.is_(None))
_UPDATE_JOB_IF_BOUND = _UPDATE_JOB_IF_UNCHANGED.where(jobs.c.task_id == bindparam("task_id_"))
#: The statuses of a job not finished yet (submitted or being submitted, not terminal).
_LIVE = tuple(status.value for status in LIVE_STATUSES)


def _filters(
    status: str | None, model: str | None, since: datetime | None
) -> list[ColumnElement[bool]]:
    """The conditions of the job list's filters (each one only when given)."""
    conditions: list[ColumnElement[bool]] = []
    if status:
        conditions.append(jobs.c.status == status)
    if model:
        conditions.append(jobs.c.model == model)
    if since:
        conditions.append(jobs.c.created_at >= since)
    return conditions


class JobQueries(RepositoryBase):
    """The repository's queries over jobs."""

    def add_job(self, job: Job) -> None:
        self.conn.execute(insert(jobs), as_values(job))

    def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        """The job, or None. ``for_update`` locks its row until commit (PostgreSQL: ``FOR NO KEY
        UPDATE``, which foreign-key checks do not wait for; SQLite's
        ``BEGIN IMMEDIATE`` already serialises writers)."""
        stmt = _GET_JOB_FOR_UPDATE if for_update else _GET_JOB
        row = self.conn.execute(stmt, {"job_id": job_id}).first()
        return from_row(Job, row) if row else None

    def find_job_by_task_id(self, task_id: str) -> Job | None:
        row = self.conn.execute(select(*_JOB_COLUMNS).where(jobs.c.task_id == task_id)).first()
        return from_row(Job, row) if row else None

    def update_job(self, job_id: str, **values: Any) -> None:
        # Values travel as parameters of a prebuilt statement, not as literals of a new one.
        self.conn.execute(_UPDATE_JOB, {"job_id_": job_id, **values})

    def update_job_if_unchanged(
        self,
        job_id: str,
        *,
        expect_status: str,
        expect_sequence: int,
        expect_task_id: str | None,
        **values: Any,
    ) -> bool:
        """Update the job only if its ``status``, ``sequence`` and ``task_id`` are still the
        expected ones (read before this transaction began: optimistic concurrency).

        :returns: False, writing nothing, when the job changed meanwhile (or is gone).
        """
        params = {
            "job_id_": job_id,
            "status_": expect_status,
            "sequence_": expect_sequence,
            **values,
        }
        if expect_task_id is None:
            stmt = _UPDATE_JOB_IF_UNBOUND
        else:
            stmt = _UPDATE_JOB_IF_BOUND
            params["task_id_"] = expect_task_id
        result = self.conn.execute(stmt, params)
        return result.rowcount == 1

    def mark_submitted(self, job_id: str, task_id: str, now: datetime) -> None:
        """Bind the vendor taskId and move SUBMITTING to PENDING, never backwards: a callback may
        have arrived (and moved the job on) before the create's answer did."""
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.task_id.is_(None))
            .values(task_id=task_id, updated_at=now)
        )
        self.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == "SUBMITTING")
            .values(status="PENDING", updated_at=now)
        )

    def list_jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs, newest first; ``before_id`` pages backwards."""
        stmt = select(*_JOB_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
        stmt = stmt.where(*_filters(status, model, since))
        if before_id:
            stmt = stmt.where(jobs.c.id < before_id)
        return [from_row(Job, r) for r in self.conn.execute(stmt)]

    def count_jobs(
        self, *, status: str | None = None, model: str | None = None, since: datetime | None = None
    ) -> int:
        """How many jobs :meth:`list_jobs` would page through with these filters."""
        return self._count(
            select(func.count()).select_from(jobs).where(*_filters(status, model, since))
        )

    def jobs_without_recent_callback(self, older_than: datetime, limit: int = 500) -> list[Job]:
        """Live jobs (submitted, not terminal) whose last sign of life is older than the cutoff."""
        last_seen = func.coalesce(jobs.c.last_callback_at, jobs.c.created_at)
        stmt = (
            select(*_JOB_COLUMNS)
            .where(jobs.c.status.in_(_LIVE), last_seen < older_than)
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        return [from_row(Job, r) for r in self.conn.execute(stmt)]

    def count_jobs_by_status(self) -> dict[str, int]:
        return self._counts(select(jobs.c.status, func.count()).group_by(jobs.c.status))

    def count_live_jobs_by_status(self) -> dict[str, int]:
        """Jobs not finished yet (SUBMITTING, PENDING, THROTTLED, RUNNING), by status."""
        return self._counts(
            select(jobs.c.status, func.count())
            .where(jobs.c.status.in_(_LIVE))
            .group_by(jobs.c.status)
        )
