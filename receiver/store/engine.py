"""Engines for SQLite (the embedded default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, ``synchronous=FULL`` (a 2xx means the callback is on
disk) and ``BEGIN IMMEDIATE`` transactions, so that several gunicorn workers and the delivery
worker can write one file safely: writers queue on the busy timeout instead of failing on a
lock upgrade. PostgreSQL gets a small bounded pool with pre-ping, so that a lost connection is
replaced instead of failing a request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(engine: Engine) -> bool:
    """True when the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """Build the engine for ``url``.

    :param url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://…``).
    :param pool_size: PostgreSQL connections kept open per process.
    :param max_overflow: extra PostgreSQL connections allowed under load, per process.
    :raises sqlalchemy.exc.ArgumentError: for a URL SQLAlchemy cannot parse.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=pool_size + max_overflow,
            max_overflow=0,
            pool_pre_ping=False,
        )
        _configure_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "pool_timeout": 10,
    }
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5, "application_name": "runway-relay"}
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
