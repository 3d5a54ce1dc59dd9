"""Signed-in dashboard sessions (table ``sessions``), kept by the SHA-256 of their random id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select

from receiver.store.repositories.base import RepositoryBase
from receiver.store.tables import sessions


class SessionQueries(RepositoryBase):
    """The repository's queries over dashboard sessions."""

    def add_session(self, id_sha256: str, created_at: datetime, expires_at: datetime) -> None:
        """Record a signed-in dashboard session (by the SHA-256 hex of its random id) and
        forget the ones that have expired."""
        self.conn.execute(delete(sessions).where(sessions.c.expires_at <= created_at))
        self.conn.execute(
            insert(sessions).values(
                id_sha256=id_sha256, created_at=created_at, expires_at=expires_at
            )
        )

    def session_alive(self, id_sha256: str, now: datetime) -> bool:
        """Whether the session exists (not signed out) and has not expired at ``now``."""
        stmt = select(sessions.c.expires_at).where(sessions.c.id_sha256 == id_sha256)
        expires_at = self.conn.execute(stmt).scalar_one_or_none()
        return expires_at is not None and expires_at > now

    def end_session(self, id_sha256: str) -> None:
        """Sign a session out: its cookie is refused from now on."""
        self.conn.execute(delete(sessions).where(sessions.c.id_sha256 == id_sha256))
