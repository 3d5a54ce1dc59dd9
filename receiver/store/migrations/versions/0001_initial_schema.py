"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 18:37:40.784106
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from receiver.store.migrations.frozen import JSON, create_events_table, create_table, drop_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=32), nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("task_id", sa.String(length=1024), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("progress_text", sa.Text(), nullable=True),
        sa.Column("artifacts", JSON, nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.Column("submit_error", JSON, nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("vendor_task", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_callback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("task_id", name=op.f("uq_jobs_task_id")),
        indexes=(("ix_jobs_status_created_at", ["status", "created_at"]),),
    )

    create_table(
        "refused_callbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=True),
        sa.Column("body_size", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refused_callbacks")),
        indexes=((op.f("ix_refused_callbacks_received_at"), ["received_at"]),),
    )

    op.create_table(
        "subscribers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", JSON, nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("previous_secret", sa.String(length=128), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
    )
    create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("body", JSON, nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_callbacks_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        indexes=((op.f("ix_callbacks_job_id"), ["job_id"]),),
    )

    create_events_table(job_id_nullable=False)
    create_table(
        "deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("subscriber_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_deliveries_event_id_events")
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_deliveries_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "event_id", "subscriber_id", name=op.f("uq_deliveries_event_id_subscriber_id")
        ),
        indexes=(
            ("ix_deliveries_status_completed_at", ["status", "completed_at"]),
            ("ix_deliveries_status_next_attempt_at", ["status", "next_attempt_at"]),
            ("ix_deliveries_subscriber_id_status", ["subscriber_id", "status", "lease_expires_at"]),
        ),
    )

    create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_attempts_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        indexes=((op.f("ix_attempts_delivery_id"), ["delivery_id"]),),
    )


def downgrade() -> None:
    drop_table("attempts", op.f("ix_attempts_delivery_id"))
    drop_table(
        "deliveries",
        "ix_deliveries_subscriber_id_status",
        "ix_deliveries_status_next_attempt_at",
        "ix_deliveries_status_completed_at",
    )
    drop_table("events")
    drop_table("callbacks", op.f("ix_callbacks_job_id"))
    drop_table("subscribers")
    drop_table("refused_callbacks", op.f("ix_refused_callbacks_received_at"))
    drop_table("jobs", "ix_jobs_status_created_at")
