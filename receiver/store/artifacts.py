"""The SQL of ``ARTIFACT_STORE`` copies (table ``artifact_copies``); the rules are in
:mod:`receiver.artifacts`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from receiver.domain.statuses import DeliveryStatus
from receiver.store.tables import artifact_copies, deliveries, events

PENDING, DONE, FAILED = "pending", "done", "failed"


@dataclass(frozen=True)
class CopyJob:
    """A claimed copy: the event whose artifacts are copied and its payload (exact JSON)."""

    event_id: str
    job_id: str
    attempts: int
    payload: str


def add_copies(conn: Connection, rows: Sequence[tuple[str, str]], now: datetime) -> None:
    """One pending copy per ``(event_id, job_id)``, due now."""
    if rows:
        conn.execute(
            insert(artifact_copies),
            [
                {
                    "event_id": event_id,
                    "job_id": job_id,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for event_id, job_id in rows
            ],
        )


def claim(conn: Connection, now: datetime, lease_seconds: float) -> CopyJob | None:
    """Lease the oldest due pending copy until ``now + lease_seconds`` (PostgreSQL: ``FOR
    UPDATE SKIP LOCKED``, so that several workers take different ones). None when none is due.
    """
    c = artifact_copies.c
    stmt = (
        select(c.event_id, c.job_id, c.attempts, events.c.payload)
        .join(events, events.c.id == c.event_id)
        .where(
            c.status == PENDING,
            c.next_attempt_at <= now,
            or_(c.lease_expires_at.is_(None), c.lease_expires_at <= now),
        )
        .order_by(c.next_attempt_at)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=artifact_copies, skip_locked=True)
    row = conn.execute(stmt).first()
    if row is None:
        return None
    _set_copy(conn, row.event_id, now, lease_expires_at=now + timedelta(seconds=lease_seconds))
    return CopyJob(row.event_id, row.job_id, int(row.attempts), row.payload)


def _set_copy(conn: Connection, event_id: str, now: datetime, **values: Any) -> None:
    """Write ``values`` (columns of ``artifact_copies``) to the copy of event ``event_id``,
    and ``updated_at`` ``now``."""
    conn.execute(
        update(artifact_copies)
        .where(artifact_copies.c.event_id == event_id)
        .values(**values, updated_at=now)
    )


def retry_later(
    conn: Connection, event_id: str, *, attempts: int, at: datetime, error: str, now: datetime
) -> None:
    """Give back the copy of event ``event_id`` after a failed try, due again ``at`` (aware
    UTC): its lease ends, ``attempts`` is the number of tries so far, ``error`` (kept to 1000
    characters) says why. In the caller's transaction."""
    _set_copy(
        conn,
        event_id,
        now,
        attempts=attempts,
        next_attempt_at=at,
        lease_expires_at=None,
        last_error=error[:1000],
    )


def finish(
    conn: Connection,
    event_id: str,
    *,
    status: str,
    attempts: int,
    stored: list[dict[str, Any]] | None,
    payload: str | None,
    error: str | None,
    now: datetime,
) -> int:
    """End a copy (``done`` or ``failed``): write the event's new payload (with the durable
    URLs) when given, and release the event's held deliveries (due now).

    :returns: how many deliveries were released.
    """
    _set_copy(
        conn,
        event_id,
        now,
        status=status,
        attempts=attempts,
        stored=stored,
        lease_expires_at=None,
        last_error=error[:1000] if error else None,
    )
    if payload is not None:
        conn.execute(update(events).where(events.c.id == event_id).values(payload=payload))
    d = deliveries.c
    result = conn.execute(
        update(deliveries)
        .where(
            d.event_id == event_id,
            d.status == DeliveryStatus.PENDING.value,
            d.attempts == 0,
            d.next_attempt_at > now,
        )
        .values(next_attempt_at=now, updated_at=now)
    )
    return int(result.rowcount)


def stored_keys(conn: Connection, event_ids: Sequence[str]) -> list[str]:
    """The store keys of the copies of these events (for the retention purge)."""
    if not event_ids:
        return []
    rows = conn.execute(
        select(artifact_copies.c.stored).where(artifact_copies.c.event_id.in_(list(event_ids)))
    )
    return [item["key"] for (stored,) in rows for item in (stored or []) if "key" in item]
