"""Pieces that more than one migration script (``versions/``) builds with.

FROZEN. The migrations are history: what each emits must never change, and they emit what is
written here. Never edit anything in this module once a migration uses it; a later migration
that wants something else writes it itself (or adds a new name here). This is not the live
schema (that is ``receiver/store/tables.py``), only what the old revisions made.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: The JSON column type of the migrations: JSONB on PostgreSQL, JSON elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def create_events_table(job_id_nullable: bool) -> None:
    """Create ``events`` as 0001 made it (``job_id_nullable`` False) and as 0003 makes it again
    on SQLite, where ``job_id`` becomes nullable (and back, on downgrade)."""
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=job_id_nullable),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_events_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("job_id", "sequence", name=op.f("uq_events_job_id_sequence")),
    )


def create_table(
    table: str, *columns: sa.schema.SchemaItem, indexes: tuple[tuple[str, list[str]], ...] = ()
) -> None:
    """Create ``table`` of ``columns`` (and constraints), then its non-unique ``indexes``
    (``(name, columns)``, in this order, in one batch). An index name meant as is, not by the
    naming convention, comes wrapped in ``op.f``."""
    op.create_table(table, *columns)
    if indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, index_columns in indexes:
                batch_op.create_index(name, index_columns, unique=False)


def drop_table(table: str, *indexes: str) -> None:
    """Drop the ``indexes`` of ``table`` (in this order, in one batch), then the table."""
    if indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in indexes:
                batch_op.drop_index(name)
    op.drop_table(table)
