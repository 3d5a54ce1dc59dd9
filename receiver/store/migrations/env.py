"""Alembic environment: the URL comes from ``relay db upgrade`` (never from alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from receiver.store.engine import make_engine
from receiver.store.tables import metadata

config = context.config
LOCK_ID = 7_221_104  # any constant: one advisory lock for every runway-relay migration


def run_migrations_online() -> None:
    url = config.attributes.get("database_url")
    if not url:
        from receiver.settings import load_settings

        url = load_settings().effective_database_url
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
                conn.commit()
            try:
                context.configure(
                    connection=conn,
                    target_metadata=metadata,
                    render_as_batch=conn.dialect.name == "sqlite",
                    compare_type=True,
                )
                with context.begin_transaction():
                    context.run_migrations()
                conn.commit()
            finally:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
                    conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `relay db upgrade`")
run_migrations_online()
