"""How stored callbacks are applied one applier at a time, across processes: the dialect
decides how (:func:`lock_applier`).

- PostgreSQL: a transaction-scoped advisory lock; the applier also reads each job with
  ``FOR UPDATE``, so admin paths that change a job wait for it, and it for them.
- SQLite: one writer at a time holds the whole database (``BEGIN IMMEDIATE`` through the
  writer queue of :mod:`receiver.store.engine`), which is already exclusive.
"""

from __future__ import annotations

from sqlalchemy import text

from receiver.store.repositories import Repository

#: The PostgreSQL advisory lock key that one applier at a time holds (any fixed bigint; this
#: one is "relay-ap" in ASCII).
APPLIER_LOCK_KEY = 0x72656C61792D6170


def lock_applier(repo: Repository) -> None:
    """Make the caller's transaction the only applier of stored callbacks until it ends, so
    that callbacks apply once each, in arrival order, across worker processes.

    PostgreSQL: a transaction-scoped advisory lock (waits for the applier holding it).
    SQLite: nothing to do; the write transaction (``BEGIN IMMEDIATE`` through the writer
    queue) already excludes every other writer.
    """
    if repo.dialect == "postgresql":
        repo.conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPLIER_LOCK_KEY})
