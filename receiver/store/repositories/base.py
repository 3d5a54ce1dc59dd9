"""What every part of :class:`~receiver.store.repositories.Repository` shares: the connection
its queries run on and what it remembers for the length of one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select


class RepositoryBase:
    """Queries over one connection (see :class:`receiver.store.uow.UnitOfWork`).

    ``_routes`` caches ``subscriber_routes()`` for this transaction; ``_notified`` holds the
    channels whose wake-up was sent in it.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._routes: list[tuple[str, list[str]]] | None = None
        self._notified: set[str] = set()

    @property
    def dialect(self) -> str:
        """The database's dialect name: ``sqlite`` or ``postgresql``."""
        return self.conn.dialect.name

    def _count(self, stmt: Select[Any]) -> int:
        """The one number a ``SELECT count(*) …`` gives."""
        return int(self.conn.execute(stmt).scalar_one())

    def _counts(self, stmt: Select[Any]) -> dict[str, int]:
        """``{key: count}`` from a ``SELECT key, count(*) … GROUP BY key``."""
        return {key: count for key, count in self.conn.execute(stmt)}
