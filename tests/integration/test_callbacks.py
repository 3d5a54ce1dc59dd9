"""POST /callbacks/useapi through the Flask test client over a real database file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from client import ReplyRefSigner
from tests.conftest import JobFactory, subscribe, table_counts, task_body
from tests.helpers import post_and_apply as post


def events_of(engine: Engine, job_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT payload FROM events WHERE job_id = :j ORDER BY sequence"), {"j": job_id}
        )
        return [json.loads(r[0]) for r in rows]


def test_progress_then_success_writes_state_events_and_deliveries(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    sub_all = subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    subscribe(engine)  # default: terminal events only
    job, ref = make_job(metadata={"order": 42})

    r1 = post(client, task_body(ref, "RUNNING", progressRatio="0.4"))
    assert r1.status_code == 202, r1.json
    assert r1.outcome == "applied"
    done = task_body(
        ref,
        "SUCCEEDED",
        progressRatio="1",
        artifacts=[{"url": "https://cdn.example/v.mp4", "fileSize": "123", "extra": 1}],
    )
    r2 = post(client, done)
    assert r2.status_code == 202 and r2.outcome == "applied"

    events = events_of(engine, job.id)
    assert [e["type"] for e in events] == ["task.progress", "task.succeeded"]
    assert [e["data"]["sequence"] for e in events] == [1, 2]
    assert events[0]["data"]["progress"] == 0.4
    final = events[1]["data"]
    assert final["artifacts"][0]["url"] == "https://cdn.example/v.mp4"
    assert final["metadata"] == {"order": 42}
    assert final["task_id"] == done["taskId"] and final["job_id"] == job.id
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT subscriber_id FROM deliveries")).all()
        status = conn.execute(text("SELECT status, task_id FROM jobs")).one()
        kept = conn.execute(text("SELECT body FROM callbacks ORDER BY id DESC")).first()
    # progress goes to the opted-in subscriber only; the terminal event to both
    assert sorted(r[0] for r in rows).count(sub_all) == 2 and len(rows) == 3
    assert tuple(status) == ("SUCCEEDED", done["taskId"])
    body = kept[0] if isinstance(kept[0], dict) else json.loads(kept[0])
    assert body["someNewVendorField"] == {"kept": True}


def test_duplicate_and_late_callbacks_are_no_ops(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    job, ref = make_job()
    assert (
        post(
            client, task_body(ref, "SUCCEEDED", artifacts=[{"url": "https://x/v.mp4"}])
        ).status_code
        == 202
    )
    before = table_counts(engine)
    for late in (
        task_body(ref, "SUCCEEDED", artifacts=[{"url": "https://x/v.mp4"}]),
        task_body(ref, "RUNNING", progressRatio=0.5),
        task_body(ref, "FAILED", error="late failure"),
    ):
        r = post(client, late)
        assert r.status_code == 202
        assert r.outcome == "already_terminal"
    after = table_counts(engine)
    assert after["events"] == before["events"] and after["deliveries"] == before["deliveries"]
    assert after["callbacks"] == before["callbacks"] + 3  # recorded, nothing emitted


def test_progress_only_moves_forward(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    subscribe(engine, ["task.progress"])
    job, ref = make_job()
    outcomes = [
        post(client, task_body(ref, status, progressRatio=ratio)).outcome
        for status, ratio in [
            ("RUNNING", 0.5),
            ("RUNNING", "0.5"),  # same progress as a string: duplicate
            ("RUNNING", 0.3),  # behind: duplicate
            ("PENDING", None),  # behind: stale
            ("RUNNING", 0.7),
            ("SOMETHING_NEW", 0.9),
        ]
    ]
    assert outcomes == ["applied", "duplicate", "duplicate", "stale", "applied", "unknown_status"]
    assert [e["data"]["progress"] for e in events_of(engine, job.id)] == [0.5, 0.7]


@pytest.mark.parametrize(
    "ref_kind",
    ["missing", "garbage", "wrong_key", "tampered", "not_a_string"],
)
def test_forged_reply_ref_is_refused_and_changes_nothing(
    client: FlaskClient, engine: Engine, make_job: JobFactory, ref_kind: str
) -> None:
    subscribe(engine)
    job, ref = make_job()
    forged: Any = {
        "missing": None,
        "garbage": "not-a-token",
        "wrong_key": ReplyRefSigner(["another-secret-key-000000000000"]).sign(job.id),
        "tampered": ref[:-3] + ("AAA" if not ref.endswith("AAA") else "BBB"),
        "not_a_string": 12345,
    }[ref_kind]
    before = table_counts(engine)
    body = task_body(forged, "SUCCEEDED", artifacts=[{"url": "https://evil.example/x.mp4"}])
    if forged is None:
        body.pop("replyRef", None)
    r = post(client, body)
    assert r.status_code == 401
    assert r.json["error"]["code"].startswith("reply_ref_")
    assert table_counts(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM jobs")).scalar_one() == "SUBMITTING"
        refused = conn.execute(text("SELECT reason, body_sha256 FROM refused_callbacks")).all()
    assert len(refused) == 1 and len(refused[0][1]) == 64


def test_valid_ref_with_another_task_id_is_forbidden(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job(task_id="user:1-runwayml:a-task:bound")
    before = table_counts(engine)
    r = post(client, task_body(ref, "SUCCEEDED", task_uuid="other"))
    assert r.status_code == 403
    assert r.json["error"]["code"] == "task_id_mismatch"
    assert table_counts(engine) == before


def test_first_callback_binds_the_task_id(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job()
    assert post(client, task_body(ref, "RUNNING", task_uuid="first")).status_code == 202
    r = post(client, task_body(ref, "SUCCEEDED", task_uuid="second"))
    assert r.status_code == 403
    with engine.connect() as conn:
        assert conn.execute(text("SELECT task_id FROM jobs")).scalar_one().endswith("task:first")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty body"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (b'{"a": NaN}', "NaN"),
        (b"[" * 5000 + b"]" * 5000, ""),
        (b'{"a": ' + b"9" * 5000 + b"}", ""),
    ],
)
def test_bad_bodies_get_400_and_change_nothing(
    client: FlaskClient, engine: Engine, raw: bytes, fragment: str
) -> None:
    before = table_counts(engine)
    r = post(client, raw)
    assert r.status_code == 400
    assert fragment in r.json["error"]["message"]
    assert table_counts(engine) == before


def test_too_large_body_gets_413(client: FlaskClient, engine: Engine, make_job: JobFactory) -> None:
    job, ref = make_job()
    body = task_body(ref, "RUNNING", padding="x" * 300_000)
    r = post(client, body)
    assert r.status_code == 413
    assert r.json["error"]["code"] == "request_entity_too_large"
    assert table_counts(engine)["callbacks"] == 0


def test_missing_content_type_is_accepted(client: FlaskClient, make_job: JobFactory) -> None:
    job, ref = make_job()
    r = client.post("/callbacks/useapi", data=json.dumps(task_body(ref, "RUNNING")))
    assert r.status_code == 202


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
