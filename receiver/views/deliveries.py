"""Reading deliveries (one with its attempt log, a filtered page of them, the dashboard's board
of them) and the log of refused callbacks. Each function runs one read-only unit of work."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import Engine

from receiver.errors import DeliveryNotFound
from receiver.store import repositories as store
from receiver.store.uow import UnitOfWork
from receiver.views.pages import Page
from receiver.views.schemas import DeliveryDetail


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries a list shows: each filter only when given. ``status="failed"``: the
    dead letters (retries exhausted, or the subscriber answered 410). The fields are
    :meth:`~receiver.store.repositories.Repository.list_deliveries`'s arguments."""

    status: str | None = None
    subscriber_id: str | None = None
    event_id: str | None = None


def delivery(engine: Engine, delivery_id: str) -> DeliveryDetail:
    """The delivery ``delivery_id`` with its attempt log, as the API answers it.

    :raises DeliveryNotFound: there is none.
    """
    with UnitOfWork(engine, read_only=True) as uow:
        row = DeliveryNotFound.require(
            uow.repo.get_delivery(delivery_id), f"no delivery {delivery_id}"
        )
        attempts = uow.repo.list_attempts(delivery_id)
    return DeliveryDetail.with_attempts(row, attempts)


def deliveries(
    engine: Engine, filters: DeliveryFilter, *, before: str | None = None, limit: int = 50
) -> Page[store.Delivery]:
    """Up to ``limit`` deliveries matching ``filters``, newest first, older than the delivery
    id ``before`` when given; ``next_before`` pages on."""
    with UnitOfWork(engine, read_only=True) as uow:
        return Page.read(uow.repo.list_deliveries, before, limit, **asdict(filters))


@dataclass(frozen=True)
class DeliveryBoard:
    """The dashboard's deliveries page: a page of deliveries with each one's last attempt
    (by delivery id), their events and subscribers (by id), every delivery counted by status,
    and the live subscribers (for the recover form)."""

    page: Page[store.Delivery]
    last: dict[str, store.Attempt]
    events: dict[str, store.Event]
    subscribers: dict[str, store.Subscriber]
    counts: dict[str, int]
    active: list[store.Subscriber]


def delivery_board(
    engine: Engine, filters: DeliveryFilter, *, before: str | None, limit: int
) -> DeliveryBoard:
    """The :class:`DeliveryBoard` of the deliveries matching ``filters`` (up to ``limit``,
    older than ``before`` when given), read in one transaction."""
    with UnitOfWork(engine, read_only=True) as uow:
        repo = uow.repo
        page = Page.read(repo.list_deliveries, before, limit, **asdict(filters))
        attempts = repo.attempts_by_delivery([d.id for d in page.items])
        events = repo.events_by_id(sorted({d.event_id for d in page.items}))
        subscribers = repo.subscribers_by_id(sorted({d.subscriber_id for d in page.items}))
        counts = repo.count_deliveries_by_status()
        active = repo.list_subscribers()
    return DeliveryBoard(
        page=page,
        last={k: v[-1] for k, v in attempts.items() if v},
        events=events,
        subscribers=subscribers,
        counts=counts,
        active=active,
    )


def refused_callbacks(
    engine: Engine, *, before: int | None = None, limit: int = 50
) -> Page[store.RefusedCallback]:
    """Up to ``limit`` refused callbacks, newest first, older than the id ``before`` when
    given; ``next_before`` pages on."""
    with UnitOfWork(engine, read_only=True) as uow:
        return Page.read(uow.repo.list_refused, before, limit)
