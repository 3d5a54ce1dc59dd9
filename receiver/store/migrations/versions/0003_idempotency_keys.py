"""idempotency keys, operational events, retention indexes

- ``idempotency_keys``: one row per ``Idempotency-Key`` of ``POST /api/tasks`` (and
  ``relay submit --idempotency-key``); the unique key is what settles concurrent requests.
- ``events.job_id`` may be NULL: an operational event (``subscriber.disabled``) has no job.
- indexes on ``events.created_at`` and ``callbacks.received_at`` for the retention purge.
- ``artifact_copies``: ``ARTIFACT_STORE``'s copies of succeeded videos (one row per
  ``task.succeeded`` event, its deliveries held until the copy is done).

Revision ID: 0003_idempotency_keys
Revises: 0002_worker_metrics
Create Date: 2026-11-30 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from receiver.store.migrations.frozen import JSON, create_events_table, create_table, drop_table

revision = "0003_idempotency_keys"
down_revision = "0002_worker_metrics"
branch_labels = None
depends_on = None

_EVENT_COLUMNS = "id, job_id, type, sequence, payload, created_at"


def _recreate_sqlite_events(job_id_nullable: bool) -> None:
    """SQLite cannot change a column's nullability: copy ``events`` aside, drop it, create it
    again and copy the rows back, in this transaction. ``deliveries`` keeps referencing
    ``events`` by name; with ``defer_foreign_keys`` the check waits for the commit, by which
    time every referenced row is back. (Alembic's batch mode renames a copy into place
    instead, which SQLite's foreign-key bookkeeping does not accept while deliveries exist.)
    """
    op.execute("PRAGMA defer_foreign_keys=ON")
    op.execute(f"CREATE TABLE _events_copy AS SELECT {_EVENT_COLUMNS} FROM events")
    op.drop_table("events")
    create_events_table(job_id_nullable)
    op.execute(f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM _events_copy")
    op.execute("DROP TABLE _events_copy")


def upgrade() -> None:
    create_table(
        "idempotency_keys",
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_idempotency_keys")),
        indexes=((op.f("ix_idempotency_keys_created_at"), ["created_at"]),),
    )
    if op.get_bind().dialect.name == "sqlite":
        _recreate_sqlite_events(job_id_nullable=True)
    else:
        op.alter_column("events", "job_id", existing_type=sa.String(length=40), nullable=True)
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"], unique=False)
    create_table(
        "artifact_copies",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("stored", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_artifact_copies_event_id_events")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_artifact_copies")),
        indexes=(("ix_artifact_copies_status_next_attempt_at", ["status", "next_attempt_at"]),),
    )
    op.create_index(op.f("ix_callbacks_received_at"), "callbacks", ["received_at"], unique=False)


def downgrade() -> None:
    drop_table("artifact_copies", "ix_artifact_copies_status_next_attempt_at")
    drop_table("idempotency_keys", op.f("ix_idempotency_keys_created_at"))
    op.drop_index(op.f("ix_callbacks_received_at"), table_name="callbacks")
    op.drop_index(op.f("ix_events_created_at"), table_name="events")
    # Operational events have no job: they (and their deliveries) go before job_id is required.
    orphans = "SELECT id FROM events WHERE job_id IS NULL"
    op.execute(
        "DELETE FROM attempts WHERE delivery_id IN "
        f"(SELECT id FROM deliveries WHERE event_id IN ({orphans}))"
    )
    op.execute(f"DELETE FROM deliveries WHERE event_id IN ({orphans})")
    op.execute("DELETE FROM events WHERE job_id IS NULL")
    if op.get_bind().dialect.name == "sqlite":
        _recreate_sqlite_events(job_id_nullable=False)
    else:
        op.alter_column("events", "job_id", existing_type=sa.String(length=40), nullable=False)
