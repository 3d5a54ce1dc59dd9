"""SQLAlchemy 2 table definitions: the schema that the Alembic migrations build.

Times are stored as aware UTC (:class:`UTCDateTime`). JSON columns hold vendor objects as
received (unknown fields kept). ``events.payload`` is the exact webhook body, serialised once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as an aware UTC ``datetime``.

    SQLite keeps no zone, PostgreSQL keeps ``timestamptz``; both read back as UTC here.
    :raises ValueError: when given a naive datetime (every time in runway-relay is aware).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType: Any = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model", String(32), nullable=False),
    Column("request", JSONType, nullable=False),
    Column("metadata", JSONType, nullable=False),
    Column("status", String(20), nullable=False),
    Column("task_id", String(1024), unique=True),
    Column("progress", Float),
    Column("progress_text", Text),
    Column("artifacts", JSONType, nullable=False),
    Column("error", JSONType),
    Column("submit_error", JSONType),
    Column("sequence", Integer, nullable=False, default=0),
    Column("vendor_task", JSONType),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_callback_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Index("ix_jobs_status_created_at", "status", "created_at"),
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("received_at", UTCDateTime, nullable=False, index=True),
    Column("status", String(40)),
    Column("progress", Float),
    Column("outcome", String(24), nullable=False),
    # None for a callback that changed nothing (duplicate, stale, after the end): its hash and
    # metadata are kept, not its body.
    Column("body", JSONType),
    Column("body_sha256", String(64), nullable=False),
    Column("source_ip", String(64)),
    # How many artifact or preview URLs were dropped as unsafe (not https); None when none.
    Column("unsafe_urls", Integer),
    # The inbox (migration 0005): a callback is stored with outcome "queued" and its body, and
    # applied after (receiver/ingest/applier.py). ``apply_task``: the task object to apply when
    # it is not the body (VERIFY_WITH_VENDOR's); ``confirmed`` False: applied to nothing.
    Column("apply_task", JSONType),
    Column("confirmed", Boolean, nullable=False, default=True, server_default=true()),
    # A failed application: tried again after ``apply_after``; the last error kept.
    Column("apply_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("apply_error", Text),
    Column("apply_after", UTCDateTime),
    Index(
        "ix_callbacks_queued",
        "id",
        sqlite_where=text("outcome = 'queued'"),
        postgresql_where=text("outcome = 'queued'"),
    ),
)

#: Signed-in dashboard sessions, keyed by the SHA-256 of the random id the cookie carries.
#: Signing out deletes the row; ``expires_at`` is set once, at sign-in.
sessions = Table(
    "sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

refused_callbacks = Table(
    "refused_callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False, index=True),
    Column("reason", String(40), nullable=False),
    Column("detail", Text),
    Column("http_status", Integer, nullable=False),
    Column("source_ip", String(64)),
    Column("body_sha256", String(64)),
    Column("body_size", Integer, nullable=False),
    Column("job_id", String(40)),
)

events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    # None for an operational event (``subscriber.disabled``), which belongs to no job.
    Column("job_id", String(40), ForeignKey("jobs.id"), nullable=True),
    Column("type", String(40), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    UniqueConstraint("job_id", "sequence"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", Text, nullable=False),
    Column("description", Text),
    Column("event_types", JSONType, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("previous_secret", String(128)),
    Column("previous_secret_expires_at", UTCDateTime),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", Text),
    Column("disabled_at", UTCDateTime),
    Column("max_in_flight", Integer, nullable=False),
    Column("failing_since", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_failure_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("event_id", String(40), ForeignKey("events.id"), nullable=False),
    Column("subscriber_id", String(40), ForeignKey("subscribers.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    UniqueConstraint("event_id", "subscriber_id"),
    Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_deliveries_subscriber_id_status", "subscriber_id", "status", "lease_expires_at"),
    Index("ix_deliveries_status_completed_at", "status", "completed_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status_code", Integer),
    Column("outcome", String(24), nullable=False),
    Column("error", Text),
    Column("response_body", Text),
    Column("worker", String(64)),
)

#: The delivery worker's monotonic counters, added to in the transaction that records the
#: attempts they count, so that the web's ``/metrics`` shows what every worker did, wherever it
#: runs (receiver/metrics.py). ``name``/``label``: ``attempts``/an outcome,
#: ``latency_bucket``/a bucket's upper bound (``+Inf`` for the last; counts per bucket, not
#: cumulative), ``latency_sum``/``""`` (seconds) and ``latency_count``/``""``. Never pruned.
worker_metrics = Table(
    "worker_metrics",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("label", String(32), primary_key=True),
    Column("value", Float, nullable=False),
)

#: One row per ``Idempotency-Key`` (``POST /api/tasks``, ``relay submit --idempotency-key``):
#: the primary key is the claim that the database settles between concurrent requests.
#: ``state`` is ``in_flight`` then ``completed``; a completed key replays its answer:
#: ``response_status`` and, for an error, ``response_body`` (a success re-reads ``job_id``).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("job_id", String(40)),
    Column("response_status", Integer),
    Column("response_body", Text),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("completed_at", UTCDateTime),
)

#: ``ARTIFACT_STORE``: one row per ``task.succeeded`` event whose videos are copied to the
#: store before its deliveries go out (they are held until then). ``status`` is ``pending``
#: (due at ``next_attempt_at``; leased while ``lease_expires_at`` is ahead), ``done`` or
#: ``failed`` (retries exhausted: the event goes out with the vendor's URLs only); ``stored``
#: lists the copies ``[{"key", "size", "sha256", "source"}]``.
artifact_copies = Table(
    "artifact_copies",
    metadata,
    Column("event_id", String(40), ForeignKey("events.id"), primary_key=True),
    Column("job_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_expires_at", UTCDateTime),
    Column("last_error", Text),
    Column("stored", JSONType),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_artifact_copies_status_next_attempt_at", "status", "next_attempt_at"),
)
