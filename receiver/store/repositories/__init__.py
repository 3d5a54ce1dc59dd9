"""The only place that writes SQL. Every method runs on the unit of work's connection.

Rows come back as frozen dataclasses (:class:`Job`, :class:`Subscriber`, :class:`Delivery`, …,
in :mod:`.rows`), never as dicts, so that what travels further is typed. :class:`Repository`
is made of one part per aggregate: :mod:`.jobs`, :mod:`.callbacks` (accepted and refused),
:mod:`.subscribers`, :mod:`.deliveries` (events, deliveries, attempts), :mod:`.claims` (the
delivery worker's hot path, with the lock order every worker transaction keeps),
:mod:`.sessions` (the dashboard's) and :mod:`.worker_metrics`. Import every name from here.
"""

from __future__ import annotations

from receiver.store.repositories.callbacks import CallbackQueries
from receiver.store.repositories.claims import ClaimQueries
from receiver.store.repositories.deliveries import DeliveryQueries
from receiver.store.repositories.jobs import JobQueries
from receiver.store.repositories.rows import (
    Attempt,
    AttemptRecord,
    CallbackRecord,
    ClaimedDelivery,
    Delivery,
    Event,
    Job,
    QueuedCallback,
    RefusedCallback,
    Subscriber,
)
from receiver.store.repositories.sessions import SessionQueries
from receiver.store.repositories.subscribers import SubscriberQueries
from receiver.store.repositories.worker_metrics import WorkerMetricQueries


class Repository(
    JobQueries,
    CallbackQueries,
    SessionQueries,
    DeliveryQueries,
    SubscriberQueries,
    ClaimQueries,
    WorkerMetricQueries,
):
    """Queries over one connection (see :class:`receiver.store.uow.UnitOfWork`):
    ``Repository(conn)``, one per transaction."""


__all__ = [
    "Attempt",
    "AttemptRecord",
    "CallbackRecord",
    "ClaimedDelivery",
    "Delivery",
    "Event",
    "Job",
    "QueuedCallback",
    "RefusedCallback",
    "Repository",
    "Subscriber",
]
