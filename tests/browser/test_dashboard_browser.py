"""The dashboard in a real browser (headless Chromium) against the app under gunicorn:
sign in, see a delivered task, retry a failed delivery and watch it succeed, rotate a secret;
a wrong token and a form without its CSRF token are refused."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.browser.conftest import save_screenshot
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Stack

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says so: a skip with the reason, or a failure in CI
    expect = None

pytestmark = pytest.mark.browser


def sign_in(page: Any, token: str = ADMIN_TOKEN, start: str = "/dashboard") -> Any:
    page.goto(start)
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
    page.get_by_label("Admin token").fill(token)
    with page.expect_response(lambda r: r.url.endswith("/dashboard/login")) as answer:
        page.get_by_role("button", name="Sign in").click()
    return answer.value


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def submit(stack: Stack, tmp_path: Path, prompt: str) -> str:
    image = tmp_path / "frame.png"
    image.write_bytes(tiny_png())
    job_id: str = stack.relay_json("submit", "--image", str(image), "--prompt", prompt)["job_id"]
    return job_id


def add_subscriber(stack: Stack, server: SubscriberServer, *events: str) -> str:
    args = ["subscribers", "add", server.url]
    for event in events:
        args += ["--events", event]
    added = stack.relay_json(*args)
    server.secrets.append(added["secret"])
    return str(added["id"])


def deliveries_of(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    job = stack.api("GET", f"/api/tasks/{job_id}").json()
    return list(job["deliveries"])


def test_a_wrong_token_is_refused(page: Any) -> None:
    answer = sign_in(page, token="not-the-admin-token")
    assert answer.status == 401
    expect(page.get_by_role("alert")).to_contain_text("not the ADMIN_TOKEN")
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))  # still signed out


@pytest.fixture(scope="module")
def sub_id(stack: Stack, subscriber: SubscriberServer) -> str:
    """The module's subscriber, registered once for every event type."""
    return add_subscriber(stack, subscriber, "task.progress", "task.succeeded", "task.failed")


def test_sign_in_and_see_a_delivered_task(
    page: Any, stack: Stack, sub_id: str, tmp_path: Path
) -> None:
    job_id = submit(stack, tmp_path, "a paper boat drifting down a rainy street")
    wait_until(
        lambda: (
            bool(deliveries_of(stack, job_id))
            and all(d["status"] == "succeeded" for d in deliveries_of(stack, job_id))
        ),
        what="the task's deliveries",
    )

    answer = sign_in(page)
    assert answer.status == 303
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "relay_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/dashboard"
    expect(page.get_by_test_id("tasks-succeeded")).to_have_text("1")
    expect(page.get_by_test_id("deliveries-failed")).to_have_text("0")
    first_time = page.locator("table[data-testid=jobs] time").first
    expect(first_time).to_have_text(re.compile(r"\b(EST|EDT)\b"))  # the viewer's zone
    assert "UTC" in (first_time.get_attribute("title") or "")  # UTC on hover
    save_screenshot(page, "overview.png", tmp_path)

    page.get_by_role("link", name=job_id).click()
    expect(page).to_have_url(re.compile(f"/dashboard/tasks/{job_id}$"))
    expect(page.get_by_test_id("job-status")).to_contain_text("SUCCEEDED")
    types = page.get_by_test_id("event-type").all_inner_texts()
    assert types[-1] == "task.succeeded" and "task.progress" in types
    statuses = page.locator("[data-testid=event] [data-testid=delivery-status]")
    expect(statuses.first).to_contain_text("succeeded")
    assert all("succeeded" in s for s in statuses.all_inner_texts())
    callbacks = page.locator("table[data-testid=callbacks] tbody tr")
    assert callbacks.count() >= 2  # at least one progress post and the terminal one
    video = page.get_by_test_id("video-link").first
    assert (video.get_attribute("href") or "").startswith("http")
    page.locator("details summary").first.click()  # an attempt log opens
    expect(page.locator("details[open] table").first).to_contain_text("success")
    shot = save_screenshot(page, "task.png", tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_retry_a_failed_delivery_and_watch_it_succeed(
    page: Any, stack: Stack, subscriber: SubscriberServer, sub_id: str, tmp_path: Path
) -> None:
    subscriber.default_status = 500  # DELIVERY_RETRY_SCHEDULE=0.2: two attempts, then failed
    try:
        job_id = submit(stack, tmp_path, "a lighthouse at dawn")
        wait_until(
            lambda: any(d["status"] == "failed" for d in deliveries_of(stack, job_id)),
            what="a dead-lettered delivery",
        )
    finally:
        subscriber.default_status = 204
    failed = next(d for d in deliveries_of(stack, job_id) if d["status"] == "failed")

    sign_in(page, start="/dashboard/deliveries")
    expect(page).to_have_url(re.compile(r"/dashboard/deliveries$"))
    row = page.get_by_test_id(f"delivery-{failed['id']}")
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("500")  # its last attempt
    row.get_by_role("link", name=job_id).click()

    row = page.get_by_test_id(f"delivery-{failed['id']}")
    expect(row.get_by_test_id("delivery-status")).to_contain_text("failed")
    row.get_by_test_id(f"retry-{failed['id']}").click()
    expect(page.get_by_role("status")).to_contain_text("queued again")
    # The worker sends it; the page's live refresh shows the outcome without a reload.
    expect(
        page.get_by_test_id(f"delivery-{failed['id']}").get_by_test_id("delivery-status")
    ).to_contain_text("succeeded", timeout=20_000)
    assert next(d for d in deliveries_of(stack, job_id) if d["id"] == failed["id"])["status"] == (
        "succeeded"
    )


def test_live_refresh_shows_new_refusals_without_a_reload(page: Any, stack: Stack) -> None:
    sign_in(page)
    counter = page.get_by_test_id("callbacks-refused")
    before = int(counter.inner_text())
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    for _ in range(3):
        requests.post(stack.base + "/callbacks/useapi", json={"replyRef": "forged"}, timeout=10)
    expect(counter).to_have_text(str(before + 3), timeout=15_000)
    assert navigations == []  # htmx swapped the numbers in; the page was not reloaded


def test_rotate_a_secret(
    page: Any, stack: Stack, subscriber: SubscriberServer, sub_id: str, tmp_path: Path
) -> None:
    sign_in(page, start="/dashboard/subscribers")
    page.get_by_test_id(f"rotate-{sub_id}").click()
    secret = page.get_by_test_id("secret-value").inner_text().strip()
    assert secret.startswith("whsec_") and secret not in subscriber.secrets
    expect(page.get_by_test_id("secret-panel")).to_contain_text("shown this once")

    # Prove it is the new signing secret: a subscriber that knows only it verifies a webhook.
    subscriber.secrets[:] = [secret]
    job_id = submit(stack, tmp_path, "rotated")
    got = subscriber.wait_for(
        lambda r: any(x.body and x.body["data"]["job_id"] == job_id for x in r), timeout=20
    )
    mine = [x for x in got if x.body and x.body["data"]["job_id"] == job_id]
    assert mine and all(x.verified for x in mine), [x.error for x in mine]

    page.goto("/dashboard/subscribers")
    expect(page.get_by_test_id(f"subscriber-{sub_id}")).to_be_visible()
    assert page.get_by_test_id("secret-panel").count() == 0  # never shown again
    assert secret not in page.content()


def test_a_form_without_its_csrf_token_is_refused(page: Any, stack: Stack, sub_id: str) -> None:
    sign_in(page, start="/dashboard/subscribers")
    row = page.get_by_test_id(f"subscriber-{sub_id}")
    form = row.locator("form", has=page.get_by_role("button", name="Disable"))
    form.locator("input[name=csrf_token]").evaluate("node => node.remove()")
    with page.expect_response(re.compile(r"/disable$")) as answer:
        form.get_by_role("button", name="Disable").click()
    assert answer.value.status == 400
    expect(page.locator(".error-message")).to_contain_text("CSRF")
    current = stack.api("GET", f"/api/subscribers/{sub_id}").json()
    assert current["enabled"] is True, json.dumps(current)


def test_every_metrics_scrape_adds_up_the_web_workers(stack: Stack) -> None:
    """gunicorn.conf.py gave the two web workers a shared multiprocess directory by itself."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    pattern = re.compile(
        r'^runway_relay_callbacks_received_total\{outcome="invalid_body",result="refused"\} (\S+)$',
        re.MULTILINE,
    )

    def refused() -> float:
        text = requests.get(stack.base + "/metrics", headers=auth, timeout=10).text
        match = pattern.search(text)
        assert match, text[:2000]
        return float(match.group(1))

    before = refused()
    for _ in range(20):
        requests.post(
            stack.base + "/callbacks/useapi",
            data=b"{",
            headers={"Content-Type": "application/json", "Connection": "close"},
            timeout=10,
        )
    assert [refused() for _ in range(6)] == [before + 20] * 6
