"""What one verified callback causes, worked out without I/O: the task's transition, whether
the callback binds its job to a vendor taskId, and the events with their webhook bodies.

The use case (:mod:`receiver.services.callbacks`) reads the job, asks :func:`plan_callback`,
and writes what the plan says in one transaction; if the job changed in between, it asks again
with the job as it is now. Nothing here reads a clock, a database or a random source: ``now``
and the event ids come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from receiver.domain.events import DomainEvent, webhook_body
from receiver.domain.tasks import Outcome, TaskState, TaskStatus, TaskUpdate, Transition, apply


class JobFacts(Protocol):
    """What the planner reads of a job (a stored job row has these attributes)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def status(self) -> str: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def progress(self) -> float | None: ...
    @property
    def progress_text(self) -> str | None: ...
    @property
    def artifacts(self) -> list[dict[str, Any]]: ...
    @property
    def error(self) -> dict[str, Any] | None: ...
    @property
    def sequence(self) -> int: ...


class TaskBoundElsewhere(ValueError):
    """The job is bound to a vendor taskId and the callback carries another one (or none)."""


def state_of(job: JobFacts) -> TaskState:
    """The job's task as a :class:`TaskState`."""
    return TaskState(
        status=TaskStatus(job.status),
        progress=job.progress,
        progress_text=job.progress_text,
        artifacts=list(job.artifacts),
        error=job.error,
        sequence=job.sequence,
    )


def check_bound(job: JobFacts, callback_task_id: str | None) -> None:
    """A job bound to a vendor task stays bound: once bound, a callback must carry that same
    taskId (absent or another one is refused), so a replyRef alone cannot move a bound job.

    :raises TaskBoundElsewhere: the job is bound and ``callback_task_id`` is absent or differs.
    """
    check_task_id(job.task_id, callback_task_id)


def check_task_id(bound_task_id: str | None, callback_task_id: str | None) -> None:
    """:func:`check_bound` from the taskId the job is bound to (None: not bound).

    :raises TaskBoundElsewhere: bound, and ``callback_task_id`` is absent or differs.
    """
    if not bound_task_id:
        return
    if not callback_task_id:
        raise TaskBoundElsewhere("this job is bound to a task; a callback must carry its taskId")
    if callback_task_id != bound_task_id:
        raise TaskBoundElsewhere("this replyRef belongs to another task")


@dataclass(frozen=True)
class PlannedEvent:
    """One event a callback causes: its id, the domain event and its webhook body (the exact
    bytes, as text, that are signed and sent)."""

    id: str
    event: DomainEvent
    payload: str

    @property
    def type(self) -> str:
        """The webhook event type (``task.progress``, …)."""
        return self.event.type

    @property
    def sequence(self) -> int:
        """The event's number among its job's events (1, 2, …)."""
        return self.event.state.sequence


@dataclass(frozen=True)
class CallbackPlan:
    """What a callback does to its job.

    ``transition`` is the task's (a no-op for a duplicate, stale, post-terminal, unknown-status
    or unconfirmed callback); ``bind_task_id`` is the vendor taskId this callback binds an
    unbound job to (else None); ``events`` the events to write, in order.
    """

    transition: Transition
    bind_task_id: str | None
    events: list[PlannedEvent]

    @property
    def keeps_body(self) -> bool:
        """Whether the callback's body is worth storing: it moved the task, or it is kept
        unconfirmed for ``relay reconcile`` to settle."""
        return self.transition.changed or self.transition.outcome is Outcome.UNCONFIRMED


def plan_callback(
    job: JobFacts,
    update: TaskUpdate,
    *,
    callback_task_id: str | None,
    confirmed: bool,
    now: datetime,
    new_event_id: Callable[[], str],
) -> CallbackPlan:
    """Work out what a callback does to ``job``.

    :param update: the callback, parsed.
    :param callback_task_id: the taskId the callback carries, or None.
    :param confirmed: False when the vendor could not confirm a terminal status: the plan is
        then a no-op with outcome ``unconfirmed``.
    :param now: the time of receipt (aware UTC): the events' timestamp.
    :param new_event_id: gives one fresh event id per call.
    :raises TaskBoundElsewhere: see :func:`check_bound`.
    """
    check_bound(job, callback_task_id)
    state = state_of(job)
    transition = apply(state, update) if confirmed else Transition(state, [], Outcome.UNCONFIRMED)
    bind = callback_task_id if callback_task_id and not job.task_id else None
    task_id = job.task_id or callback_task_id
    planned: list[PlannedEvent] = []
    if transition.changed:
        for event in transition.events:
            event_id = new_event_id()
            body = webhook_body(
                event_id,
                event,
                job_id=job.id,
                model=job.model,
                metadata=job.metadata,
                task_id=task_id,
                now=now,
            )
            planned.append(PlannedEvent(event_id, event, body))
    return CallbackPlan(transition, bind, planned)
