"""Use cases: each one parses nothing and renders nothing, and runs in one unit of work.

- :mod:`receiver.services.callbacks`: a verified callback is stored; applied (by
  :mod:`receiver.ingest.applier`), it moves its task forward and writes its outcome, the
  events and their deliveries in one transaction (the outbox).
- :mod:`receiver.services.subscribers`, :mod:`receiver.services.deliveries`: administration
  for the API, the dashboard and the CLI.
- :mod:`receiver.services.reconcile`: the safety net for a lost callback.
- submitting a task lives in :mod:`receiver.submission`; the errors are in
  :mod:`receiver.errors` (re-exported here, so ``services.JobNotFound`` still works).
"""

from __future__ import annotations

from receiver.errors import (
    Conflict,
    DeliveryNotFound,
    InvalidSubmission,
    InvalidSubscriber,
    JobNotFound,
    ServiceError,
    SubmissionFailed,
    SubscriberNotFound,
    TaskIdMismatch,
)
from receiver.services.callbacks import (
    MAX_CALLBACKS_PER_JOB,
    MAX_PROGRESS_TEXT,
    ApplyOptions,
    CallbackResult,
    StoredCallback,
    apply_callback,
    confirm_terminal,
    get_job,
    store_callback,
    task_update_from_vendor,
)
from receiver.services.deliveries import recover_deliveries, retry_delivery
from receiver.services.reconcile import reconcile
from receiver.services.subscribers import (
    create_subscriber,
    get_subscriber,
    new_secret,
    remove_subscriber,
    rotate_secret,
    set_subscriber_enabled,
)
from receiver.store.repositories import Delivery, Subscriber

__all__ = [
    "MAX_CALLBACKS_PER_JOB",
    "MAX_PROGRESS_TEXT",
    "ApplyOptions",
    "CallbackResult",
    "Conflict",
    "Delivery",
    "DeliveryNotFound",
    "InvalidSubmission",
    "InvalidSubscriber",
    "JobNotFound",
    "ServiceError",
    "SubmissionFailed",
    "Subscriber",
    "SubscriberNotFound",
    "TaskIdMismatch",
    "StoredCallback",
    "apply_callback",
    "confirm_terminal",
    "create_subscriber",
    "get_job",
    "get_subscriber",
    "new_secret",
    "reconcile",
    "recover_deliveries",
    "remove_subscriber",
    "retry_delivery",
    "store_callback",
    "rotate_secret",
    "set_subscriber_enabled",
    "task_update_from_vendor",
]
