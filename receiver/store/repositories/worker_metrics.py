"""The delivery worker's counters (table ``worker_metrics``), shared by every worker process."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from receiver.store.repositories.base import RepositoryBase
from receiver.store.tables import worker_metrics


class WorkerMetricQueries(RepositoryBase):
    """The repository's queries over the worker's counters."""

    def add_to_worker_metrics(self, increments: Mapping[tuple[str, str], float]) -> None:
        """Add ``increments`` (``(name, label)`` → amount) to the worker's counters, creating
        the rows that do not exist yet (one upsert; SQLite and PostgreSQL alike).

        Rows are written in sorted order, so that workers recording at once take their row
        locks in one order (PostgreSQL) and wait for each other instead of deadlocking. Call
        it last in a transaction: the rows stay locked until commit.
        """
        if not increments:
            return
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = dialect_insert(worker_metrics)
        stmt = stmt.on_conflict_do_update(
            index_elements=[worker_metrics.c.name, worker_metrics.c.label],
            set_={"value": worker_metrics.c.value + stmt.excluded.value},
        )
        rows = [
            {"name": name, "label": label, "value": float(value)}
            for (name, label), value in sorted(increments.items())
        ]
        self.conn.execute(stmt, rows)

    def read_worker_metrics(self) -> dict[tuple[str, str], float]:
        """Every worker counter, ``(name, label)`` → value (see ``tables.worker_metrics``)."""
        stmt = select(worker_metrics.c.name, worker_metrics.c.label, worker_metrics.c.value)
        return {(r.name, r.label): float(r.value) for r in self.conn.execute(stmt)}
