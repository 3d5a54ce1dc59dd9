"""The task state machine (receiver.domain.tasks.apply), pure and exhaustive: any order, any
duplication of a task's callbacks ends in the same state with exactly one terminal event."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.domain.tasks import (
    Outcome,
    TaskState,
    TaskStatus,
    TaskUpdate,
    apply,
    parse_status,
)

TERMINAL_EVENTS = {"task.succeeded", "task.failed"}
VIDEO = [{"url": "https://cdn.example/v.mp4", "assetId": "a-1"}]


def lifecycle(steps: int, ending: str) -> list[TaskUpdate]:
    """A task's callbacks in the order the vendor lives them: THROTTLED first when there are
    three steps or more, RUNNING with rising progress, then the terminal one (as the
    simulator sends them: a SUCCEEDED with progress 1, a FAILED where the progress stopped)."""
    updates = []
    last = None
    for i in range(steps):
        last = (i + 1) / (steps + 1)
        status = "THROTTLED" if i == 0 and steps >= 3 else "RUNNING"
        updates.append(TaskUpdate(status=status, progress=last, progress_text=f"step {i}"))
    if ending == "SUCCEEDED":
        updates.append(TaskUpdate(status="SUCCEEDED", progress=1.0, artifacts=VIDEO))
    elif ending == "FAILED":
        updates.append(TaskUpdate(status="FAILED", progress=last, error={"message": "moderated"}))
    else:
        updates.append(TaskUpdate(status=ending, progress=last))
    return updates


def run(updates: list[TaskUpdate]) -> tuple[TaskState, list[Any], list[Outcome]]:
    state = TaskState(status=TaskStatus.PENDING)
    events: list[Any] = []
    outcomes: list[Outcome] = []
    for update in updates:
        transition = apply(state, update)
        state = transition.state
        events.extend(transition.events)
        outcomes.append(transition.outcome)
    return state, events, outcomes


def final_view(state: TaskState) -> tuple[Any, ...]:
    """What subscribers and the API see of a finished task (``sequence`` counts the events
    emitted on the way, so it depends on how many progress posts came before the end)."""
    return (state.status, state.progress, state.progress_text, state.artifacts, state.error)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[TaskUpdate], list[TaskUpdate]]:
    """(the natural sequence, the same callbacks shuffled with some repeated)."""
    steps = draw(st.integers(0, 5))
    ending = draw(st.sampled_from(["SUCCEEDED", "FAILED", "CANCELLED"]))
    natural = lifecycle(steps, ending)
    repeats = draw(st.lists(st.sampled_from(natural), max_size=6))
    arrived = draw(st.permutations(natural + repeats))
    return natural, arrived


@settings(max_examples=600, deadline=None)
@given(deliveries())
def test_any_order_and_duplication_ends_in_the_same_state(
    case: tuple[list[TaskUpdate], list[TaskUpdate]],
) -> None:
    natural, arrived = case
    expected, natural_events, _ = run(natural)
    final, events, outcomes = run(arrived)

    assert final_view(final) == final_view(expected)
    assert final.status.is_terminal
    terminal = [e for e in events if e.type in TERMINAL_EVENTS]
    assert len(terminal) == 1
    assert terminal[-1] is events[-1]  # nothing is emitted after the end
    assert final_view(terminal[0].state) == final_view(expected)
    # sequence numbers: 1, 2, 3 … with no gap and no repeat
    assert [e.state.sequence for e in events] == list(range(1, len(events) + 1))
    assert final.sequence == len(events)
    # forward only: status rank and progress never go back across emitted events
    ranks = [e.state.status.rank for e in events]
    assert ranks == sorted(ranks)
    progress = [e.state.progress for e in events if e.state.progress is not None]
    assert progress == sorted(progress)
    # every callback after the terminal one is a no-op
    state, ended = TaskState(status=TaskStatus.PENDING), False
    for update in arrived:
        transition = apply(state, update)
        if ended:
            assert transition.outcome is Outcome.ALREADY_TERMINAL and not transition.events
        ended = ended or transition.state.status.is_terminal
        state = transition.state
    assert outcomes.count(Outcome.APPLIED) == len(events) <= len(natural_events)


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_a_terminal_state_never_changes(status: str) -> None:
    state = run(lifecycle(2, status))[0]
    for update in lifecycle(3, "SUCCEEDED") + lifecycle(3, "FAILED") + [TaskUpdate("WHATEVER")]:
        transition = apply(state, update)
        assert transition.outcome is Outcome.ALREADY_TERMINAL
        assert transition.events == [] and transition.state == state


def test_terminal_state_comes_from_the_terminal_callback_alone() -> None:
    """A FAILED that overtook its progress posts and one that followed them carry the same
    progress, text and error: the terminal callback's own."""
    failed = TaskUpdate(status="FAILED", progress=0.4, error={"message": "boom"})
    direct = apply(TaskState(TaskStatus.PENDING), failed).state
    after_progress = run([TaskUpdate("RUNNING", progress=0.3, progress_text="almost"), failed])[0]
    assert final_view(direct) == final_view(after_progress)
    assert (direct.progress, direct.progress_text, direct.error) == (0.4, None, {"message": "boom"})


def test_succeeded_without_a_ratio_reports_full_progress() -> None:
    state = apply(TaskState(TaskStatus.RUNNING, progress=0.3), TaskUpdate("SUCCEEDED")).state
    assert state.progress == 1.0 and state.error is None


@pytest.mark.parametrize(
    ("current", "update", "outcome"),
    [
        (TaskState(TaskStatus.RUNNING, progress=0.5), TaskUpdate("PENDING"), Outcome.STALE),
        (TaskState(TaskStatus.RUNNING, progress=0.5), TaskUpdate("THROTTLED"), Outcome.STALE),
        (
            TaskState(TaskStatus.RUNNING, progress=0.5),
            TaskUpdate("RUNNING", progress=0.5),
            Outcome.DUPLICATE,
        ),
        (
            TaskState(TaskStatus.RUNNING, progress=0.5),
            TaskUpdate("RUNNING", progress=0.2),
            Outcome.DUPLICATE,
        ),
        (TaskState(TaskStatus.RUNNING), TaskUpdate(None), Outcome.UNKNOWN_STATUS),
        (TaskState(TaskStatus.RUNNING), TaskUpdate("DONE"), Outcome.UNKNOWN_STATUS),
        (TaskState(TaskStatus.RUNNING), TaskUpdate("SUBMIT_FAILED"), Outcome.UNKNOWN_STATUS),
        (TaskState(TaskStatus.SUBMITTING), TaskUpdate("SUBMITTING"), Outcome.UNKNOWN_STATUS),
        (TaskState(TaskStatus.PENDING), TaskUpdate(" running "), Outcome.APPLIED),
        (TaskState(TaskStatus.SUBMIT_FAILED), TaskUpdate("RUNNING"), Outcome.ALREADY_TERMINAL),
    ],
)
def test_no_ops_emit_nothing_and_keep_the_state(
    current: TaskState, update: TaskUpdate, outcome: Outcome
) -> None:
    transition = apply(current, update)
    assert transition.outcome is outcome
    if outcome is not Outcome.APPLIED:
        assert transition.events == [] and transition.state == current
    else:
        assert len(transition.events) == 1


@given(st.text(max_size=12))
def test_parse_status_accepts_only_vendor_statuses(raw: str) -> None:
    status = parse_status(raw)
    if status is not None:
        assert status.value == raw.strip().upper()
        assert status not in (TaskStatus.SUBMITTING, TaskStatus.SUBMIT_FAILED)
