"""Ordering and duplicates through the real app: for any interleaving, duplication and delay of
two tasks' callbacks (hypothesis), each task ends in the same state and each subscriber gets
exactly one terminal event for it.

The Flask test client posts to ``POST /callbacks/useapi`` over a real SQLite file; the checks
read the database the worker would deliver from (events and their deliveries).
"""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from receiver import create_app
from receiver.runtime import Runtime
from tests.conftest import JobFactory, subscribe, task_body
from tests.helpers import apply_for, job_columns, sql_column, sql_rows

VIDEO = {"url": "https://cdn.example/v.mp4", "assetId": "asset-1", "fileSize": "1234567"}
TERMINAL = ("task.succeeded", "task.failed")


def lifecycle(ref: str, task_uuid: str, steps: int, ending: str) -> list[dict[str, Any]]:
    """A task's callbacks in the vendor's order, shaped like the simulator's: THROTTLED first
    when there are three steps or more, ``progressRatio`` alternately a string and a number,
    then SUCCEEDED (progress "1", one video) or FAILED (where progress stopped, an error)."""
    bodies = []
    last: float | str | None = None
    for i in range(steps):
        ratio = round((i + 1) / (steps + 1), 2)
        last = f"{ratio:g}" if i % 2 == 0 else ratio
        status = "THROTTLED" if i == 0 and steps >= 3 else "RUNNING"
        bodies.append(
            task_body(
                ref,
                status,
                task_uuid=task_uuid,
                progressRatio=last,
                progressText=f"Generating ({ratio:.0%})",
            )
        )
    if ending == "SUCCEEDED":
        bodies.append(
            task_body(ref, "SUCCEEDED", task_uuid=task_uuid, progressRatio="1", artifacts=[VIDEO])
        )
    else:
        bodies.append(
            task_body(ref, "FAILED", task_uuid=task_uuid, progressRatio=last, error="no video")
        )
    return bodies


def expected_final(ending: str, steps: int) -> dict[str, Any]:
    """The state every ordering must end in: the terminal callback's own."""
    if ending == "SUCCEEDED":
        return {
            "status": "SUCCEEDED",
            "progress": 1.0,
            "progress_text": None,
            "artifacts": [VIDEO],
            "error": None,
        }
    last = round(steps / (steps + 1), 2) if steps else None
    return {
        "status": "FAILED",
        "progress": last,
        "progress_text": None,
        "artifacts": [],
        "error": {"message": "no video"},
    }


def final_state(engine: Engine, job_id: str) -> dict[str, Any]:
    return job_columns(engine, job_id, "status", "progress", "progress_text", "artifacts", "error")


def events_of(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    rows = sql_rows(
        engine,
        "SELECT id, type, sequence, payload FROM events WHERE job_id = :j ORDER BY sequence",
        j=job_id,
    )
    return [
        {"id": r.id, "type": r.type, "sequence": r.sequence, "data": json.loads(r.payload)["data"]}
        for r in rows
    ]


def deliveries_of(engine: Engine, event_id: str) -> list[str]:
    return sql_column(
        engine, "SELECT subscriber_id FROM deliveries WHERE event_id = :e", e=event_id
    )


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, Any]:
    """Two tasks' shapes and the order their callbacks (with some repeated) arrive in: a
    permutation of the merged list, so each callback can be delayed past any other."""
    shapes = {
        "a": (draw(st.integers(0, 4)), draw(st.sampled_from(["SUCCEEDED", "FAILED"]))),
        "b": (draw(st.integers(0, 4)), draw(st.sampled_from(["SUCCEEDED", "FAILED"]))),
    }
    items = [(name, i) for name, (steps, _) in shapes.items() for i in range(steps + 1)]
    repeats = draw(st.lists(st.sampled_from(items), max_size=5))
    order = draw(st.permutations(items + repeats))
    return {"shapes": shapes, "order": order}


def test_any_interleaving_ends_the_same_with_one_terminal_event_per_subscriber(
    sqlite_runtime: Runtime,
) -> None:
    engine = sqlite_runtime.engine
    app = create_app(runtime=sqlite_runtime)
    app.config["TESTING"] = True
    client: FlaskClient = app.test_client()
    make_job = JobFactory(sqlite_runtime)
    everything = subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    terminal_only = subscribe(engine, None)  # the default: task.succeeded and task.failed
    progress_only = subscribe(engine, ["task.progress"])
    counter = iter(range(10**6))

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(schedules())
    def check(schedule: dict[str, Any]) -> None:
        jobs = {}
        bodies = {}
        for name, (steps, ending) in schedule["shapes"].items():
            job, ref = make_job()
            jobs[name] = job
            bodies[name] = lifecycle(ref, f"{name}-{next(counter)}", steps, ending)
        for name, index in schedule["order"]:
            r = client.post("/callbacks/useapi", data=json.dumps(bodies[name][index]))
            assert r.status_code == 202, r.json
        assert len(apply_for(client)) == len(schedule["order"])  # each stored one applies

        for name, (steps, ending) in schedule["shapes"].items():
            job_id = jobs[name].id
            assert final_state(engine, job_id) == expected_final(ending, steps)
            events = events_of(engine, job_id)
            assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
            terminal = [e for e in events if e["type"] in TERMINAL]
            assert len(terminal) == 1 and terminal[0] is events[-1]
            data = terminal[0]["data"]
            want = expected_final(ending, steps)
            assert (data["status"], data["artifacts"], data["error"]) == (
                want["status"],
                want["artifacts"],
                want["error"],
            )
            assert sorted(deliveries_of(engine, terminal[0]["id"])) == sorted(
                [everything, terminal_only]
            )
            progress = [e["data"]["progress"] for e in events[:-1]]
            assert progress == sorted(progress) and None not in progress
            for event in events[:-1]:
                assert sorted(deliveries_of(engine, event["id"])) == sorted(
                    [everything, progress_only]
                )

    check()
