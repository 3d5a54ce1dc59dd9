"""Hostile callbacks on ``POST /callbacks/useapi``: forged, expired, re-keyed, malformed,
oversized, for unknown jobs, and fuzzed with hypothesis.

Everything goes through the real Flask app over a real database (a SQLite file; the
parametrised tests run on PostgreSQL too). Tokens are made the way an attacker or an old
deployment would make them; the receiver itself is never patched.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from sqlalchemy import Engine, text

from client import ReplyRefSigner
from client.replyref import ReplyRefInvalid
from receiver import create_app
from receiver.clock import utcnow
from receiver.runtime import Runtime, build_runtime
from tests.conftest import SECRET, JobFactory, make_settings, subscribe, table_counts, task_body
from tests.helpers import apply_for, job_columns, sql_column, sql_rows, sql_value
from tests.helpers import post_and_apply as post

WRONG_KEY = "an-attackers-guess-at-the-key-0000"
#: The salt ReplyRefSigner signs with by default (read from its signature, not copied).
REPLY_REF_SALT: str = inspect.signature(ReplyRefSigner).parameters["salt"].default
DAY = timedelta(days=1)
TERMINAL_TYPES = ("task.succeeded", "task.failed")

FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


# -- helpers --------------------------------------------------------------------------------


def sign_at(keys: list[str], job_id: str, when: datetime) -> str:
    """A replyRef for ``job_id`` signed with ``keys`` (first signs) as if at ``when``.

    itsdangerous dates a token with ``TimestampSigner.get_timestamp()``; this signer's clock is
    fixed at ``when``. The payload is ReplyRefSigner's documented ``{"j": job_id}``; the test
    ``test_sign_at_makes_tokens_the_receiver_accepts`` proves the two agree.
    """
    stamp = int(when.timestamp())

    class SignedAt(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    serializer = URLSafeTimedSerializer(list(reversed(keys)), salt=REPLY_REF_SALT, signer=SignedAt)
    return serializer.dumps({"j": job_id})


def with_job_id(token: str, job_id: str) -> str:
    """``token`` with the job id in its payload replaced and its timestamp and signature kept:
    what an attacker who saw one replyRef would try for another job."""
    payload, stamp, signature = token.rsplit(".", 2)
    claims = json.loads(base64_decode(payload))
    claims["j"] = job_id
    new_payload = base64_encode(json.dumps(claims, separators=(",", ":"))).decode()
    return f"{new_payload}.{stamp}.{signature}"


def job_row(engine: Engine, job_id: str) -> dict[str, Any]:
    return job_columns(
        engine, job_id, "status", "task_id", "progress", "artifacts", "sequence", "last_callback_at"
    )


def snapshot(engine: Engine) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Everything a callback may change: row counts and every job's state."""
    jobs = sql_rows(
        engine,
        "SELECT id, status, task_id, progress, progress_text, sequence, updated_at, "
        "last_callback_at FROM jobs ORDER BY id",
    )
    return table_counts(engine), [tuple(r) for r in jobs]


def refused(engine: Engine) -> list[dict[str, Any]]:
    rows = sql_rows(engine, "SELECT * FROM refused_callbacks ORDER BY id")
    return [dict(r._mapping) for r in rows]


_FUZZ_STATE = text(
    "SELECT (SELECT count(*) FROM callbacks), (SELECT count(*) FROM events), "
    "(SELECT count(*) FROM deliveries), (SELECT coalesce(max(id), 0) FROM refused_callbacks), "
    "j.id, j.status, j.task_id, j.progress, j.sequence, j.updated_at, j.last_callback_at "
    "FROM jobs j ORDER BY j.id"
)


def fuzz_state(engine: Engine) -> tuple[list[tuple[Any, ...]], int]:
    """One query for the fuzz loops: (every job's state with the row counts, the id of the
    newest refusal)."""
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(_FUZZ_STATE)]
    return [r[:3] + r[4:] for r in rows], rows[0][3]


@pytest.fixture
def sqlite_client(sqlite_runtime: Runtime) -> FlaskClient:
    app = create_app(runtime=sqlite_runtime)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def sqlite_engine(sqlite_runtime: Runtime) -> Engine:
    return sqlite_runtime.engine


@pytest.fixture
def sqlite_job(sqlite_runtime: Runtime) -> JobFactory:
    """Jobs on the SQLite file only: for the many small parametrised cases (the PostgreSQL
    pass of storage-sensitive input is ``test_input_postgres_cannot_store_is_400``)."""
    return JobFactory(sqlite_runtime)


def app_with(database_url: str, **overrides: Any) -> tuple[Flask, Runtime]:
    """A second app on the same database with other settings (e.g. another key list): what a
    restart with a new configuration gives."""
    rt = build_runtime(make_settings(database_url, **overrides))
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    return app, rt


# -- authentication: forged, tampered, expired, rotated, unknown ----------------------------


def test_sign_at_makes_tokens_the_receiver_accepts(
    client: FlaskClient, make_job: JobFactory
) -> None:
    """The helper below is only as good as its agreement with the receiver's own format."""
    job, _ = make_job()
    token = sign_at([SECRET], job.id, utcnow())
    r = post(client, task_body(token, "RUNNING", progressRatio=0.2))
    assert r.status_code == 202, r.json
    assert r.json["job_id"] == job.id


@pytest.mark.parametrize("forgery", ["wrong_key", "changed_job_id", "other_salt", "unsigned"])
def test_forged_succeeded_for_a_live_task_is_refused_and_emits_nothing(
    client: FlaskClient, engine: Engine, make_job: JobFactory, forgery: str
) -> None:
    """The attack of the issue: a SUCCEEDED with a malicious video URL for a task that is
    running, with a replyRef re-signed under a wrong key or with its job id changed."""
    subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    live, ref = make_job()
    other, other_ref = make_job()
    assert post(client, task_body(ref, "RUNNING", progressRatio=0.3)).status_code == 202
    before_row = job_row(engine, live.id)
    before = table_counts(engine)
    token = {
        "wrong_key": ReplyRefSigner([WRONG_KEY]).sign(live.id),
        # the other job's genuine token, re-pointed at the live job
        "changed_job_id": with_job_id(other_ref, live.id),
        "other_salt": URLSafeTimedSerializer(SECRET, salt="another-use").dumps({"j": live.id}),
        "unsigned": base64_encode(json.dumps({"j": live.id})).decode() + ".AAAAAA.AAAAAAAA",
    }[forgery]
    forged = task_body(
        token,
        "SUCCEEDED",
        progressRatio="1",
        artifacts=[{"url": "https://evil.example/malware.mp4"}],
    )
    r = post(client, forged)

    assert r.status_code == 401, r.json
    assert r.json["error"]["code"] == "reply_ref_invalid"
    assert "evil" not in r.get_data(as_text=True)
    assert job_row(engine, live.id) == before_row  # still RUNNING, no artifacts
    assert table_counts(engine) == before  # no callback, event or delivery written
    log = refused(engine)
    assert [e["reason"] for e in log] == ["reply_ref_invalid"]
    assert log[0]["body_sha256"] == hashlib.sha256(json.dumps(forged).encode()).hexdigest()
    assert log[0]["job_id"] is None  # an unverified claim names no job

    # the genuine completion still goes through, once
    real = task_body(ref, "SUCCEEDED", progressRatio="1", artifacts=[{"url": "https://cdn/v.mp4"}])
    assert post(client, real).outcome == "applied"
    assert job_row(engine, live.id)["artifacts"] == [{"url": "https://cdn/v.mp4"}]
    assert job_row(engine, other.id)["status"] == "SUBMITTING"


def test_changed_job_id_of_a_genuine_token_cannot_reach_another_job(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    first, ref = make_job()
    second, _ = make_job()
    tampered = with_job_id(ref, second.id)
    assert tampered != ref
    r = post(client, task_body(tampered, "FAILED", error="forged"))
    assert r.status_code == 401
    assert job_row(engine, second.id)["status"] == "SUBMITTING"
    assert job_row(engine, first.id)["status"] == "SUBMITTING"


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        (None, "reply_ref_missing"),
        ("", "reply_ref_invalid"),
        ("not a token at all", "reply_ref_invalid"),
        ("a" * 1025, "reply_ref_invalid"),
        ("eyJqIjoiam9iIn0.ZZZZZZ.c2lnbmF0dXJl", "reply_ref_invalid"),
        (12345, "reply_ref_invalid"),
        (["a", "b"], "reply_ref_invalid"),
        ({"j": "job"}, "reply_ref_invalid"),
        (True, "reply_ref_invalid"),
    ],
)
def test_malformed_reply_refs_are_401_and_logged(
    sqlite_client: FlaskClient, sqlite_engine: Engine, sqlite_job: JobFactory, ref: Any, reason: str
) -> None:
    sqlite_job()
    before = snapshot(sqlite_engine)
    body = task_body(None, "SUCCEEDED", artifacts=[{"url": "https://evil.example/x.mp4"}])
    if ref is not None:
        body["replyRef"] = ref
    r = post(sqlite_client, body)
    assert r.status_code == 401
    assert r.json["error"]["code"] == reason
    assert snapshot(sqlite_engine) == before
    assert [e["reason"] for e in refused(sqlite_engine)] == [reason]


def test_expired_reply_ref_default_max_age_is_7_days(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """What a task can take plus a margin: a week (issue 16), not a month."""
    job, _ = make_job()
    now = utcnow()
    young = sign_at([SECRET], job.id, now - 6 * DAY)
    old = sign_at([SECRET], job.id, now - 8 * DAY)

    before = snapshot(engine)
    r = post(client, task_body(old, "SUCCEEDED", artifacts=[{"url": "https://x/v.mp4"}]))
    assert r.status_code == 401
    assert r.json["error"]["code"] == "reply_ref_expired"
    assert snapshot(engine) == before
    assert [e["reason"] for e in refused(engine)] == ["reply_ref_expired"]

    assert post(client, task_body(young, "RUNNING", progressRatio=0.5)).status_code == 202
    assert job_row(engine, job.id)["status"] == "RUNNING"


@pytest.mark.parametrize("settings_overrides", [{"reply_ref_max_age": 3600}])
def test_reply_ref_max_age_is_configurable(client: FlaskClient, make_job: JobFactory) -> None:
    job, _ = make_job()
    now = utcnow()
    stale = sign_at([SECRET], job.id, now - timedelta(hours=2))
    fresh = sign_at([SECRET], job.id, now - timedelta(minutes=50))
    r = post(client, task_body(stale, "RUNNING"))
    assert (r.status_code, r.json["error"]["code"]) == (401, "reply_ref_expired")
    assert post(client, task_body(fresh, "RUNNING")).status_code == 202


def test_reply_ref_dated_in_the_future_is_refused(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, _ = make_job()
    future = sign_at([SECRET], job.id, utcnow() + timedelta(hours=1))
    r = post(client, task_body(future, "RUNNING"))
    assert r.status_code == 401
    assert job_row(engine, job.id)["status"] == "SUBMITTING"


def test_key_rotation_keeps_in_flight_tasks_until_the_old_key_is_removed(
    database_url: str, make_job: JobFactory
) -> None:
    """SECRET_KEY=NEW,OLD after a restart: tokens of tasks started under OLD still verify;
    new tokens are signed with NEW; once OLD leaves the list, OLD's tokens are refused."""
    old_key, new_key = SECRET, "the-new-key-after-rotation-0123"
    job, old_token = make_job()  # signed by the running app's single (old) key
    assert ReplyRefSigner([old_key]).verify(old_token, max_age=60).job_id == job.id

    rotated, rotated_rt = app_with(database_url, secret_key=[new_key, old_key])
    removed, removed_rt = app_with(database_url, secret_key=[new_key])
    try:
        # in flight across the restart: progress under the rotated list
        r = post(rotated.test_client(), task_body(old_token, "RUNNING", progressRatio=0.5))
        assert r.status_code == 202 and r.outcome == "applied"

        # the first key signs: a new task's token verifies with NEW alone, not with OLD
        fresh = rotated_rt.signer.sign("job_new")
        assert ReplyRefSigner([new_key]).verify(fresh, max_age=60).job_id == "job_new"
        with pytest.raises(ReplyRefInvalid, match="does not verify"):
            ReplyRefSigner([old_key]).verify(fresh, max_age=60)

        # OLD removed: its tokens are now forged as far as the receiver can tell
        r = post(removed.test_client(), task_body(old_token, "SUCCEEDED"))
        assert r.status_code == 401 and r.json["error"]["code"] == "reply_ref_invalid"
        assert job_row(rotated_rt.engine, job.id)["status"] == "RUNNING"

        # … while a token signed under NEW works on the app that only knows NEW
        new_job, _ = make_job()
        token = sign_at([new_key], new_job.id, utcnow())
        r = post(removed.test_client(), task_body(token, "RUNNING", task_uuid="new"))
        assert r.status_code == 202, r.json
    finally:
        rotated_rt.engine.dispose()
        removed_rt.engine.dispose()


def test_valid_ref_for_an_unknown_job_is_404_and_changes_nothing(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """A token signed with our key for a job this database does not have (another deployment
    sharing the key, a wiped database): 404, logged with the job id it named."""
    make_job()
    before = snapshot(engine)
    token = ReplyRefSigner([SECRET]).sign("job_01notinthisdatabase00000000")
    r = post(client, task_body(token, "SUCCEEDED", artifacts=[{"url": "https://x/v.mp4"}]))
    assert r.status_code == 404
    assert r.json["error"]["code"] == "unknown_job"
    assert snapshot(engine) == before
    log = refused(engine)
    assert [(e["reason"], e["job_id"]) for e in log] == [
        ("unknown_job", "job_01notinthisdatabase00000000")
    ]


def test_task_id_of_another_job_is_403(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """A valid replyRef whose body claims a task bound to another job (a copy-paste attack
    between two of our own jobs): 403, neither job changes."""
    bound, _ = make_job(task_id="user:1-runwayml:sim@example.com-task:taken")
    job, ref = make_job()
    before = snapshot(engine)
    r = post(client, task_body(ref, "SUCCEEDED", task_uuid="taken"))
    assert r.status_code == 403
    assert r.json["error"]["code"] == "task_id_mismatch"
    assert snapshot(engine) == before
    assert job_row(engine, job.id)["task_id"] is None
    assert job_row(engine, bound.id)["status"] == "PENDING"


@pytest.mark.parametrize("settings_overrides", [{"refused_log_size": 10}])
def test_refused_log_is_bounded_and_visible_through_the_api(
    client: FlaskClient, engine: Engine, admin: dict[str, str]
) -> None:
    bodies = [json.dumps({"status": "SUCCEEDED", "n": n}).encode() for n in range(25)]
    for body in bodies:
        assert post(client, body).status_code == 401
    assert len(refused(engine)) == 10

    r = client.get("/api/refused-callbacks?limit=200", headers=admin)
    assert r.status_code == 200
    items = r.json["items"]
    newest_first = [hashlib.sha256(b).hexdigest() for b in reversed(bodies[-10:])]
    assert [i["body_sha256"] for i in items] == newest_first
    assert [i["body_size"] for i in items] == [len(b) for b in reversed(bodies[-10:])]
    for item in items:
        assert item["reason"] == "reply_ref_missing"
        assert item["http_status"] == 401
        assert item["source_ip"] == "127.0.0.1"
        assert item["received_at"].endswith("Z")
    assert client.get("/api/refused-callbacks").status_code == 401


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"   \n", "empty body"),
        (b'"just a string"', "expected a JSON object, got str"),
        (b"42", "expected a JSON object, got int"),
        (b'[{"replyRef": "x"}]', "expected a JSON object, got list"),
        (b'{"a": Infinity}', "Infinity is not allowed"),
        (b'{"a": -Infinity}', "-Infinity is not allowed"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": -1e400}', "out of range"),
        (b'{"a": 1' + b"0" * 400 + b"}", "integer of 401 digits is too large"),
        (b'{"a": "\\ud800"}', "unpaired surrogate (\\ud800)"),
        (b'{"a": "\\udfff tail"}', "unpaired surrogate (\\udfff)"),
        (b'{"a\\u0000": 1}', "NUL"),
        (b'{"a": ["x\\u0000"]}', "NUL"),
        (b'{"a": "caf\xe9"}', "not valid UTF-8 (byte 10)"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"a": 1,}', "not valid JSON"),
        (b'{"a": 1} trailing', "not valid JSON"),
        (b'{"a":' * 33 + b"1" + b"}" * 33, "nested deeper than 32 levels"),
        (b'{"a":' + b"[" * 33 + b"]" * 33 + b"}", "nested deeper than 32 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_json_is_400_with_a_precise_message(
    sqlite_client: FlaskClient,
    sqlite_engine: Engine,
    sqlite_job: JobFactory,
    raw: bytes,
    fragment: str,
) -> None:
    sqlite_job()
    before = snapshot(sqlite_engine)
    r = post(sqlite_client, raw)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "invalid_body"
    assert fragment in r.json["error"]["message"]
    assert snapshot(sqlite_engine) == before
    assert [e["reason"] for e in refused(sqlite_engine)] == ["invalid_body"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": 5}, "status: expected a string or null, got a number"),
        ({"status": ["SUCCEEDED"]}, "status: expected a string or null, got an array"),
        ({"status": "S" * 41}, "status: longer than 40 characters"),
        ({"taskId": {"id": 1}}, "taskId: expected a string or null, got an object"),
        ({"taskId": "t" * 1025}, "taskId: longer than 1024 characters"),
        ({"progressRatio": True}, "progressRatio: expected a number or a string"),
        ({"progressRatio": [0.5]}, "progressRatio: expected a number or a string"),
        ({"artifacts": "https://x/v.mp4"}, "artifacts: expected an array or null, got a string"),
        ({"error": 7}, "error: expected a string or an object or null, got a number"),
    ],
)
def test_wrong_types_of_task_fields_are_400_naming_the_field(
    sqlite_client: FlaskClient,
    sqlite_engine: Engine,
    sqlite_job: JobFactory,
    fields: dict[str, Any],
    message: str,
) -> None:
    job, ref = sqlite_job()
    before = snapshot(sqlite_engine)
    r = post(sqlite_client, {**task_body(ref, "SUCCEEDED"), **fields})
    assert r.status_code == 400
    assert r.json["error"]["code"] == "invalid_task"
    assert message in r.json["error"]["message"]
    assert snapshot(sqlite_engine) == before
    assert [(e["reason"], e["job_id"]) for e in refused(sqlite_engine)] == [
        ("invalid_task", job.id)
    ]


def test_nesting_up_to_the_limit_is_accepted(
    sqlite_client: FlaskClient, sqlite_job: JobFactory
) -> None:
    job, ref = sqlite_job()
    deep = '{"a":' * 31 + "1" + "}" * 31  # 32 levels with the callback's own object
    body = '{"replyRef": "' + ref + '", "status": "RUNNING", "deep": ' + deep + "}"
    r = post(sqlite_client, body)
    assert r.status_code == 202, r.json


def test_unknown_fields_and_lenient_values_are_kept(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job()
    body = task_body(
        ref,
        "RUNNING",
        progressRatio="0.25",
        error=None,
        brandNewField={"deep": [1, 2, {"x": None}]},
        big=12345678901234567890,
        unicode="vidéo ✓ 🎬",
    )
    r = post(client, body)
    assert r.status_code == 202 and r.outcome == "applied"
    kept = sql_value(engine, "SELECT body FROM callbacks")
    kept = kept if isinstance(kept, dict) else json.loads(kept)
    assert kept["brandNewField"] == {"deep": [1, 2, {"x": None}]}
    assert kept["big"] == 12345678901234567890
    assert kept["unicode"] == "vidéo ✓ 🎬"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=nothing",
        "application/json; charset=iso-8859-1",
        "application/octet-stream",
        "nonsense",
    ],
)
def test_json_body_with_missing_or_odd_content_type_is_accepted(
    sqlite_client: FlaskClient,
    sqlite_engine: Engine,
    sqlite_job: JobFactory,
    content_type: str | None,
) -> None:
    job, ref = sqlite_job()
    data = json.dumps(task_body(ref, "RUNNING", progressRatio=0.5, text="é"))
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = sqlite_client.post("/callbacks/useapi", data=data.encode(), headers=headers)
    assert r.status_code == 202, r.json
    assert apply_for(sqlite_client) == {r.json["callback_id"]: "applied"}
    assert job_row(sqlite_engine, job.id)["status"] == "RUNNING"


@pytest.mark.parametrize("settings_overrides", [{"max_content_length": 2048}])
def test_body_size_limit_is_configurable_and_exact(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job()
    body = task_body(ref, "RUNNING", progressRatio=0.1)
    base = len(json.dumps({**body, "pad": ""}))
    at_limit = json.dumps({**body, "pad": "x" * (2048 - base)})
    over = json.dumps({**body, "pad": "x" * (2049 - base)})
    assert len(at_limit) == 2048 and len(over) == 2049

    r = post(client, over)
    assert r.status_code == 413
    assert r.json["error"]["code"] == "request_entity_too_large"
    assert "2048" in r.json["error"]["message"]
    assert job_row(engine, job.id)["status"] == "SUBMITTING"
    log = refused(engine)
    assert [(e["reason"], e["body_size"], e["body_sha256"]) for e in log] == [
        ("request_entity_too_large", 2049, None)
    ]
    assert post(client, at_limit).status_code == 202


def test_default_body_limit_is_256_kib(sqlite_client: FlaskClient, sqlite_job: JobFactory) -> None:
    job, ref = sqlite_job()
    body = task_body(ref, "RUNNING")
    base = len(json.dumps({**body, "pad": ""}))
    at_limit = json.dumps({**body, "pad": "x" * (262144 - base)})
    assert post(sqlite_client, at_limit).status_code == 202
    assert post(sqlite_client, at_limit + " ").status_code == 413


STORAGE_SENSITIVE = {
    "nul": '"progressText": "a\\u0000b"',
    "surrogate": '"progressText": "\\ud83d"',
    "inf": '"estimatedTimeToStartSeconds": 1e999',
    "huge_int": '"progressRatio": 1' + "0" * 330,
    "long_task_id": '"taskId": "' + "t" * 1500 + '"',
    "long_status": '"status": "' + "RUNNING" * 10 + '"',
}


def test_input_postgres_cannot_store_is_400(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """With a GENUINE replyRef, values that PostgreSQL's jsonb, text or varchar columns refuse
    (they used to fail the insert: a 503, or a 500 on SQLite) are a 400 on both databases."""
    job, ref = make_job()
    before = snapshot(engine)
    for name, raw in STORAGE_SENSITIVE.items():
        r = post(client, '{"replyRef": "' + ref + '", ' + raw + "}")
        assert r.status_code == 400, (name, r.json)
    assert snapshot(engine) == before
    assert post(client, task_body(ref, "RUNNING")).status_code == 202


def test_forwarded_for_junk_never_breaks_a_genuine_callback(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """With no router in front, X-Forwarded-For is whatever the client says; it is cut to the
    64 characters the tables keep instead of failing the insert (a 503 on PostgreSQL)."""
    job, ref = make_job()
    junk = {"X-Forwarded-For": "A" * 300}
    assert post(client, b"{}", headers=junk).status_code == 401
    r = post(client, task_body(ref, "RUNNING"), headers=junk)
    assert r.status_code == 202, r.json
    assert [e["source_ip"] for e in refused(engine)] == ["A" * 64]


# -- fuzzing --------------------------------------------------------------------------------

_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."
_STATUSES = ["PENDING", "THROTTLED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "succeeded"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**320)
    | st.floats()
    | st.text(max_size=20)
    | st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=6,
)


def _flips(token: str) -> st.SearchStrategy[str]:
    """``token`` with one character changed, never the last of a dot-separated segment (its
    low bits may be base64 padding, so a change there can decode to the same bytes)."""
    positions = [i for i, c in enumerate(token) if c != "." and i + 1 < len(token)]
    positions = [i for i in positions if token[i + 1] != "."]
    return st.sampled_from(positions).flatmap(
        lambda i: st.sampled_from(_TOKEN_ALPHABET.replace(token[i], "")).map(
            lambda c: token[:i] + c + token[i + 1 :]
        )
    )


def forged_refs(job_id: str, ref: str) -> st.SearchStrategy[Any]:
    """replyRefs that must not verify (or that name no job here): absent, junk of any JSON
    type, token-shaped noise, the live job's token under a wrong key, expired, altered,
    truncated, or extended."""
    now = utcnow()
    return st.one_of(
        st.just(None),
        json_values,
        st.text(_TOKEN_ALPHABET, min_size=1, max_size=120),
        st.just(ReplyRefSigner([WRONG_KEY]).sign(job_id)),
        st.just(sign_at([SECRET], job_id, now - 40 * DAY)),
        st.just(sign_at([SECRET], job_id, now + DAY)),
        st.just(sign_at([SECRET], "job_01nosuchjob0000000000000000", now)),
        _flips(ref),
        st.integers(1, len(ref) - 1).map(lambda n: ref[:n]),
        st.text(_TOKEN_ALPHABET, min_size=1, max_size=5).map(lambda tail: ref + tail),
    )


def forged_bodies(job_id: str, ref: str) -> st.SearchStrategy[Any]:
    task_like = st.fixed_dictionaries(
        {},
        optional={
            "taskId": st.just("user:1-runwayml:sim@example.com-task:t-1") | json_values,
            "status": st.sampled_from(_STATUSES) | json_values,
            "progressRatio": st.floats(0, 1) | st.sampled_from(["0.5", "1"]) | json_values,
            "artifacts": st.just([{"url": "https://evil.example/x.mp4"}]) | json_values,
            "error": json_values,
            "extra": json_values,
        },
    )
    with_ref = st.tuples(task_like, forged_refs(job_id, ref)).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "replyRef": pair[1]}
    )
    return with_ref | json_values


CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "x/y"]
)


def _send(client: FlaskClient, data: bytes, content_type: str | None) -> int:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return int(client.post("/callbacks/useapi", data=data, headers=headers).status_code)


def test_fuzz_json_bodies_without_a_valid_reply_ref_change_nothing(
    sqlite_client: FlaskClient, sqlite_runtime: Runtime
) -> None:
    """Thousands of hypothesis-made JSON bodies (task-like or not) whose replyRef is absent,
    junk, forged, expired, altered or for an unknown job: a 4xx every time, each refusal
    logged, and no stored state changes."""
    engine = sqlite_runtime.engine
    make_job = JobFactory(sqlite_runtime)
    subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    job, ref = make_job(task_id="user:1-runwayml:sim@example.com-task:t-1")
    before, _ = fuzz_state(engine)
    sent: list[bytes] = []

    @settings(FUZZ_SETTINGS, max_examples=800)
    @given(body=forged_bodies(job.id, ref), ascii_only=st.booleans(), ctype=CONTENT_TYPES)
    def check(body: Any, ascii_only: bool, ctype: str | None) -> None:
        data = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        sent.append(data)
        _, logged = fuzz_state(engine)
        status = _send(sqlite_client, data, ctype)
        assert status in (400, 401, 404, 413), (status, data[:300])
        after, now_logged = fuzz_state(engine)
        assert after == before
        assert now_logged == logged + 1  # every refusal is in the log

    check()
    assert len(sent) >= 500
    assert len(refused(engine)) == min(len(sent), 1000)  # REFUSED_LOG_SIZE's default bound


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
        out = bytearray(data)
        for kind, where, value in edits:
            if not out:
                break
            i = where % len(out)
            if kind == 0:
                out[i] = value
            elif kind == 1:
                out.insert(i, value)
            else:
                del out[i]
        return bytes(out)

    edit = st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255))
    return st.lists(edit, min_size=1, max_size=6).map(lambda edits: mutate(seed, edits))


def test_fuzz_raw_bytes_never_5xx_and_change_nothing(
    sqlite_client: FlaskClient, sqlite_runtime: Runtime
) -> None:
    """Raw bytes: random, and byte-level mutations of a forged task body (flipped, inserted,
    deleted bytes: broken UTF-8, broken JSON, stray control characters)."""
    engine = sqlite_runtime.engine
    job, ref = JobFactory(sqlite_runtime)(task_id="user:1-runwayml:sim@example.com-task:t-1")
    forged = task_body(
        ReplyRefSigner([WRONG_KEY]).sign(job.id),
        "SUCCEEDED",
        artifacts=[{"url": "https://evil.example/x.mp4"}],
    )
    seed = json.dumps(forged).encode()
    before, _ = fuzz_state(engine)

    @settings(FUZZ_SETTINGS, max_examples=800)
    @given(
        data=st.binary(max_size=600) | _mutations(seed) | st.just(b"\xff" * 300_000),
        ctype=CONTENT_TYPES,
    )
    def check(data: bytes, ctype: str | None) -> None:
        _, logged = fuzz_state(engine)
        status = _send(sqlite_client, data, ctype)
        assert status in (400, 401, 404, 413), (status, data[:300])
        after, now_logged = fuzz_state(engine)
        assert after == before
        assert now_logged == logged + 1

    check()


def test_fuzz_valid_reply_ref_with_junk_fields_never_5xx(
    sqlite_client: FlaskClient, sqlite_runtime: Runtime
) -> None:
    """A genuine replyRef with hypothesis-made task fields (any types, any statuses): 202 or
    400, never a 5xx, and every stored one applies; state only moves forward and every
    applied change has its event."""
    engine = sqlite_runtime.engine
    make_job = JobFactory(sqlite_runtime)
    subscribe(engine)
    rank = {"SUBMITTING": 0, "PENDING": 1, "THROTTLED": 2, "RUNNING": 3}
    body_fields = st.fixed_dictionaries(
        {},
        optional={
            "status": st.sampled_from(_STATUSES) | json_values,
            "progressRatio": st.floats() | st.text(max_size=5) | json_values,
            "progressText": json_values,
            "artifacts": st.lists(
                st.fixed_dictionaries({"url": json_values}) | json_values, max_size=3
            )
            | json_values,
            "error": json_values,
            "code": json_values,
            "taskId": st.sampled_from(["user:1-runwayml:a-task:x", "", "t"]) | json_values,
        },
    )

    @settings(FUZZ_SETTINGS, max_examples=150)
    @given(steps=st.lists(body_fields, min_size=1, max_size=4))
    def check(steps: list[dict[str, Any]]) -> None:
        job, ref = make_job()
        last_rank = 0
        for fields in steps:
            data = json.dumps({**fields, "replyRef": ref}).encode("utf-8", "surrogatepass")
            status = _send(sqlite_client, data, "application/json")
            assert status in (202, 400, 403), (status, data[:300])
            if status == 202:  # stored: the applier must apply it, never fail on it
                assert len(apply_for(sqlite_client)) == 1
            row = job_row(engine, job.id)
            now_rank = rank.get(row["status"], 9)
            assert now_rank >= last_rank, (row["status"], fields)
            last_rank = now_rank
            events = sql_column(
                engine, "SELECT sequence FROM events WHERE job_id = :j ORDER BY sequence", j=job.id
            )
            assert events == list(range(1, row["sequence"] + 1))

    check()
