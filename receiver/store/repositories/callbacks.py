"""Callbacks: the accepted ones as received (table ``callbacks``) and the bounded log of refused
ones (table ``refused_callbacks``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, null, select

from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.rows import CallbackRecord, RefusedCallback, from_row
from receiver.store.tables import callbacks, refused_callbacks

_INSERT_CALLBACK = insert(callbacks)


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
