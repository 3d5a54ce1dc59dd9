"""dashboard sessions kept server-side; callbacks that changed nothing keep no body

Revision ID: 0004_sessions
Revises: 0003_idempotency_keys
Create Date: 2026-11-30 16:30:00

- ``sessions``: one row per signed-in dashboard session, keyed by the SHA-256 of its random
  id (the cookie carries the id, the table never does). Signing out deletes the row, so an old
  cookie is refused; ``expires_at`` is fixed at sign-in (12 hours), never slid forward.
- ``callbacks.body`` may be NULL: a duplicate, stale or post-terminal callback keeps its hash
  and metadata only (issue 16, amplification).
- ``callbacks.unsafe_urls``: how many artifact or preview URLs of the callback were dropped
  as unsafe (not https); NULL or 0 when none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from receiver.store.migrations.frozen import JSON, create_table, drop_table

revision = "0004_sessions"
down_revision = "0003_idempotency_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "sessions",
        sa.Column("id_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_sessions")),
        indexes=((op.f("ix_sessions_expires_at"), ["expires_at"]),),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=JSON, nullable=True)
        batch_op.add_column(sa.Column("unsafe_urls", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_column("unsafe_urls")
    op.execute("UPDATE callbacks SET body = '{}' WHERE body IS NULL")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=JSON, nullable=False)
    drop_table("sessions", op.f("ix_sessions_expires_at"))
