"""Against a vendor with several Runway accounts (the simulator configured with two), through real
gunicorn, worker and simulator processes: with ``USEAPI_ACCOUNT_EMAIL`` set, uploads, creates and
lookups carry the email (the vendor refuses them otherwise); ``--account`` / ``"account"`` pick
another one, and its assets are uploaded with it; a create whose connection closes after the task
started is found through ``GET /scheduler/`` and the job completes with exactly one create; a
wrapped create answer is read; no status request on the normal path; ``relay accounts`` flags an
account with a pending error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.e2e.conftest import Stack
from tests.e2e.test_models import DATA_URI, wait_succeeded

pytestmark = pytest.mark.e2e

FIRST = "first@example.com"
SECOND = "second@example.com"
STACK_ENV = {"USEAPI_ACCOUNT_EMAIL": SECOND}


@pytest.fixture(scope="module", autouse=True)
def two_accounts(stack: Stack) -> Iterator[None]:
    """The simulator with two accounts: every vendor call must name one."""
    config = {"accounts": [FIRST, SECOND], "account_errors": {}}
    response = requests.post(stack.sim + "/_sim/config", json=config, timeout=5)
    assert response.status_code == 200 and response.json()["accounts"] == [FIRST, SECOND]
    yield
    requests.post(stack.sim + "/_sim/config", json={"accounts": ["sim@example.com"]}, timeout=5)


def vendor_requests(stack: Stack) -> list[dict[str, Any]]:
    """``[{method, path, email}]`` the simulator received, oldest first."""
    response = requests.get(stack.sim + "/_sim/requests", timeout=5)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def queue(stack: Stack, *outcomes: str) -> None:
    response = requests.post(stack.sim + "/_sim/next", json={"outcomes": outcomes}, timeout=5)
    assert response.status_code == 200, response.text


def test_uploads_and_creates_carry_the_configured_account(
    stack: Stack, subscriber: SubscriberServer, image: str
) -> None:
    seen = len(vendor_requests(stack))
    before = stack.sim_stats()
    submitted = stack.relay_json("submit", "--image", image, "--prompt", "two accounts")
    assert (submitted["account"], submitted["model"]) == (SECOND, "gen4.5")
    assert f"-runwayml:{SECOND}-task:" in submitted["task_id"]
    wait_succeeded(subscriber, submitted["job_id"])

    mine = vendor_requests(stack)[seen:]
    assert [(r["method"], r["path"], r["email"]) for r in mine] == [
        ("POST", "/assets/", SECOND),
        ("POST", "/videos/create", SECOND),
    ]
    job = stack.api("GET", f"/api/tasks/{submitted['job_id']}").json()
    assert job["request"]["email"] == SECOND
    assert f"-runwayml:{SECOND}-asset:" in job["request"]["first_image_asset_id"]
    after = stack.sim_stats()
    assert after["status_requests"] == before["status_requests"] == 0
    assert after["scheduler_requests"] == before["scheduler_requests"]


def test_api_account_picks_another_account_for_upload_and_create(
    stack: Stack, subscriber: SubscriberServer
) -> None:
    seen = len(vendor_requests(stack))
    response = stack.api(
        "POST", "/api/tasks", json={"image": DATA_URI, "prompt": "first", "account": FIRST}
    )
    assert response.status_code == 201, response.text
    wait_succeeded(subscriber, response.json()["job_id"])
    mine = [(r["path"], r["email"]) for r in vendor_requests(stack)[seen:]]
    assert mine == [("/assets/", FIRST), ("/videos/create", FIRST)]


def test_without_the_account_the_vendor_refuses(stack: Stack, image: str) -> None:
    # What a user without USEAPI_ACCOUNT_EMAIL would meet: the simulator plays the vendor.
    response = requests.post(
        stack.sim + "/assets/?name=x.png",
        data=tiny_png(),
        headers={"Authorization": "Bearer sim-token", "Content-Type": "image/png"},
        timeout=5,
    )
    assert response.status_code == 400
    assert "email is required" in response.json()["error"]


def test_lost_create_answer_is_found_in_the_scheduler_with_one_create(
    stack: Stack, subscriber: SubscriberServer, image: str
) -> None:
    queue(stack, "drop_connection")
    seen = len(vendor_requests(stack))
    before = stack.sim_stats()
    # The task starts after 2 s, so it is still listed when the client looks it up.
    submitted = stack.relay_json("submit", "--image", image, "--prompt", "lost [sim:start=2]")
    assert submitted["task_id"] and submitted["status"] == "PENDING"
    event = wait_succeeded(subscriber, submitted["job_id"])
    assert event["data"]["task_id"] == submitted["task_id"]

    mine = [(r["method"], r["path"], r["email"]) for r in vendor_requests(stack)[seen:]]
    assert mine == [
        ("POST", "/assets/", SECOND),
        ("POST", "/videos/create", SECOND),
        ("GET", "/scheduler/", SECOND),
    ]
    after = stack.sim_stats()
    assert after["creates"] == before["creates"] + 1
    assert after["tasks_created"] == before["tasks_created"] + 1
    assert after["status_requests"] == 0


def test_wrapped_create_answer_is_read(
    stack: Stack, subscriber: SubscriberServer, image: str
) -> None:
    queue(stack, "wrapped")
    before = stack.sim_stats()
    submitted = stack.relay_json("submit", "--image", image, "--prompt", "wrapped")
    assert f"-runwayml:{SECOND}-task:" in submitted["task_id"]
    wait_succeeded(subscriber, submitted["job_id"])
    after = stack.sim_stats()
    assert after["scheduler_requests"] == before["scheduler_requests"]  # read, not recovered
    assert after["creates"] == before["creates"] + 1


def test_relay_accounts_flags_a_pending_error(stack: Stack) -> None:
    ok = stack.relay_json("accounts")
    assert ok == [
        {"email": FIRST, "ok": True, "error": None, "default": False},
        {"email": SECOND, "ok": True, "error": None, "default": True},
    ]
    config = {"account_errors": {FIRST: "Session expired, update the cookies"}}
    requests.post(stack.sim + "/_sim/config", json=config, timeout=5).raise_for_status()
    try:
        result = stack.relay("accounts", check=False)
    finally:
        requests.post(stack.sim + "/_sim/config", json={"account_errors": {}}, timeout=5)
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert rows[0] == {
        "email": FIRST,
        "ok": False,
        "error": "Session expired, update the cookies",
        "default": False,
    }
    assert f"account {FIRST} has a pending error" in result.stderr
