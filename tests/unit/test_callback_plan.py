"""The callback planner (receiver.domain.callbacks) and the webhook body
(receiver.domain.events.webhook_body): pure, no database, no clock."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest

import receiver.domain
from receiver.domain.callbacks import TaskBoundElsewhere, check_bound, plan_callback, state_of
from receiver.domain.events import TaskSucceeded, webhook_body
from receiver.domain.tasks import Outcome, TaskState, TaskStatus, TaskUpdate

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class FakeJob:
    """A job as the planner reads it (a stored job row has the same attributes)."""

    id: str = "job_1"
    model: str = "gen4turbo"
    metadata: dict[str, Any] = field(default_factory=lambda: {"order": 7})
    status: str = "PENDING"
    task_id: str | None = None
    progress: float | None = None
    progress_text: str | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    sequence: int = 0


def ids() -> Any:
    numbers = count(1)
    return lambda: f"msg_{next(numbers)}"


def test_a_forward_callback_binds_the_job_and_plans_one_event_with_its_body() -> None:
    plan = plan_callback(
        FakeJob(),
        TaskUpdate(status="RUNNING", progress=0.5, progress_text="half"),
        callback_task_id="t-1",
        confirmed=True,
        now=NOW,
        new_event_id=ids(),
    )
    assert plan.transition.outcome is Outcome.APPLIED
    assert plan.bind_task_id == "t-1"
    assert plan.keeps_body
    [event] = plan.events
    assert (event.id, event.type, event.sequence) == ("msg_1", "task.progress", 1)
    body = json.loads(event.payload)
    assert body["type"] == "task.progress"
    assert body["timestamp"] == "2026-11-30T12:00:00Z"
    assert body["data"]["task_id"] == "t-1"  # the taskId this very callback binds
    assert body["data"]["metadata"] == {"order": 7}
    assert body["data"]["progress"] == 0.5


def test_a_bound_job_keeps_its_task_id_and_is_not_bound_again() -> None:
    plan = plan_callback(
        FakeJob(task_id="t-1", status="RUNNING", sequence=2),
        TaskUpdate(status="SUCCEEDED", artifacts=[{"url": "https://cdn.example/v.mp4"}]),
        callback_task_id="t-1",
        confirmed=True,
        now=NOW,
        new_event_id=ids(),
    )
    assert plan.bind_task_id is None
    [event] = plan.events
    assert isinstance(event.event, TaskSucceeded)
    assert event.sequence == 3
    assert json.loads(event.payload)["data"]["artifacts"] == [{"url": "https://cdn.example/v.mp4"}]


@pytest.mark.parametrize("callback_task_id", [None, "", "t-2"])
def test_a_bound_job_refuses_a_callback_without_its_task_id(callback_task_id: str | None) -> None:
    with pytest.raises(TaskBoundElsewhere):
        plan_callback(
            FakeJob(task_id="t-1"),
            TaskUpdate(status="RUNNING"),
            callback_task_id=callback_task_id,
            confirmed=True,
            now=NOW,
            new_event_id=ids(),
        )


def test_check_bound_lets_an_unbound_job_take_any_task_id() -> None:
    check_bound(FakeJob(), None)
    check_bound(FakeJob(), "t-9")
    check_bound(FakeJob(task_id="t-1"), "t-1")


def test_an_unconfirmed_callback_changes_nothing_but_keeps_its_body() -> None:
    plan = plan_callback(
        FakeJob(task_id="t-1", status="RUNNING"),
        TaskUpdate(status="SUCCEEDED"),
        callback_task_id="t-1",
        confirmed=False,
        now=NOW,
        new_event_id=ids(),
    )
    assert plan.transition.outcome is Outcome.UNCONFIRMED
    assert plan.events == []
    assert plan.keeps_body


def test_a_duplicate_plans_no_event_and_keeps_no_body() -> None:
    def fail() -> str:
        raise AssertionError("no event id is asked for a no-op")

    plan = plan_callback(
        FakeJob(status="RUNNING", progress=0.5, task_id="t-1", sequence=1),
        TaskUpdate(status="RUNNING", progress=0.5),
        callback_task_id="t-1",
        confirmed=True,
        now=NOW,
        new_event_id=fail,
    )
    assert plan.transition.outcome is Outcome.DUPLICATE
    assert plan.events == []
    assert not plan.keeps_body


def test_state_of_copies_the_artifacts() -> None:
    job = FakeJob(artifacts=[{"url": "https://a"}])
    state = state_of(job)
    assert state.status is TaskStatus.PENDING
    assert state.artifacts == job.artifacts and state.artifacts is not job.artifacts


def test_webhook_body_is_compact_utf8_json_in_the_spec_shape() -> None:
    state = TaskState(TaskStatus.SUCCEEDED, progress=1.0, progress_text="fertig – ok", sequence=4)
    text = webhook_body(
        "msg_x",
        TaskSucceeded(state),
        job_id="job_1",
        model="gen4turbo",
        metadata={"k": "v"},
        task_id="t-1",
        now=NOW,
    )
    assert " " not in text.replace("fertig – ok", "")  # compact separators
    assert "–" in text  # not \u-escaped
    assert json.loads(text) == {
        "type": "task.succeeded",
        "timestamp": "2026-11-30T12:00:00Z",
        "data": {
            "event_id": "msg_x",
            "job_id": "job_1",
            "task_id": "t-1",
            "model": "gen4turbo",
            "status": "SUCCEEDED",
            "progress": 1.0,
            "progress_text": "fertig – ok",
            "artifacts": [],
            "error": None,
            "metadata": {"k": "v"},
            "sequence": 4,
        },
    }


def test_domain_imports_nothing_outside_itself() -> None:
    """domain/ is pure: the standard library and its own modules only."""
    allowed_ours = "receiver.domain"
    ours = ("receiver", "client", "simulator", "bench", "tests")
    folder = Path(receiver.domain.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in ours:
                    assert name.startswith(allowed_ours), f"{path.name} imports {name}"
                else:
                    assert top in {"__future__", *_stdlib()}, f"{path.name} imports {name}"


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names)
