"""Subscribers (table ``subscribers``): webhook endpoints, their routing and their health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from receiver.store.repositories.base import RepositoryBase
from receiver.store.repositories.rows import Subscriber, as_values, from_row
from receiver.store.tables import deliveries, subscribers

#: The enabled subscribers' routing (id and event types), in id order.
_SUBSCRIBER_ROUTES = (
    select(subscribers.c.id, subscribers.c.event_types)
    .where(subscribers.c.deleted_at.is_(None), subscribers.c.enabled.is_(True))
    .order_by(subscribers.c.id)
)
_LIVE_SUBSCRIBERS = select(subscribers).where(
    subscribers.c.id.in_(bindparam("ids_", expanding=True)), subscribers.c.deleted_at.is_(None)
)
#: The worker's health updates (they come after its delivery rows in the lock order: see
#: :mod:`receiver.store.repositories.claims`).
_SET_HEALTH = update(subscribers).where(
    subscribers.c.id == bindparam("subscriber_id_"), subscribers.c.deleted_at.is_(None)
)


class SubscriberQueries(RepositoryBase):
    """The repository's queries over subscribers."""

    def add_subscriber(self, sub: Subscriber) -> None:
        self._routes = None
        self.conn.execute(insert(subscribers).values(**as_values(sub)))

    def get_subscriber(self, subscriber_id: str) -> Subscriber | None:
        row = self.conn.execute(
            select(subscribers).where(
                subscribers.c.id == subscriber_id, subscribers.c.deleted_at.is_(None)
            )
        ).first()
        return from_row(Subscriber, row) if row else None

    def subscriber_routes(self) -> list[tuple[str, list[str]]]:
        """``[(subscriber id, event types)]`` of the enabled subscribers, in id order: what a
        new event needs to know to make its deliveries. Read once per repository (that is, per
        transaction) and then remembered, so a batch of callbacks in one transaction reads it
        once; writing a subscriber through this repository forgets it."""
        if self._routes is None:
            self._routes = [
                (sub_id, list(types)) for sub_id, types in self.conn.execute(_SUBSCRIBER_ROUTES)
            ]
        return self._routes

    def list_subscribers(self) -> list[Subscriber]:
        """Every subscriber not removed (enabled or not), in id order."""
        stmt = select(subscribers).where(subscribers.c.deleted_at.is_(None))
        return [from_row(Subscriber, r) for r in self.conn.execute(stmt.order_by(subscribers.c.id))]

    def update_subscriber(self, subscriber_id: str, **values: Any) -> bool:
        self._routes = None
        result = self.conn.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id, subscribers.c.deleted_at.is_(None))
            .values(**values)
        )
        return result.rowcount == 1

    def live_subscribers(self, subscriber_ids: Sequence[str]) -> dict[str, Subscriber]:
        """Subscribers by id, removed ones left out (those :meth:`get_subscriber` finds)."""
        if not subscriber_ids:
            return {}
        return self._by_id(self.conn.execute(_LIVE_SUBSCRIBERS, {"ids_": list(subscriber_ids)}))

    def subscribers_by_id(self, subscriber_ids: Sequence[str]) -> dict[str, Subscriber]:
        """Subscribers by id, removed ones included (history shows where a delivery went)."""
        if not subscriber_ids:
            return {}
        stmt = select(subscribers).where(subscribers.c.id.in_(list(subscriber_ids)))
        return self._by_id(self.conn.execute(stmt))

    @staticmethod
    def _by_id(rows: Any) -> dict[str, Subscriber]:
        return {s.id: s for s in (from_row(Subscriber, r) for r in rows)}

    def set_subscriber_health(self, subscriber_id: str, values: dict[str, Any]) -> bool:
        """Set health columns of a subscriber that is not removed (``failing_since``,
        ``last_success_at``, ``enabled``, …) as parameters of a cached statement.

        :returns: False when no such subscriber exists (or it was removed).
        """
        if not values:
            return False
        result = self.conn.execute(_SET_HEALTH, {"subscriber_id_": subscriber_id, **values})
        return result.rowcount == 1

    def subscriber_stats(self) -> dict[str, dict[str, int]]:
        """Per subscriber: deliveries by status."""
        rows = self.conn.execute(
            select(deliveries.c.subscriber_id, deliveries.c.status, func.count()).group_by(
                deliveries.c.subscriber_id, deliveries.c.status
            )
        )
        out: dict[str, dict[str, int]] = {}
        for sid, status, count in rows:
            out.setdefault(sid, {})[status] = count
        return out

    def count_disabled_subscribers(self) -> int:
        """Subscribers that exist (not removed) and are disabled."""
        return self._count(
            select(func.count())
            .select_from(subscribers)
            .where(subscribers.c.enabled.is_(False), subscribers.c.deleted_at.is_(None))
        )
