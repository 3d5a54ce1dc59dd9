"""``ARTIFACT_STORE`` end to end (gunicorn, relay worker, the simulator as the vendor): a
subscriber that is down while the task finishes comes back after the vendor's URL is dead and
still downloads the video from the durable URL in its ``task.succeeded`` event."""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from simulator.control import FAKE_MP4
from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

STACK_ENV = {
    "ARTIFACT_STORE": f"{tempfile.gettempdir()}/relay-e2e-artifacts-{uuid.uuid4().hex[:8]}",
    "DELIVERY_RETRY_SCHEDULE": ",".join(["0.5"] * 120),
}
DATA_URI = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


@pytest.fixture(scope="module", autouse=True)
def _remove_the_store() -> Iterator[None]:
    yield
    if not STACK_ENV["ARTIFACT_STORE"].startswith("s3://"):
        shutil.rmtree(STACK_ENV["ARTIFACT_STORE"], ignore_errors=True)


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_subscriber_back_after_the_vendor_url_died_downloads_the_durable_copy(
    stack: Stack,
) -> None:
    with SubscriberServer(default_status=503) as subscriber:  # down for now
        added = stack.relay_json("subscribers", "add", subscriber.url)
        subscriber.secrets.append(added["secret"])
        submitted = stack.api(
            "POST", "/api/tasks", json={"image": DATA_URI, "prompt": "a lighthouse"}
        )
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["job_id"]

        def copied() -> dict[str, Any] | None:
            job = stack.api("GET", f"/api/tasks/{job_id}").json()
            for event in job.get("events", []):
                if event["type"] == "task.succeeded":
                    artifacts = event["data"]["artifacts"]
                    if artifacts and "durable_url" in artifacts[0]:
                        return artifacts[0]  # type: ignore[no-any-return]
            return None

        artifact = wait_for(copied, 30, "the durable copy")
        assert subscriber.wait_for_arrivals(1, timeout=15) >= 1  # tried, and failed: down

        stack.processes[0].stop()  # the simulator, so the vendor's URL is dead now
        with pytest.raises(requests.ConnectionError):
            requests.get(artifact["url"], timeout=5)

        subscriber.default_status = 204  # back
        got = subscriber.wait_for(
            lambda rs: any(
                r.verified and r.status_answered == 204 and r.body["type"] == "task.succeeded"  # type: ignore[index]
                for r in rs
            ),
            timeout=30,
        )
    (event,) = [r.body for r in got if r.verified and r.body and r.status_answered == 204]
    durable = event["data"]["artifacts"][0]["durable_url"]
    assert durable == artifact["durable_url"] and durable.startswith(stack.base + "/artifacts/")
    video = requests.get(durable, timeout=10)
    web = next(p for p in stack.processes if p.name == "web")
    # gevent patched before anything imported ssl (gunicorn.conf.py); patched late, the web's
    # first boto3 (or https) client recursed forever and this download answered 500.
    assert "MonkeyPatchWarning" not in web.output()
    assert video.status_code == 200 and video.content == FAKE_MP4
    assert video.headers["Content-Type"] == "video/mp4"
