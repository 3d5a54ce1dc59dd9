"""A delivery's status, defined once: the API, the dashboard, the CLI, the metrics and the
store take their lists from here (a task's statuses are :class:`receiver.domain.tasks.
TaskStatus`, the webhook event types :data:`receiver.domain.events.EVENT_TYPES`).
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """A delivery (one event to one subscriber): ``pending`` until it succeeds, is a dead
    letter (``failed``: retries exhausted or 410 Gone) or is ``cancelled`` (its subscriber was
    removed). A finished one may be queued again (pending) by an operator."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Every delivery status, in the order the API documents them.
DELIVERY_STATUSES: tuple[str, ...] = tuple(s.value for s in DeliveryStatus)
