"""The task state machine: pure, no I/O, no clock reads.

A job's task moves forward only (SPEC invariant 2)::

    SUBMITTING -> PENDING -> THROTTLED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
         \\-> SUBMIT_FAILED

Any forward step emits events; a callback that is behind, equal to, or after a terminal state is a
no-op that emits nothing. A status string we do not know is recorded and otherwise ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from receiver.domain.events import DomainEvent, TaskFailed, TaskProgressed, TaskSucceeded


class TaskStatus(StrEnum):
    """A job's status: ours (SUBMITTING, SUBMIT_FAILED) and the vendor's (useapi.net docs,
    task model: PENDING, RUNNING, THROTTLED still running; SUCCEEDED, FAILED terminal)."""

    SUBMITTING = "SUBMITTING"
    SUBMIT_FAILED = "SUBMIT_FAILED"
    PENDING = "PENDING"
    THROTTLED = "THROTTLED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED, CANCELLED, SUBMIT_FAILED: a terminal state never changes."""
        return self in _TERMINAL

    @property
    def rank(self) -> int:
        """Position in the forward order; callbacks may only raise it."""
        return _RANK[self]


_TERMINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SUBMIT_FAILED}
)
_RANK = {
    TaskStatus.SUBMITTING: 0,
    TaskStatus.PENDING: 1,
    TaskStatus.THROTTLED: 2,
    TaskStatus.RUNNING: 3,
    TaskStatus.SUCCEEDED: 9,
    TaskStatus.FAILED: 9,
    TaskStatus.CANCELLED: 9,
    TaskStatus.SUBMIT_FAILED: 9,
}
#: The statuses of a task not finished yet, in forward order (the tasks "in flight").
LIVE_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.SUBMITTING,
    TaskStatus.PENDING,
    TaskStatus.THROTTLED,
    TaskStatus.RUNNING,
)
#: Smallest rise of ``progress`` (a ratio) that makes a ``task.progress`` event without a status
#: change: finer steps are duplicates, so that one replyRef cannot fan out an event per post.
MIN_PROGRESS_STEP = 0.01
#: Float slack when comparing a rise with :data:`MIN_PROGRESS_STEP` (0.2 -> 0.21 is a step).
_STEP_SLACK = 1e-9
#: Vendor status strings a callback may carry (anything else is "unknown" and ignored).
VENDOR_STATUSES = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.THROTTLED,
        TaskStatus.RUNNING,
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
    }
)


@dataclass(frozen=True)
class TaskState:
    """What we know of one job's task.

    ``progress`` is a ratio 0..1 or None; ``artifacts`` is a list of JSON objects each with at
    least ``url``; ``error`` is None or ``{"message": str, ...}``; ``sequence`` is the number of
    events emitted so far for this job.
    """

    status: TaskStatus
    progress: float | None = None
    progress_text: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    sequence: int = 0


@dataclass(frozen=True)
class TaskUpdate:
    """One parsed callback: the vendor's raw ``status`` string and what came with it."""

    status: str | None
    progress: float | None = None
    progress_text: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None


class Outcome(StrEnum):
    """What a callback did to the task (``queued``: stored, not applied yet)."""

    QUEUED = "queued"
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    ALREADY_TERMINAL = "already_terminal"
    UNKNOWN_STATUS = "unknown_status"
    UNCONFIRMED = "unconfirmed"
    #: Applied to nothing: its taskId was bound to another job between its storing and its
    #: application (the door refuses that case with 403 when it can see it).
    TASK_ID_MISMATCH = "task_id_mismatch"


@dataclass(frozen=True)
class Transition:
    """The result of :func:`apply`: the new state, the events it causes (empty for a no-op)."""

    state: TaskState
    events: list[DomainEvent]
    outcome: Outcome

    @property
    def changed(self) -> bool:
        return self.outcome is Outcome.APPLIED


def parse_status(raw: str | None) -> TaskStatus | None:
    """The vendor status string as a :class:`TaskStatus`, or None if absent or unknown."""
    if raw is None:
        return None
    try:
        status = TaskStatus(raw.strip().upper())
    except ValueError:
        return None
    return status if status in VENDOR_STATUSES else None


def apply(state: TaskState, update: TaskUpdate) -> Transition:
    """Apply one callback to the task, forward only.

    :param state: the task as stored.
    :param update: the parsed callback.
    :returns: a :class:`Transition`; ``events`` holds zero or one event whose ``sequence`` is
        ``state.sequence + 1``. Without a status change, progress must rise by at least
        :data:`MIN_PROGRESS_STEP` (or reach 1) to count; a smaller rise is a duplicate.
    """
    if state.status.is_terminal:
        return Transition(state, [], Outcome.ALREADY_TERMINAL)
    new_status = parse_status(update.status)
    if new_status is None:
        return Transition(state, [], Outcome.UNKNOWN_STATUS)
    if new_status.rank < state.status.rank:
        return Transition(state, [], Outcome.STALE)

    sequence = state.sequence + 1
    if new_status.is_terminal:
        # The terminal state is the terminal callback's own, whatever arrived before it, so
        # that any order of the same callbacks ends in the same state.
        succeeded = new_status is TaskStatus.SUCCEEDED
        new_state = TaskState(
            status=new_status,
            progress=1.0 if succeeded else update.progress,
            progress_text=update.progress_text,
            artifacts=list(update.artifacts),
            error=None if succeeded else (update.error or {"message": new_status.value.lower()}),
            sequence=sequence,
        )
        event: DomainEvent = TaskSucceeded(new_state) if succeeded else TaskFailed(new_state)
        return Transition(new_state, [event], Outcome.APPLIED)

    old_progress = state.progress if state.progress is not None else -1.0
    new_progress = update.progress if update.progress is not None else state.progress
    moved = new_status.rank > state.status.rank or (
        new_progress is not None
        and new_progress > old_progress
        and (new_progress - old_progress >= MIN_PROGRESS_STEP - _STEP_SLACK or new_progress >= 1.0)
    )
    if not moved:
        return Transition(state, [], Outcome.DUPLICATE)
    if new_progress is not None and state.progress is not None:
        new_progress = max(new_progress, state.progress)
    new_state = replace(
        state,
        status=new_status,
        progress=new_progress,
        progress_text=update.progress_text or state.progress_text,
        sequence=sequence,
    )
    return Transition(new_state, [TaskProgressed(new_state)], Outcome.APPLIED)
