"""Callbacks: the accepted ones as received (table ``callbacks``, which is also the inbox of
callbacks stored and not applied yet: ``outcome = 'queued'``) and the bounded log of refused
ones (table ``refused_callbacks``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, null, or_, select, update

from receiver.domain.tasks import Outcome
from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.rows import (
    CallbackRecord,
    QueuedCallback,
    RefusedCallback,
    from_row,
)
from receiver.store.tables import callbacks, jobs, refused_callbacks

_INSERT_CALLBACK = insert(callbacks)
#: The outcome of a callback stored and not applied yet (the inbox).
QUEUED = Outcome.QUEUED.value
_JOB_BINDING = select(jobs.c.task_id).where(jobs.c.id == bindparam("job_id"))
_QUEUE_CALLBACK = insert(callbacks).returning(callbacks.c.id)
_QUEUED_COLUMNS = (
    callbacks.c.id,
    callbacks.c.job_id,
    callbacks.c.received_at,
    callbacks.c.body,
    callbacks.c.body_sha256,
    callbacks.c.source_ip,
    callbacks.c.apply_task,
    callbacks.c.confirmed,
    callbacks.c.apply_attempts,
)


class CallbackQueries(RepositoryBase):
    """The repository's queries over accepted and refused callbacks."""

    def add_callback(
        self,
        *,
        job_id: str,
        received_at: datetime,
        status: str | None,
        progress: float | None,
        outcome: str,
        body: dict[str, Any] | None,
        body_sha256: str,
        source_ip: str | None,
        unsafe_urls: int | None = None,
    ) -> None:
        """Record one accepted callback; ``body`` None keeps its hash and metadata only."""
        self.conn.execute(
            _INSERT_CALLBACK,
            {
                "job_id": job_id,
                "received_at": received_at,
                "status": status,
                "progress": progress,
                "outcome": outcome,
                "body": null() if body is None else body,
                "body_sha256": body_sha256,
                "source_ip": source_ip,
                "unsafe_urls": unsafe_urls or None,
            },
        )

    # -- the inbox ----------------------------------------------------------------------------

    def job_binding(self, job_id: str) -> tuple[bool, str | None]:
        """Whether the job exists, and the vendor taskId it is bound to (None: not bound)."""
        row = self.conn.execute(_JOB_BINDING, {"job_id": job_id}).first()
        return (False, None) if row is None else (True, row[0])

    def queue_callback(
        self,
        *,
        job_id: str,
        received_at: datetime,
        status: str | None,
        progress: float | None,
        body: dict[str, Any],
        body_sha256: str,
        source_ip: str | None,
        apply_task: dict[str, Any] | None = None,
        confirmed: bool = True,
    ) -> int:
        """Store a verified callback, not applied yet (outcome ``queued``); its id.

        :param body: the callback as received (kept until it is applied, and after if it moved
            the task).
        :param apply_task: the task object to apply instead of ``body`` (None: the body).
        :param confirmed: False applies it to nothing (``VERIFY_WITH_VENDOR`` could not
            confirm its terminal status).
        """
        return int(
            self.conn.execute(
                _QUEUE_CALLBACK,
                {
                    "job_id": job_id,
                    "received_at": received_at,
                    "status": status,
                    "progress": progress,
                    "outcome": QUEUED,
                    "body": body,
                    "body_sha256": body_sha256,
                    "source_ip": source_ip,
                    "apply_task": null() if apply_task is None else apply_task,
                    "confirmed": confirmed,
                    "apply_attempts": 0,
                },
            ).scalar_one()
        )

    def queued_callbacks(self, now: datetime, limit: int) -> list[QueuedCallback]:
        """Up to ``limit`` queued callbacks that may be applied at ``now`` (no failed try
        holds them back), oldest first (arrival order)."""
        c = callbacks.c
        stmt = (
            select(*_QUEUED_COLUMNS)
            .where(c.outcome == QUEUED, or_(c.apply_after.is_(None), c.apply_after <= now))
            .order_by(c.id)
            .limit(limit)
        )
        return [from_row(QueuedCallback, r) for r in self.conn.execute(stmt)]

    def callback_outcome(self, callback_id: int) -> str | None:
        """The outcome of the stored callback ``callback_id`` (``queued`` until applied), or
        None if there is no such callback (dropped, purged)."""
        row = self.conn.execute(
            select(callbacks.c.outcome).where(callbacks.c.id == callback_id)
        ).first()
        return None if row is None else str(row[0])

    def queued_callback(self, callback_id: int) -> QueuedCallback | None:
        """The callback ``callback_id`` if it is still queued, else None."""
        c = callbacks.c
        stmt = select(*_QUEUED_COLUMNS).where(c.id == callback_id, c.outcome == QUEUED)
        row = self.conn.execute(stmt).first()
        return from_row(QueuedCallback, row) if row else None

    def settle_callback(
        self, callback_id: int, *, outcome: str, keep_body: bool, unsafe_urls: int | None
    ) -> None:
        """Record what applying a queued callback did: its ``outcome``; its body is dropped
        unless ``keep_body`` (only callbacks that moved the task keep theirs)."""
        values: dict[str, Any] = {
            "outcome": outcome,
            "apply_task": null(),
            "apply_error": None,
            "apply_after": None,
            "unsafe_urls": unsafe_urls or None,
        }
        if not keep_body:
            values["body"] = null()
        self.conn.execute(update(callbacks).where(callbacks.c.id == callback_id).values(values))

    def drop_callback(self, callback_id: int) -> None:
        """Delete a stored callback (one that changed nothing, past the per-job cap)."""
        self.conn.execute(delete(callbacks).where(callbacks.c.id == callback_id))

    def defer_callback(self, callback_id: int, *, error: str, after: datetime) -> None:
        """A queued callback's application failed: count it, keep ``error`` (cut to 1,000
        characters), and hold it back until ``after``. It stays queued."""
        self.conn.execute(
            update(callbacks)
            .where(callbacks.c.id == callback_id, callbacks.c.outcome == QUEUED)
            .values(
                apply_attempts=callbacks.c.apply_attempts + 1,
                apply_error=error[:1000],
                apply_after=after,
            )
        )

    def queued_stats(self) -> tuple[int, datetime | None, int]:
        """The inbox: (callbacks queued, the oldest one's receipt time or None, how many of
        them failed at least once)."""
        c = callbacks.c
        row = self.conn.execute(
            select(
                func.count(),
                func.min(c.received_at),
                func.count().filter(c.apply_attempts > 0),
            ).where(c.outcome == QUEUED)
        ).one()
        oldest = row[1]
        if isinstance(oldest, str):  # SQLite's min() loses the column's type
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(row[0]), oldest, int(row[2])

    def count_callbacks(self, job_id: str) -> int:
        """How many callbacks are stored for ``job_id``."""
        return self._count(
            select(func.count()).select_from(callbacks).where(callbacks.c.job_id == job_id)
        )

    def list_callbacks(self, job_id: str) -> list[CallbackRecord]:
        stmt = select(callbacks).where(callbacks.c.job_id == job_id).order_by(callbacks.c.id)
        return [from_row(CallbackRecord, r) for r in self.conn.execute(stmt)]

    def count_callbacks_since(self, since: datetime) -> int:
        return self._count(
            select(func.count()).select_from(callbacks).where(callbacks.c.received_at >= since)
        )

    def count_callbacks_by_outcome_since(self, since: datetime) -> dict[str, int]:
        """Accepted callbacks received at or after ``since``, by outcome (applied, duplicate…)."""
        return self._counts(
            select(callbacks.c.outcome, func.count())
            .where(callbacks.c.received_at >= since)
            .group_by(callbacks.c.outcome)
        )

    # -- refused callbacks ------------------------------------------------------------------

    def add_refused(
        self,
        *,
        received_at: datetime,
        reason: str,
        detail: str | None,
        http_status: int,
        source_ip: str | None,
        body_sha256: str | None,
        body_size: int,
        job_id: str | None,
        keep: int,
    ) -> None:
        """Record a refused callback and trim the log to its newest ``keep`` rows."""
        result = self.conn.execute(
            insert(refused_callbacks).values(
                received_at=received_at,
                reason=reason,
                detail=(detail or "")[:500] or None,
                http_status=http_status,
                source_ip=source_ip,
                body_sha256=body_sha256,
                body_size=body_size,
                job_id=job_id,
            )
        )
        new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        if new_id is not None and new_id > keep:
            self.conn.execute(
                delete(refused_callbacks).where(refused_callbacks.c.id <= new_id - keep)
            )

    def list_refused(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> list[RefusedCallback]:
        stmt = select(refused_callbacks).order_by(refused_callbacks.c.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(refused_callbacks.c.id < before_id)
        return [from_row(RefusedCallback, r) for r in self.conn.execute(stmt)]

    def count_refused_since(self, since: datetime) -> dict[str, int]:
        return self._counts(
            select(refused_callbacks.c.reason, func.count())
            .where(refused_callbacks.c.received_at >= since)
            .group_by(refused_callbacks.c.reason)
        )
