"""Delivery administration for the API, the dashboard and the CLI: send one again, or every
dead letter since a time. Each is one unit of work that wakes the workers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from receiver.errors import Conflict, DeliveryNotFound
from receiver.store.repositories import Delivery
from receiver.store.uow import UnitOfWork


def retry_delivery(engine: Engine, delivery_id: str, now: datetime) -> Delivery:
    """Send a finished delivery again, now, with the same ``webhook-id``.

    :returns: the delivery, pending again.
    :raises DeliveryNotFound:
    :raises Conflict: it is pending already.
    """
    with UnitOfWork(engine) as uow:
        DeliveryNotFound.require(uow.repo.get_delivery(delivery_id), f"no delivery {delivery_id}")
        if not uow.repo.requeue_delivery(delivery_id, now):
            raise Conflict(f"delivery {delivery_id} is pending already")
        uow.repo.notify_deliveries()
        uow.commit()
        delivery = uow.repo.get_delivery(delivery_id)
    assert delivery is not None
    return delivery


def recover_deliveries(
    engine: Engine, since: datetime, now: datetime, subscriber_id: str | None = None
) -> int:
    """Send again every delivery that failed (dead letter) at or after ``since``.

    :param subscriber_id: only that subscriber's (None: every subscriber's).
    :returns: how many were queued again.
    """
    with UnitOfWork(engine) as uow:
        count = uow.repo.requeue_failed_since(since, now, subscriber_id)
        if count:
            uow.repo.notify_deliveries()
        uow.commit()
    return count
