"""callbacks are stored first and applied after: the table is also the inbox

Revision ID: 0005_callback_inbox
Revises: 0004_sessions
Create Date: 2026-11-30 23:10:00

The web process stores each verified callback with ``outcome = 'queued'`` and its body, and
answers; the worker's applier (receiver/ingest/applier.py) applies queued callbacks in batches,
in arrival (``id``) order, and sets their outcome (issue 18: store, then apply).

- ``callbacks.apply_task``: the task object to apply when it is not the body as received
  (``VERIFY_WITH_VENDOR`` replaced it with the vendor's own); NULL otherwise, and once applied.
- ``callbacks.confirmed``: False when ``VERIFY_WITH_VENDOR`` could not confirm a terminal
  status (the callback is then applied to nothing: outcome ``unconfirmed``).
- ``callbacks.apply_attempts`` / ``apply_error`` / ``apply_after``: a queued callback whose
  application failed (a bug of ours, the database) stays queued and is tried again after
  ``apply_after``; the last error is kept for the operator.
- ``ix_callbacks_queued``: the applier's scan, partial on ``outcome = 'queued'`` (small).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from receiver.store.migrations.frozen import JSON

revision = "0005_callback_inbox"
down_revision = "0004_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("apply_task", JSON, nullable=True))
        batch_op.add_column(
            sa.Column("confirmed", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("apply_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("apply_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("apply_after", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_callbacks_queued",
        "callbacks",
        ["id"],
        unique=False,
        sqlite_where=sa.text("outcome = 'queued'"),
        postgresql_where=sa.text("outcome = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_callbacks_queued", table_name="callbacks")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_column("apply_after")
        batch_op.drop_column("apply_error")
        batch_op.drop_column("apply_attempts")
        batch_op.drop_column("confirmed")
        batch_op.drop_column("apply_task")
