"""``/dashboard`` through the Flask test client over a real database: sign-in, CSRF, every
page, and the actions (which must change what the API and the worker see)."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from receiver import create_app, services
from receiver.delivery.worker import Worker
from receiver.runtime import Runtime
from receiver.store.uow import UnitOfWork
from simulator.subscriber import SubscriberServer
from tests.conftest import ADMIN_TOKEN, JobFactory, new_subscriber, task_body
from tests.helpers import post_and_apply, worker_config

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Operator:
    """A browser-like session on the test client."""

    client: FlaskClient

    def csrf(self, page: str = "/dashboard/login") -> str:
        match = CSRF.search(self.client.get(page).text)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def sign_in(self, token: str = ADMIN_TOKEN) -> int:
        response = self.client.post(
            "/dashboard/login", data={"csrf_token": self.csrf(), "token": token}
        )
        return response.status_code

    def post(self, path: str, **data: str) -> tuple[int, str, str | None]:
        data.setdefault("csrf_token", self.csrf("/dashboard/subscribers"))
        response = self.client.post(path, data=data)
        return response.status_code, response.text, response.headers.get("Location")

    def page(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        return response.text


@pytest.fixture
def operator(client: FlaskClient) -> Operator:
    op = Operator(client)
    assert op.sign_in() == 303
    return op


def add_subscriber(engine: Engine, url: str, *types: str) -> str:
    return new_subscriber(engine, list(types) or None, url=url, description="test").id


def deliver(engine: Engine, until_idle_rounds: int = 100) -> None:
    config = worker_config((0.01,))
    worker = Worker(engine, config, rng=random.Random(1))
    for _ in range(until_idle_rounds):
        if not worker.run_until_idle():
            with UnitOfWork(engine) as uow:
                if not uow.repo.count_pending_deliveries():
                    return
        time.sleep(0.02)


def subscriber_row(engine: Engine, subscriber_id: str) -> services.Subscriber:
    return services.get_subscriber(engine, subscriber_id)


class Loads(HTMLParser):
    """Every URL a page makes the browser load by itself (scripts, styles, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "video", "audio", "source") and values.get("src"):
            self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")


# -- signing in -------------------------------------------------------------------------------


def test_pages_need_sign_in(client: FlaskClient) -> None:
    response = client.get("/dashboard/tasks?state=RUNNING")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/dashboard/login?next=")
    hx = client.get("/dashboard", headers={"HX-Request": "true"})
    assert hx.status_code == 401 and hx.headers["HX-Redirect"].startswith("/dashboard/login")
    assert client.post("/dashboard/deliveries/recover", data={"since": "1h"}).status_code == 401


def test_a_wrong_token_is_refused(client: FlaskClient) -> None:
    op = Operator(client)
    response = client.post(
        "/dashboard/login", data={"csrf_token": op.csrf(), "token": "not-the-token"}
    )
    assert response.status_code == 401
    assert "not the ADMIN_TOKEN" in response.text
    assert client.get("/dashboard").status_code == 303  # still signed out


def test_sign_in_sets_a_hardened_session_cookie(client: FlaskClient) -> None:
    op = Operator(client)
    response = client.post(
        "/dashboard/login",
        data={"csrf_token": op.csrf(), "token": ADMIN_TOKEN, "next": "/dashboard/refused"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/refused"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("relay_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http (tests); see the https case below
    assert ADMIN_TOKEN not in cookie
    assert client.get("/dashboard").status_code == 200
    out = client.post("/dashboard/logout", data={"csrf_token": op.csrf("/dashboard")})
    assert out.status_code == 303
    assert client.get("/dashboard").status_code == 303


def test_the_cookie_is_secure_over_https(client: FlaskClient) -> None:
    page = client.get("/dashboard/login", headers={"X-Forwarded-Proto": "https"})
    token = CSRF.search(page.text)
    assert token
    response = client.post(
        "/dashboard/login",
        data={"csrf_token": token.group(1), "token": ADMIN_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_no_open_redirect_after_sign_in(client: FlaskClient) -> None:
    op = Operator(client)
    for target in ("https://evil.example/", "//evil.example/x", "/api/tasks"):
        response = client.post(
            "/dashboard/login", data={"csrf_token": op.csrf(), "token": ADMIN_TOKEN, "next": target}
        )
        assert response.headers["Location"] == "/dashboard"
        client.delete_cookie("relay_session", path="/dashboard")


def test_bearer_token_works_without_a_cookie(client: FlaskClient, engine: Engine) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/dashboard", headers=headers).status_code == 200
    assert client.get("/dashboard", headers={"Authorization": "Bearer nope"}).status_code == 401
    sub = add_subscriber(engine, "http://127.0.0.1:9/hook")
    response = client.post(f"/dashboard/subscribers/{sub}/disable", headers=headers)
    assert response.status_code == 303  # a program's bearer request needs no CSRF token
    assert not subscriber_row(engine, sub).enabled


def test_changing_admin_token_signs_everyone_out(runtime: Runtime, operator: Operator) -> None:
    assert operator.client.get("/dashboard").status_code == 200
    cookie = operator.client.get_cookie("relay_session", path="/dashboard")
    assert cookie is not None
    changed = runtime.settings.model_copy(update={"admin_token": "a-new-admin-token"})
    other = create_app(runtime=Runtime(changed, runtime.engine, runtime.signer)).test_client()
    other.set_cookie("relay_session", cookie.value, path="/dashboard")
    assert other.get("/dashboard").status_code == 303


def test_dashboard_is_off_without_admin_token(runtime: Runtime) -> None:
    off = runtime.settings.model_copy(update={"admin_token": ""})
    app: Flask = create_app(runtime=Runtime(off, runtime.engine, runtime.signer))
    response = app.test_client().get("/dashboard/login")
    assert response.status_code == 503 and "ADMIN_TOKEN" in response.text


# -- CSRF ------------------------------------------------------------------------------------


def test_a_form_without_csrf_token_is_refused_and_changes_nothing(
    operator: Operator, engine: Engine
) -> None:
    sub = add_subscriber(engine, "http://127.0.0.1:9/hook")
    response = operator.client.post(f"/dashboard/subscribers/{sub}/disable", data={})
    assert response.status_code == 400 and "CSRF" in response.text
    wrong = operator.client.post(
        f"/dashboard/subscribers/{sub}/disable", data={"csrf_token": "forged"}
    )
    assert wrong.status_code == 400
    assert subscriber_row(engine, sub).enabled
    before = subscriber_row(engine, sub).secret
    assert operator.client.post(f"/dashboard/subscribers/{sub}/rotate-secret").status_code == 400
    assert subscriber_row(engine, sub).secret == before


def test_a_form_from_another_origin_is_refused(operator: Operator, engine: Engine) -> None:
    sub = add_subscriber(engine, "http://127.0.0.1:9/hook")
    response = operator.client.post(
        f"/dashboard/subscribers/{sub}/disable",
        data={"csrf_token": operator.csrf("/dashboard")},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert subscriber_row(engine, sub).enabled


def test_login_itself_needs_the_csrf_token(client: FlaskClient) -> None:
    response = client.post("/dashboard/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 400
    assert client.get("/dashboard").status_code == 303


# -- pages -----------------------------------------------------------------------------------


@pytest.fixture
def delivered(client: FlaskClient, engine: Engine, make_job: JobFactory) -> tuple[str, str]:
    """A task with two callbacks, two events, both delivered to a subscriber; a refusal."""
    with SubscriberServer() as server:
        sub = add_subscriber(engine, server.url, "task.progress", "task.succeeded")
        server.secrets.append(subscriber_row(engine, sub).secret)
        job, ref = make_job(metadata={"order": "A-17"})
        running = task_body(ref, "RUNNING", progressRatio="0.4", task_uuid="dash-1")
        assert post_and_apply(client, running).status_code == 202
        done = task_body(
            ref,
            "SUCCEEDED",
            task_uuid="dash-1",
            artifacts=[{"url": "https://cdn.example/video.mp4"}, {"url": "javascript:alert(1)"}],
        )
        assert post_and_apply(client, done).status_code == 202
        deliver(engine)
        assert len(server.verified_events()) == 2
    assert client.post("/callbacks/useapi", json={"replyRef": "forged"}).status_code == 401
    return job.id, sub


def test_overview_counts(operator: Operator, delivered: tuple[str, str]) -> None:
    html = operator.page("/dashboard")
    assert re.search(r'data-testid="tasks-succeeded">1<', html)
    assert re.search(r'data-testid="callbacks-accepted">2<', html)
    assert re.search(r'data-testid="callbacks-refused">1<', html)
    assert "refused: reply_ref_invalid" in html
    assert re.search(r'data-testid="deliveries-succeeded">2<', html)
    assert re.search(r'data-testid="oldest-pending">none pending<', html)
    assert delivered[0] in html  # among the latest tasks


def test_task_page_shows_callbacks_events_deliveries_and_the_video(
    operator: Operator, delivered: tuple[str, str]
) -> None:
    job_id, _ = delivered
    html = operator.page(f"/dashboard/tasks/{job_id}")
    assert "Callbacks received (2)" in html
    assert html.count('data-testid="event"') == 2
    assert "task.progress" in html and "task.succeeded" in html
    assert html.count("1 attempt") == 2  # each delivery with its attempt log
    assert 'href="https://cdn.example/video.mp4"' in html
    assert "javascript:alert" not in html  # a hostile artifact URL is not linked
    assert "&#34;order&#34;: &#34;A-17&#34;" in html or '"order": "A-17"' in html
    assert operator.client.get("/dashboard/tasks/job_nope").status_code == 404


def test_nothing_loads_from_outside_the_app(operator: Operator, delivered: tuple[str, str]) -> None:
    job_id, _ = delivered
    for path in ("/dashboard", f"/dashboard/tasks/{job_id}", "/dashboard/subscribers"):
        response = operator.client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert response.headers["Cache-Control"] == "no-store"
        parser = Loads()
        parser.feed(response.text)
        assert parser.urls, path
        for url in parser.urls:
            assert url.startswith("/dashboard/static/"), (path, url)
            with operator.client.get(url) as asset:
                assert asset.status_code == 200, url


def test_tasks_filter_and_pages(
    operator: Operator, make_job: JobFactory, client: FlaskClient
) -> None:
    jobs = [make_job() for _ in range(27)]
    ref = jobs[0][1]
    assert post_and_apply(client, task_body(ref, "RUNNING")).status_code == 202
    first = operator.page("/dashboard/tasks")
    assert 'data-testid="task-total">27<' in first
    assert first.count("/dashboard/tasks/job_") == 25
    older = re.search(r'href="(/dashboard/tasks\?before=[^"]+)" rel="next"', first)
    assert older
    second = operator.page(older.group(1).replace("&amp;", "&"))
    assert second.count("/dashboard/tasks/job_") == 2
    running = operator.page("/dashboard/tasks?state=RUNNING&since=1h")
    assert 'data-testid="task-total">1<' in running and jobs[0][0].id in running
    assert 'data-testid="task-total">0<' in operator.page(
        "/dashboard/tasks?since=2030-01-01T00:00Z"
    )
    assert operator.client.get("/dashboard/tasks?since=yesterday-ish").status_code == 400
    assert operator.client.get("/dashboard/tasks?state=NOPE").status_code == 400


def test_refused_page_lists_reasons(operator: Operator, client: FlaskClient) -> None:
    client.post("/callbacks/useapi", data=b"not json", content_type="application/json")
    html = operator.page("/dashboard/refused")
    assert "invalid_body" in html and "400" in html


# -- actions ---------------------------------------------------------------------------------


def test_add_subscriber_shows_the_secret_once(operator: Operator, engine: Engine) -> None:
    status, html, _ = operator.post(
        "/dashboard/subscribers",
        url="http://127.0.0.1:9/hook",
        description="billing",
        event_types="task.succeeded",
    )
    assert status == 200
    shown = re.search(r'data-testid="secret-value">(whsec_[^<]+)<', html)
    assert shown
    with UnitOfWork(engine) as uow:
        (sub,) = uow.repo.list_subscribers()
    assert sub.secret == shown.group(1) and sub.description == "billing"
    assert sub.event_types == ["task.succeeded"]
    assert shown.group(1) not in operator.page("/dashboard/subscribers")


def test_a_refused_subscriber_url_comes_back_with_the_reason(
    operator: Operator, runtime: Runtime
) -> None:
    strict = runtime.settings.model_copy(update={"allow_private_urls": False})
    client = create_app(runtime=Runtime(strict, runtime.engine, runtime.signer)).test_client()
    op = Operator(client)
    assert op.sign_in() == 303
    status, html, _ = op.post("/dashboard/subscribers", url="http://10.0.0.8/hook")
    assert status == 422 and "refused" in html and 'value="http://10.0.0.8/hook"' in html


def test_rotate_disable_enable_remove(operator: Operator, engine: Engine) -> None:
    sub = add_subscriber(engine, "http://127.0.0.1:9/hook")
    old = subscriber_row(engine, sub).secret
    status, html, _ = operator.post(f"/dashboard/subscribers/{sub}/rotate-secret")
    assert status == 200
    shown = re.search(r'data-testid="secret-value">(whsec_[^<]+)<', html)
    assert shown and shown.group(1) != old
    row = subscriber_row(engine, sub)
    assert row.secret == shown.group(1) and row.previous_secret == old
    status, _, location = operator.post(f"/dashboard/subscribers/{sub}/disable")
    assert status == 303 and location == "/dashboard/subscribers"
    assert not subscriber_row(engine, sub).enabled
    assert "disabled by operator" in operator.page("/dashboard/subscribers")
    assert operator.post(f"/dashboard/subscribers/{sub}/enable")[0] == 303
    assert subscriber_row(engine, sub).enabled
    assert operator.post(f"/dashboard/subscribers/{sub}/remove")[0] == 303
    with pytest.raises(services.SubscriberNotFound):
        subscriber_row(engine, sub)
    assert operator.post(f"/dashboard/subscribers/{sub}/remove")[0] == 404


def test_retry_and_recover_failed_deliveries(
    operator: Operator, client: FlaskClient, engine: Engine, make_job: JobFactory
) -> None:
    with SubscriberServer(default_status=503) as server:
        sub = add_subscriber(engine, server.url)
        server.secrets.append(subscriber_row(engine, sub).secret)
        refs = [make_job()[1] for _ in range(2)]
        for i, ref in enumerate(refs):
            body = task_body(
                ref, "SUCCEEDED", task_uuid=f"r-{i}", artifacts=[{"url": "https://x/v"}]
            )
            assert post_and_apply(client, body).status_code == 202
        deliver(engine)
        with UnitOfWork(engine) as uow:
            failed = uow.repo.list_deliveries(status="failed")
        assert len(failed) == 2
        html = operator.page("/dashboard/deliveries")
        assert all(d.id in html for d in failed)
        assert "http_error" in html and "503" in html  # the last attempt of each

        server.default_status = 204
        status, _, location = operator.post(
            f"/dashboard/deliveries/{failed[0].id}/retry",
            back="/dashboard/deliveries?status=failed",
        )
        assert status == 303 and location == "/dashboard/deliveries?status=failed"
        assert f"Delivery {failed[0].id} queued again." in operator.page("/dashboard/deliveries")
        deliver(engine)
        status, _, _ = operator.post("/dashboard/deliveries/recover", since="1h")
        assert status == 303
        assert "1 failed delivery since" in operator.page("/dashboard/deliveries?status=pending")
        deliver(engine)
        with UnitOfWork(engine) as uow:
            counts = uow.repo.count_deliveries_by_status()
    assert counts == {"succeeded": 2}
    assert "No failed deliveries" in operator.page("/dashboard/deliveries")
    assert operator.post(f"/dashboard/deliveries/{failed[0].id}/retry")[0] == 303
    assert operator.post(f"/dashboard/deliveries/{failed[0].id}/retry")[0] == 409
    assert operator.post("/dashboard/deliveries/recover", since="sometime")[0] == 400
