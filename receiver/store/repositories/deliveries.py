"""Events (the outbox, table ``events``), their deliveries (``deliveries``) and the attempts'
log (``attempts``): what the callbacks write, the operator reads and requeues. The worker's
claim and recording are in :mod:`receiver.store.repositories.claims`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, text, update

from receiver.domain.statuses import DeliveryStatus
from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.rows import Attempt, Delivery, Event, as_values, from_row
from receiver.store.tables import attempts, deliveries, events
from receiver.store.wakeup import CALLBACKS_CHANNEL, DELIVERIES_CHANNEL

PENDING, FAILED, CANCELLED = (
    DeliveryStatus.PENDING.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.CANCELLED.value,
)

_INSERT_EVENT = insert(events)
_INSERT_DELIVERY = insert(deliveries)


def _requeued(now: datetime) -> dict[str, Any]:
    """The columns of a delivery put back to pending, due ``now``, its attempts counted anew
    (so that the whole retry schedule applies again)."""
    return {
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "completed_at": None,
        "updated_at": now,
    }


class DeliveryQueries(RepositoryBase):
    """The repository's queries over events, deliveries and attempts."""

    # -- events -----------------------------------------------------------------------------

    def add_events(self, rows: Sequence[Event]) -> None:
        """Insert several events in one statement (executemany)."""
        if rows:
            self.conn.execute(_INSERT_EVENT, [as_values(e) for e in rows])

    def get_event(self, event_id: str) -> Event | None:
        row = self.conn.execute(select(events).where(events.c.id == event_id)).first()
        return from_row(Event, row) if row else None

    def list_events(self, job_id: str) -> list[Event]:
        stmt = select(events).where(events.c.job_id == job_id).order_by(events.c.sequence)
        return [from_row(Event, r) for r in self.conn.execute(stmt)]

    def events_by_id(self, event_ids: Sequence[str]) -> dict[str, Event]:
        if not event_ids:
            return {}
        stmt = select(events).where(events.c.id.in_(list(event_ids)))
        return {e.id: e for e in (from_row(Event, r) for r in self.conn.execute(stmt))}

    # -- deliveries -------------------------------------------------------------------------

    def add_deliveries(self, rows: Sequence[Delivery]) -> None:
        if rows:
            self.conn.execute(_INSERT_DELIVERY, [as_values(d) for d in rows])

    def notify_deliveries(self) -> None:
        """Wake idle PostgreSQL delivery loops when this transaction commits (LISTEN/NOTIFY)."""
        self._notify(DELIVERIES_CHANNEL)

    def notify_callbacks(self) -> None:
        """Wake idle PostgreSQL appliers when this transaction commits (a callback stored)."""
        self._notify(CALLBACKS_CHANNEL)

    def _notify(self, channel: str) -> None:
        if self.dialect == "postgresql" and channel not in self._notified:
            # Once per transaction and channel is enough (PostgreSQL folds identical ones).
            self.conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
            self._notified.add(channel)

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = self.conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return from_row(Delivery, row) if row else None

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscriber_id: str | None = None,
        event_id: str | None = None,
        job_id: str | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Deliveries, newest first; ``before_id`` pages backwards."""
        stmt = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(deliveries.c.status == status)
        if subscriber_id:
            stmt = stmt.where(deliveries.c.subscriber_id == subscriber_id)
        if event_id:
            stmt = stmt.where(deliveries.c.event_id == event_id)
        if job_id:
            stmt = stmt.where(
                deliveries.c.event_id.in_(select(events.c.id).where(events.c.job_id == job_id))
            )
        if before_id:
            stmt = stmt.where(deliveries.c.id < before_id)
        return [from_row(Delivery, r) for r in self.conn.execute(stmt)]

    def count_deliveries_by_status(self) -> dict[str, int]:
        return self._counts(select(deliveries.c.status, func.count()).group_by(deliveries.c.status))

    def count_pending_deliveries(self) -> int:
        return self._count(
            select(func.count()).select_from(deliveries).where(deliveries.c.status == PENDING)
        )

    def oldest_pending_delivery(self) -> datetime | None:
        value: datetime | None = self.conn.execute(
            select(func.min(deliveries.c.created_at)).where(deliveries.c.status == PENDING)
        ).scalar_one_or_none()
        if value is not None and value.tzinfo is None:  # aggregates bypass the column type
            value = value.replace(tzinfo=UTC)
        return value

    def requeue_delivery(self, delivery_id: str, now: datetime) -> bool:
        """Put a finished delivery (failed, succeeded or cancelled) back to pending, due now.

        Its attempt count restarts so that the whole retry schedule applies again.
        :returns: False when no such delivery exists or it is pending already.
        """
        result = self.conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.status != PENDING)
            .values(**_requeued(now))
        )
        return result.rowcount == 1

    def requeue_failed_since(
        self, since: datetime, now: datetime, subscriber_id: str | None = None
    ) -> int:
        """Put every failed delivery whose failure came at or after ``since`` back to pending.

        :returns: how many were requeued.
        """
        cond = and_(deliveries.c.status == FAILED, deliveries.c.completed_at >= since)
        if subscriber_id:
            cond = and_(cond, deliveries.c.subscriber_id == subscriber_id)
        result = self.conn.execute(update(deliveries).where(cond).values(**_requeued(now)))
        return int(result.rowcount)

    def cancel_pending_for(self, subscriber_id: str, now: datetime) -> int:
        result = self.conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.status == PENDING)
            .values(status=CANCELLED, completed_at=now, updated_at=now, lease_owner=None)
        )
        return int(result.rowcount)

    # -- attempts ---------------------------------------------------------------------------

    def list_attempts(self, delivery_id: str) -> list[Attempt]:
        stmt = select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.id)
        return [from_row(Attempt, r) for r in self.conn.execute(stmt)]

    def attempts_by_delivery(self, delivery_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        """Each delivery's attempts, oldest first (deliveries without attempts are absent)."""
        out: dict[str, list[Attempt]] = {}
        if not delivery_ids:
            return out
        stmt = (
            select(attempts)
            .where(attempts.c.delivery_id.in_(list(delivery_ids)))
            .order_by(attempts.c.id)
        )
        for row in self.conn.execute(stmt):
            attempt = from_row(Attempt, row)
            out.setdefault(attempt.delivery_id, []).append(attempt)
        return out
