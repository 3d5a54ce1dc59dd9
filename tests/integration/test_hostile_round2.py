"""Hostile world, round two (issue 16): what one genuine replyRef must not be able to do.

Everything goes through the real Flask app over a real database (a SQLite file, then
PostgreSQL); the receiver itself is never patched.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from typing import Any

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, text, update

from receiver import create_app, services
from receiver.clock import utcnow
from receiver.runtime import Runtime, build_runtime
from receiver.services import callbacks as callback_service
from receiver.settings import ConfigError
from receiver.store.tables import sessions
from receiver.web import callbacks, ratelimit
from tests.conftest import (
    ADMIN_TOKEN,
    SECRET,
    JobFactory,
    make_settings,
    subscribe,
    table_counts,
    task_body,
)
from tests.helpers import job_columns
from tests.helpers import post_and_apply as post

TASK = "user:1-runwayml:sim@example.com-task:t-1"


def job_state(engine: Engine, job_id: str) -> tuple[Any, ...]:
    columns = ("status", "task_id", "progress", "progress_text", "artifacts", "sequence")
    return tuple(job_columns(engine, job_id, *columns, "updated_at", "last_callback_at").values())


def refusals(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT reason, job_id FROM refused_callbacks ORDER BY id"))
        return [(r[0], r[1]) for r in rows]


# -- 2. a bound job stays bound -------------------------------------------------------------


def test_callback_without_task_id_for_a_bound_job_is_refused_and_changes_nothing(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    subscribe(engine, ["task.progress", "task.succeeded", "task.failed"])
    job, ref = make_job()
    assert post(client, task_body(ref, "RUNNING", progressRatio=0.2)).status_code == 202
    assert job_state(engine, job.id)[1] == TASK  # bound by its first callback
    before, counts = job_state(engine, job.id), table_counts(engine)

    for body in (
        {k: v for k, v in task_body(ref, "SUCCEEDED").items() if k != "taskId"},
        task_body(ref, "FAILED", taskId=None, error="forged"),
        task_body(ref, "SUCCEEDED", taskId=""),
    ):
        r = post(client, body)
        assert r.status_code == 403, r.json
        assert r.json["error"]["code"] == "task_id_mismatch"

    assert job_state(engine, job.id) == before
    assert table_counts(engine) == counts
    assert refusals(engine) == [("task_id_mismatch", job.id)] * 3
    # the genuine callback, with its taskId, still goes through
    assert post(client, task_body(ref, "SUCCEEDED")).outcome == "applied"


def test_unbound_job_is_still_bound_by_a_callback_without_task_id_later(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """Before binding, a callback without taskId is applied (the vendor's first callback may
    come before the create's answer); the first taskId seen binds the job."""
    job, ref = make_job()
    r = post(client, task_body(ref, "PENDING", taskId=None))
    assert r.status_code == 202, r.json
    assert job_state(engine, job.id)[:2] == ("PENDING", None)
    assert post(client, task_body(ref, "RUNNING")).status_code == 202
    assert job_state(engine, job.id)[1] == TASK


# -- 3. artifact URLs are checked before anyone sees them -----------------------------------

HOSTILE_ARTIFACTS = [
    {"url": "javascript:alert(document.cookie)"},
    {
        "url": "https://cdn.example/v.mp4",
        "previewUrls": [
            "https://cdn.example/p.jpg",
            "data:image/svg+xml;base64,PHN2Zz4=",
            "file:///etc/passwd",
        ],
    },
    {"url": "http://cdn.example/plain.mp4"},
    {"url": "https://cdn.example/a b.mp4"},
    {"url": "//cdn.example/no-scheme.mp4"},
]


def _app_with_private(database_url: str, allow: bool) -> tuple[FlaskClient, Runtime]:
    rt = build_runtime(make_settings(database_url, allow_private_urls=allow))
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    return app.test_client(), rt


def test_unsafe_artifact_urls_are_dropped_and_the_callback_records_them(
    database_url: str, admin: dict[str, str]
) -> None:
    client, rt = _app_with_private(database_url, allow=False)
    try:
        subscribe(rt.engine, ["task.succeeded"])
        job, ref = JobFactory(rt)()
        r = post(client, task_body(ref, "SUCCEEDED", artifacts=HOSTILE_ARTIFACTS))
        assert r.status_code == 202, r.json
        assert r.outcome == "applied"
        safe = [{"url": "https://cdn.example/v.mp4", "previewUrls": ["https://cdn.example/p.jpg"]}]

        task = client.get(f"/api/tasks/{job.id}", headers=admin).json
        assert task["artifacts"] == safe  # the API
        with rt.engine.connect() as conn:
            payload = json.loads(conn.execute(text("SELECT payload FROM events")).scalar_one())
        assert payload["data"]["artifacts"] == safe  # what subscribers are sent
        page = client.get(f"/dashboard/tasks/{job.id}", headers=admin)
        html = page.get_data(as_text=True)
        for bad in ("javascript:", "data:image", "file://", "plain.mp4", "no-scheme"):
            assert bad not in html
        # the callback is recorded as carrying them: 6 URLs dropped
        assert [c["unsafe_urls"] for c in task["callbacks"]] == [6]
    finally:
        rt.engine.dispose()


def test_plain_http_artifacts_pass_only_with_allow_private_urls(
    database_url: str, admin: dict[str, str]
) -> None:
    client, rt = _app_with_private(database_url, allow=True)
    try:
        job, ref = JobFactory(rt)()
        post(client, task_body(ref, "SUCCEEDED", artifacts=HOSTILE_ARTIFACTS))
        task = client.get(f"/api/tasks/{job.id}", headers=admin).json
        assert [a["url"] for a in task["artifacts"]] == [
            "https://cdn.example/v.mp4",
            "http://cdn.example/plain.mp4",
        ]
        assert [c["unsafe_urls"] for c in task["callbacks"]] == [5]
    finally:
        rt.engine.dispose()


# -- 4. amplification is bounded ------------------------------------------------------------


def callbacks_of(engine: Engine, job_id: str) -> list[tuple[str, bool, str]]:
    """(outcome, body kept?, body hash) of each stored callback of ``job_id``, in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT outcome, body, body_sha256 FROM callbacks WHERE job_id = :j ORDER BY id"),
            {"j": job_id},
        )
        return [(r[0], r[1] is not None, r[2]) for r in rows]


def event_count(engine: Engine, job_id: str) -> int:
    with engine.connect() as conn:
        q = text("SELECT count(*) FROM events WHERE job_id = :j")
        return int(conn.execute(q, {"j": job_id}).scalar_one())


def test_replays_and_late_callbacks_keep_hash_and_metadata_not_the_body(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    job, ref = make_job()
    padding = "x" * 100_000  # what makes 60 replays cost 12 MB when every body is kept
    running = task_body(ref, "RUNNING", progressRatio=0.5, padding=padding)
    for _ in range(5):
        assert post(client, running).status_code == 202
    assert post(client, task_body(ref, "PENDING", padding=padding)).outcome == "stale"
    assert post(client, task_body(ref, "SUCCEEDED")).outcome == "applied"
    assert post(client, running).outcome == "already_terminal"

    stored = callbacks_of(engine, job.id)
    assert [(outcome, kept) for outcome, kept, _ in stored] == [
        ("applied", True),
        *[("duplicate", False)] * 4,
        ("stale", False),
        ("applied", True),
        ("already_terminal", False),
    ]
    assert all(len(sha) == 64 for _, _, sha in stored)


def test_tiny_progress_steps_emit_no_events(
    client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    """30 posts moving progress by 1e-9 gave 30 events to every subscriber; now a step of at
    least 1 % is needed (a status change still counts, whatever the progress)."""
    subscribe(engine, ["task.progress"])
    job, ref = make_job()
    assert post(client, task_body(ref, "RUNNING", progressRatio=0.2)).status_code == 202
    for n in range(1, 31):
        r = post(client, task_body(ref, "RUNNING", progressRatio=0.2 + n * 1e-9))
        assert r.outcome == "duplicate"
    assert event_count(engine, job.id) == 1
    assert post(client, task_body(ref, "RUNNING", progressRatio=0.21)).outcome == "applied"
    assert event_count(engine, job.id) == 2


def test_progress_text_is_capped(client: FlaskClient, engine: Engine, make_job: JobFactory) -> None:
    job, ref = make_job()
    post(client, task_body(ref, "RUNNING", progressRatio=0.1, progressText="y" * 50_000))
    assert len(job_state(engine, job.id)[3]) == services.MAX_PROGRESS_TEXT
    with engine.connect() as conn:
        payload = json.loads(conn.execute(text("SELECT payload FROM events")).scalar_one())
    assert len(payload["data"]["progress_text"]) == services.MAX_PROGRESS_TEXT


def test_stored_callbacks_per_job_are_capped(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap, a callback that changes nothing is answered but not stored; one that
    moves the task still is. (The cap is lowered to keep the test short.)"""
    monkeypatch.setattr(callback_service, "MAX_CALLBACKS_PER_JOB", 5)
    client, rt = _app_with_private(sqlite_url, allow=True)
    try:
        job, ref = JobFactory(rt)()
        for _ in range(10):
            assert post(client, task_body(ref, "PENDING")).status_code == 202
        assert len(callbacks_of(rt.engine, job.id)) == 5
        assert post(client, task_body(ref, "SUCCEEDED")).outcome == "applied"
        assert [o for o, _, _ in callbacks_of(rt.engine, job.id)][-1] == "applied"
        assert len(callbacks_of(rt.engine, job.id)) == 6
    finally:
        rt.engine.dispose()


# -- 6. sessions end ------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, page: str) -> str:
    match = CSRF.search(client.get(page).get_data(as_text=True))
    assert match, page
    return match.group(1)


def sign_in(client: FlaskClient) -> str:
    """Sign in through the form; the session cookie's value."""
    r = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(client, "/dashboard/login"), "token": ADMIN_TOKEN},
    )
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    cookie = client.get_cookie("relay_session", path="/dashboard")
    assert cookie is not None
    return cookie.value


def with_cookie(app: Flask, value: str) -> FlaskClient:
    """A fresh browser that only holds ``value`` as its session cookie (a copied cookie)."""
    other = app.test_client()
    other.set_cookie("relay_session", value, path="/dashboard")
    return other


def test_sign_out_ends_the_session_server_side(app: Flask) -> None:
    client = app.test_client()
    kept = sign_in(client)
    assert with_cookie(app, kept).get("/dashboard").status_code == 200
    out = client.post("/dashboard/logout", data={"csrf_token": csrf_of(client, "/dashboard")})
    assert out.status_code == 303
    # the cookie someone kept (or copied) before sign-out is refused
    r = with_cookie(app, kept).get("/dashboard")
    assert r.status_code == 303 and r.headers["Location"].startswith("/dashboard/login")


def test_a_session_lasts_12_hours_however_often_it_refreshes(app: Flask, engine: Engine) -> None:
    client = app.test_client()
    sign_in(client)
    with engine.connect() as conn:
        created, expires = conn.execute(select(sessions.c.created_at, sessions.c.expires_at)).one()
    for _ in range(5):  # a dashboard that refreshes keeps no session alive longer
        r = client.get("/dashboard")
        assert r.status_code == 200
        assert "relay_session" not in r.headers.get("Set-Cookie", "")  # cookie not re-issued
    with engine.connect() as conn:
        assert conn.execute(select(sessions.c.expires_at)).scalar_one() == expires
    assert (expires - created).total_seconds() == 12 * 3600
    # twelve hours later (the row's end moved to now: the clock is the database's row)
    with engine.begin() as conn:
        conn.execute(update(sessions).values(expires_at=utcnow()))
    assert client.get("/dashboard").status_code == 303


def test_session_cookie_is_not_signed_with_the_reply_ref_key(app: Flask) -> None:
    """A cookie carrying a genuine session, re-signed with SECRET_KEY itself (the replyRef
    key), is refused: the session key is derived apart from it."""
    client = app.test_client()
    value = sign_in(client)
    interface = SecureCookieSessionInterface()
    real = interface.get_signing_serializer(app)
    assert real is not None
    payload = real.loads(value)
    assert payload["sid"]
    raw_key = Flask("raw-key")
    raw_key.secret_key = SECRET
    forged = interface.get_signing_serializer(raw_key)
    assert forged is not None
    r = with_cookie(app, forged.dumps(payload)).get("/dashboard")
    assert r.status_code == 303
    assert with_cookie(app, value).get("/dashboard").status_code == 200


# -- 7. tokens and sign-in ------------------------------------------------------------------

GUESS = {"Authorization": "Bearer guessed-admin-token"}


def from_address(address: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_failed_bearer_checks_are_rate_limited_per_address(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    attacker = from_address("203.0.113.7")
    for n in range(ratelimit.MAX_FAILURES):
        path = "/metrics" if n % 2 else "/api/tasks"  # one budget for every bearer check
        assert client.get(path, headers=GUESS, **attacker).status_code == 401
    for path in ("/api/tasks", "/metrics", "/dashboard"):
        # refused before the token is compared: even the right one waits now
        r = client.get(path, headers=admin, **attacker)
        assert r.status_code == 429, (path, r.status_code)
        assert 1 <= int(r.headers["Retry-After"]) <= ratelimit.WINDOW_SECONDS
    assert client.get("/api/tasks", headers=GUESS, **attacker).json["error"]["code"] == (
        "too_many_attempts"
    )
    # another address is not affected
    assert (
        client.get("/api/tasks", headers=admin, **from_address("198.51.100.2")).status_code == 200
    )


def test_failed_dashboard_sign_ins_are_rate_limited_per_address(client: FlaskClient) -> None:
    attacker = from_address("203.0.113.8")

    def attempt(token: str) -> Any:
        page = client.get("/dashboard/login", **attacker).get_data(as_text=True)
        match = CSRF.search(page)
        assert match
        return client.post(
            "/dashboard/login", data={"csrf_token": match.group(1), "token": token}, **attacker
        )

    for _ in range(ratelimit.MAX_FAILURES):
        assert attempt("not-the-token").status_code == 401
    r = attempt(ADMIN_TOKEN)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= ratelimit.WINDOW_SECONDS
    assert "Try again in" in r.get_data(as_text=True)


# -- 9. smaller points ----------------------------------------------------------------------


def refused_total(client: FlaskClient, admin: dict[str, str]) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text_ = client.get("/metrics", headers=admin).get_data(as_text=True)
    return sum(
        s.value
        for family in text_string_to_metric_families(text_)
        for s in family.samples
        if s.name == "runway_relay_callbacks_received_total" and s.labels.get("result") == "refused"
    )


def test_refused_callback_log_lines_are_sampled_and_metrics_stay_exact(
    sqlite_url: str, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, rt = _app_with_private(sqlite_url, allow=True)
    try:
        flood = 300
        before = refused_total(client, admin)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="receiver.web.callbacks"):
            for n in range(flood):
                r = client.post(
                    "/callbacks/useapi", data=b"not json %d" % n, content_type="application/json"
                )
                assert r.status_code == 400
        elapsed = time.monotonic() - started
        lines = [r for r in caplog.records if r.getMessage() == "callback refused"]
        windows = math.ceil(elapsed / callbacks.REFUSED_LOG_WINDOW) + 1
        assert callbacks.REFUSED_LOG_BURST <= len(lines) <= callbacks.REFUSED_LOG_BURST * windows
        assert len(lines) < flood / 5
        assert refused_total(client, admin) - before == flood  # every refusal counted
        with rt.engine.connect() as conn:  # and kept in the bounded log
            assert conn.execute(text("SELECT count(*) FROM refused_callbacks")).scalar_one() == (
                flood
            )
    finally:
        rt.engine.dispose()


def test_allow_private_urls_is_refused_in_production(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="ALLOW_PRIVATE_URLS"):
        make_settings(sqlite_url, relay_env="production", admin_token="a" * 40)
    assert make_settings(sqlite_url, relay_env="development").allow_private_urls


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/ho ok",
        "http://127.0.0.1:9/hook\n",
        "\thttp://127.0.0.1:9/hook",
        " http://127.0.0.1:9/hook",
        "http://127.0.0.1:9/ho\tok",
        "http://127.0.0.1:9/hook\x7f",
        "http://127.0.0.1:9/hook\u0085",
    ],
)
def test_subscriber_urls_with_whitespace_or_control_characters_are_refused(
    client: FlaskClient, engine: Engine, admin: dict[str, str], url: str
) -> None:
    r = client.post("/api/subscribers", json={"url": url}, headers=admin)
    assert r.status_code == 422, r.json
    assert "whitespace or control" in r.json["error"]["message"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscribers")).scalar_one() == 0


def test_subscriber_secrets_are_kept_out_of_repr(
    client: FlaskClient, engine: Engine, admin: dict[str, str]
) -> None:
    created = client.post("/api/subscribers", json={"url": "http://127.0.0.1:9/h"}, headers=admin)
    assert created.status_code == 201
    sub_id, first = created.json["id"], created.json["secret"]
    second = client.post(f"/api/subscribers/{sub_id}/rotate-secret", headers=admin).json["secret"]
    sub = services.get_subscriber(engine, sub_id)
    assert (sub.secret, sub.previous_secret) == (second, first)
    shown = repr(sub) + str(sub)
    assert first not in shown and second not in shown
    assert sub_id in shown
