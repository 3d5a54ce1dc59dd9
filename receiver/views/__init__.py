"""The read side: what the admin API, the dashboard and the CLI show, read in one read-only unit
of work per call and returned as typed read models, never as rows to compose again.

- :mod:`.schemas`: the JSON shapes (pydantic models) of jobs, events, callbacks, subscribers,
  deliveries, attempts and refused callbacks. The API answers with them, the CLI prints them,
  and the OpenAPI document's schemas are generated from them.
- :mod:`.jobs`: one job (:func:`job`, :func:`job_detail`), a filtered page of jobs
  (:func:`jobs`, :func:`count_jobs`), a job's whole history for the dashboard
  (:func:`task_history`) and the dashboard's :func:`overview`.
- :mod:`.deliveries`: one delivery with its attempts (:func:`delivery`), a filtered page of
  deliveries (:func:`deliveries`; ``status="failed"``: the dead letters), the dashboard's
  :func:`delivery_board`, and the log of refused callbacks (:func:`refused_callbacks`).
- :mod:`.subscribers`: one subscriber, and all of them with their delivery counts.
- :mod:`.pages`: :class:`Page`, a page read newest first and the cursor (``before``) to the
  next one.

Dependencies point one way: the web layer and the CLI import this package; it imports the store
(:mod:`receiver.store`), the domain and :mod:`receiver.errors` (the not-found errors), never the
web layer, the CLI or the services.
"""

from __future__ import annotations

from receiver.views.deliveries import (
    DeliveryBoard,
    DeliveryFilter,
    deliveries,
    delivery,
    delivery_board,
    refused_callbacks,
)
from receiver.views.jobs import (
    JobFilter,
    Overview,
    TaskHistory,
    count_jobs,
    job,
    job_detail,
    jobs,
    overview,
    task_history,
)
from receiver.views.pages import Page
from receiver.views.subscribers import (
    SubscriberStats,
    subscriber,
    subscriber_stats,
    subscribers,
    success_rate,
)

__all__ = [
    "DeliveryBoard",
    "DeliveryFilter",
    "JobFilter",
    "Overview",
    "Page",
    "SubscriberStats",
    "TaskHistory",
    "count_jobs",
    "deliveries",
    "delivery",
    "delivery_board",
    "job",
    "job_detail",
    "jobs",
    "overview",
    "refused_callbacks",
    "subscriber",
    "subscriber_stats",
    "subscribers",
    "success_rate",
    "task_history",
]
