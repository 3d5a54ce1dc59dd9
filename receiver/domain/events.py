"""Domain events and their wire names: the one place that maps one to the other.

An event is named in the past tense and carries the task state right after the change
(:class:`receiver.domain.tasks.TaskState`). The webhook ``type`` of SPEC §2 is
``task.progress``, ``task.succeeded`` or ``task.failed``; :func:`webhook_body` is the body
that goes out for one event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

if TYPE_CHECKING:
    from receiver.domain.tasks import TaskState


@dataclass(frozen=True)
class DomainEvent:
    """Base of the events a task transition causes."""

    state: TaskState
    type: ClassVar[str] = ""


@dataclass(frozen=True)
class TaskProgressed(DomainEvent):
    """The task moved forward (status or progress) but is not finished."""

    type: ClassVar[str] = "task.progress"


@dataclass(frozen=True)
class TaskSucceeded(DomainEvent):
    """The task finished with SUCCEEDED; ``state.artifacts`` holds the video URL(s)."""

    type: ClassVar[str] = "task.succeeded"


@dataclass(frozen=True)
class TaskFailed(DomainEvent):
    """The task finished with FAILED or CANCELLED; ``state.error`` says why."""

    type: ClassVar[str] = "task.failed"


#: Operational event: a subscriber was disabled (410 Gone, or failing for too long); sent to
#: the other subscribers that asked for it (:mod:`receiver.delivery.operational`).
SUBSCRIBER_DISABLED = "subscriber.disabled"
#: Operational event: a test sent on request to one subscriber (``relay subscribers test``);
#: never stored, never subscribed to.
WEBHOOK_TEST = "webhook.test"

#: Every webhook event type a subscriber can ask for (a type, for request models).
EventType = Literal["task.progress", "task.succeeded", "task.failed", "subscriber.disabled"]
#: The same, as values.
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: The event types a task's transitions cause.
TASK_EVENT_TYPES: tuple[str, ...] = (TaskProgressed.type, TaskSucceeded.type, TaskFailed.type)
#: What a subscriber receives when it names no event types (SPEC §2: terminal events).
DEFAULT_EVENT_TYPES: tuple[str, ...] = (TaskSucceeded.type, TaskFailed.type)


def webhook_body(
    event_id: str,
    event: DomainEvent,
    *,
    job_id: str,
    model: str,
    metadata: dict[str, Any],
    task_id: str | None,
    now: datetime,
) -> str:
    """The webhook body of SPEC §2, serialised once (these exact bytes are signed and sent).

    Shape: ``{"type", "timestamp" (ISO-8601 UTC, ``Z``), "data": {"event_id", "job_id",
    "task_id", "model", "status", "progress" (0..1 or null), "progress_text", "artifacts"
    [{"url", …}], "error" (null or {"message", …}), "metadata", "sequence"}}``; compact JSON,
    non-ASCII kept as UTF-8.

    :param now: the time the event happened (aware UTC).
    """
    state = event.state
    body = {
        "type": event.type,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": {
            "event_id": event_id,
            "job_id": job_id,
            "task_id": task_id,
            "model": model,
            "status": state.status.value,
            "progress": state.progress,
            "progress_text": state.progress_text,
            "artifacts": state.artifacts,
            "error": state.error,
            "metadata": metadata,
            "sequence": state.sequence,
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
