"""Reading subscribers: one, all of them with their delivery counts (the API and the CLI), and
the dashboard's rows with a success rate. Each function runs one read-only unit of work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from receiver.errors import SubscriberNotFound
from receiver.store import repositories as store
from receiver.store.uow import UnitOfWork
from receiver.views.schemas import Subscriber, SubscriberListed


def subscriber(engine: Engine, subscriber_id: str) -> Subscriber:
    """The subscriber ``subscriber_id`` (without its secret).

    :raises SubscriberNotFound: there is none, or it was removed.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        row = uow.repo.get_subscriber(subscriber_id)
    return Subscriber.of(SubscriberNotFound.require(row, f"no subscriber {subscriber_id}"))


@dataclass(frozen=True)
class SubscriberStats:
    """A subscriber and its deliveries counted by status (``{status: count}``)."""

    subscriber: store.Subscriber
    deliveries: dict[str, int]

    @property
    def success_rate(self) -> float | None:
        """Succeeded over finished (succeeded + failed) deliveries, 0..1; None before any."""
        return success_rate(self.deliveries)


def success_rate(counts: Mapping[str, int]) -> float | None:
    """``succeeded / (succeeded + failed)`` of ``counts`` (``{status: count}``), or None."""
    finished = counts.get("succeeded", 0) + counts.get("failed", 0)
    return counts.get("succeeded", 0) / finished if finished else None


def subscriber_stats(engine: Engine) -> list[SubscriberStats]:
    """Every subscriber not removed, with its delivery counts, read in one transaction."""
    with UnitOfWork(engine, read_only=True) as uow:
        subs = uow.repo.list_subscribers()
        stats = uow.repo.subscriber_stats()
    return [SubscriberStats(s, stats.get(s.id, {})) for s in subs]


def subscribers(engine: Engine) -> list[SubscriberListed]:
    """Every subscriber not removed with its delivery counts, as the API and the CLI list them."""
    rows = subscriber_stats(engine)
    return [SubscriberListed.with_stats(row.subscriber, row.deliveries) for row in rows]
