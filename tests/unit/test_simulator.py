"""The useapi.net simulator over real HTTP on loopback.

Each test serves a fresh simulator app with werkzeug's threaded server and, where callbacks matter,
a second tiny WSGI server that records what the simulator posts to it. Waits poll with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from simulator import SimulatorConfig, create_app, get_state
from simulator.state import SimulatorState

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parents[2]
TASK_ID_RE = re.compile(r"^user:\d+-runwayml:[^-]+@[^-]+-task:[0-9a-f-]{36}$")
ASSET_ID_RE = re.compile(r"^user:\d+-runwayml:[^-]+@[^-]+-asset:[0-9a-f-]{36}$")

# Smallest headers that pass the simulator's magic-byte checks (PNG with a 1280x768 IHDR).
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x05\x00\x00\x00\x03\x00\x08\x02\x00\x00\x00"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = b"GIF89a\x10\x00\x20\x00\x80\x00\x00"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wait_until(predicate: Callable[[], bool], timeout: float = 4.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)


@dataclass
class Served:
    """A WSGI app served on a free loopback port in a background thread."""

    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(2)


def serve(app: WSGIApp) -> Served:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    return Served(server, thread)


@dataclass
class Received:
    """One callback as the collector saw it."""

    path: str
    query: str
    body: dict[str, Any]


class Collector:
    """A WSGI app that records JSON posts and answers ``status`` (200 unless a test changes it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.status = 200

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        with self.lock:
            self.received.append(Received(environ["PATH_INFO"], environ["QUERY_STRING"], body))
        start_response(f"{self.status} Whatever", [("Content-Type", "application/json")])
        return [b"{}"]

    def bodies(self, task_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received if task_id in (None, r.body.get("taskId"))]

    def wait_terminal(self, task_id: str, count: int = 1) -> list[dict[str, Any]]:
        """All bodies of ``task_id`` once ``count`` terminal ones have arrived."""

        def done() -> bool:
            terminal = [b for b in self.bodies(task_id) if b["status"] in ("SUCCEEDED", "FAILED")]
            return len(terminal) >= count

        wait_until(done)
        return self.bodies(task_id)


class Sim:
    """A running simulator plus helpers for its vendor and control routes."""

    def __init__(self, served: Served, state: SimulatorState) -> None:
        self.served = served
        self.state = state
        self.url = served.url
        self.http = requests.Session()
        self.http.trust_env = False

    def call(self, method: str, path: str, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 5)
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def upload(self, data: bytes = PNG, content_type: str = "image/png") -> str:
        response = self.call(
            "POST", "/assets/?name=frame", data=data, headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, response.text
        asset_id = response.json()["assetId"]
        assert isinstance(asset_id, str)
        return asset_id

    def create(self, body: dict[str, Any], endpoint: str = "gen3turbo") -> requests.Response:
        return self.call("POST", f"/{endpoint}/create", json=body)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            response = self.call("GET", f"/_sim/{path}", auth=False)
        else:
            response = self.call("POST", f"/_sim/{path}", auth=False, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def join_task_threads(self) -> None:
        for thread in list(self.state.threads):
            thread.join(4)
            assert not thread.is_alive()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    """The callback collector and its base URL."""
    app = Collector()
    served = serve(app)
    yield app, served.url
    served.close()


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Sim]]:
    """Start simulators with fast defaults (override any SimulatorConfig field by keyword)."""
    started: list[Sim] = []

    def start(**overrides: Any) -> Sim:
        settings: dict[str, Any] = {
            "token": TOKEN,
            "start_delay": 0.01,
            "step_delay": 0.02,
            "callback_timeout": 2.0,
        }
        settings.update(overrides)
        app = create_app(SimulatorConfig(**settings))
        sim = Sim(serve(app), get_state(app))
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.state.shutdown(timeout=2)
        sim.http.close()
        sim.served.close()


@pytest.fixture
def sim(make_sim: Callable[..., Sim]) -> Sim:
    return make_sim()


# -- create and callbacks ---------------------------------------------------------------------


def test_create_answers_pending_task_and_callbacks_follow(
    sim: Sim, collector: tuple[Collector, str]
) -> None:
    received, base = collector
    asset = sim.upload()
    assert ASSET_ID_RE.match(asset)
    reply_url = f"{base}/callbacks/useapi?job=42&note=a%20b"
    response = sim.create(
        {
            "firstImage_assetId": asset,
            "text_prompt": "a lighthouse at dusk",
            "seconds": 10,
            "seed": 7,
            "replyUrl": reply_url,
            "replyRef": "ref-1",
        }
    )
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "PENDING"
    assert task["taskType"] == "gen3a_turbo"
    assert TASK_ID_RE.match(task["taskId"])
    assert task["taskId"].endswith(task["id"])
    assert (task["replyUrl"], task["replyRef"], task["code"]) == (reply_url, "ref-1", 200)
    assert task["options"]["seconds"] == 10
    assert task["options"]["seed"] == 7
    assert task["options"]["text_prompt"] == "a lighthouse at dusk"
    assert len(task["options"]["keyframes"]) == 1

    bodies = received.wait_terminal(task["taskId"])
    assert [b["status"] for b in bodies] == ["RUNNING", "RUNNING", "SUCCEEDED"]
    assert {r.query for r in received.received} == {"job=42&note=a%20b"}
    assert {r.path for r in received.received} == {"/callbacks/useapi"}
    for body in bodies:
        assert body["replyRef"] == "ref-1"
        assert body["taskId"] == task["taskId"]
        assert "simulatorNote" in body  # an unknown vendor field, to be tolerated
        assert body["options"]["seed"] == 7
    ratios = [b["progressRatio"] for b in bodies]
    assert isinstance(ratios[0], str) and isinstance(ratios[1], float)
    assert float(ratios[0]) < ratios[1] < float(ratios[2]) == 1.0
    assert ratios[2] == "1"

    artifact = bodies[-1]["artifacts"][0]
    assert "/_sim/artifacts/" in artifact["url"] and "sig=" in artifact["url"]
    assert isinstance(artifact["fileSize"], str)
    assert artifact["metadata"]["duration"] == 10
    video = sim.http.get(artifact["url"], timeout=5)
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"

    current = sim.call("GET", f"/tasks/{task['taskId']}").json()
    assert current["status"] == "SUCCEEDED"
    assert current["artifacts"][0]["url"] == artifact["url"]
    wait_until(lambda: sim.control("stats")["callbacks_sent"] == 3)
    attempts = sim.control("callbacks")
    assert [a["http_status"] for a in attempts] == [200, 200, 200]
    assert {a["url"] for a in attempts} == {reply_url}


def test_multipart_form_create(sim: Sim) -> None:
    response = sim.call(
        "POST",
        "/gen3turbo/create",
        files={"seconds": (None, "10"), "exploreMode": (None, "true"), "zoom": (None, "-3")},
    )
    assert response.status_code == 200, response.text
    options = response.json()["options"]
    assert (options["seconds"], options["exploreMode"], options["camera"]["z"]) == (10, True, -3)


@pytest.mark.parametrize(
    ("prompt", "error_check"),
    [
        ("[sim:fail] a bad day", lambda error: isinstance(error, str) and error),
        ("[sim:moderate]", lambda error: error["moderation_category"] and error["tally_asimov"]),
    ],
)
def test_failure_directives(
    sim: Sim, collector: tuple[Collector, str], prompt: str, error_check: Callable[[Any], Any]
) -> None:
    received, base = collector
    task = sim.create({"text_prompt": prompt, "replyUrl": f"{base}/cb"}).json()
    final = received.wait_terminal(task["taskId"])[-1]
    assert final["status"] == "FAILED"
    assert final["artifacts"] == []
    assert error_check(final["error"])


def test_duplicate_and_steps_directives(sim: Sim, collector: tuple[Collector, str]) -> None:
    received, base = collector
    task = sim.create({"text_prompt": "x [sim:dup] [sim:steps=0]", "replyUrl": f"{base}/cb"})
    bodies = received.wait_terminal(task.json()["taskId"], count=2)
    assert [b["status"] for b in bodies] == ["SUCCEEDED", "SUCCEEDED"]
    assert bodies[0]["artifacts"] == bodies[1]["artifacts"]


def test_shuffle_sends_terminal_before_some_progress(
    sim: Sim, collector: tuple[Collector, str]
) -> None:
    received, base = collector
    prompt = "[sim:shuffle][sim:steps=3][sim:delay=0.01]"
    task_id = sim.create({"text_prompt": prompt, "replyUrl": f"{base}/cb"}).json()["taskId"]
    wait_until(lambda: len(received.bodies(task_id)) == 4)
    statuses = [b["status"] for b in received.bodies(task_id)]
    assert sorted(statuses) == ["RUNNING", "RUNNING", "SUCCEEDED", "THROTTLED"]
    assert statuses[-1] != "SUCCEEDED"
    sim.join_task_threads()
    # The task itself still moved forward in order.
    assert sim.call("GET", f"/tasks/{task_id}").json()["status"] == "SUCCEEDED"


def test_bad_directive_is_refused(sim: Sim) -> None:
    response = sim.create({"text_prompt": "[sim:steps=lots]"})
    assert response.status_code == 400
    assert "directive" in response.json()["error"]


def test_extra_callback_overlays_the_task(sim: Sim, collector: tuple[Collector, str]) -> None:
    received, base = collector
    task_id = sim.create({"replyUrl": f"{base}/cb?k=v", "replyRef": "r"}).json()["taskId"]
    received.wait_terminal(task_id)
    result = sim.control(f"tasks/{task_id}/callback", {"status": "RUNNING", "progressRatio": 0.5})
    assert result["attempt"]["http_status"] == 200
    late = received.bodies(task_id)[-1]
    assert (late["status"], late["progressRatio"], late["replyRef"]) == ("RUNNING", 0.5, "r")
    assert received.received[-1].query == "k=v"
    # The stored task is unchanged.
    assert sim.call("GET", f"/tasks/{task_id}").json()["status"] == "SUCCEEDED"


def test_failed_callbacks_are_recorded_and_retried_when_configured(
    make_sim: Callable[..., Sim], collector: tuple[Collector, str]
) -> None:
    received, base = collector
    received.status = 500
    sim = make_sim(progress_steps=0, callback_retries=1, callback_retry_delay=0.01)
    sim.create({"replyUrl": f"{base}/cb"})
    wait_until(lambda: sim.control("stats")["callbacks_failed"] == 2)
    attempts = sim.control("callbacks")
    assert [(a["attempt"], a["http_status"], a["ok"]) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
    ]


# -- auth, validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/gen3turbo/create"),
        ("POST", "/gen4turbo/create"),
        ("POST", "/videos/create"),
        ("POST", "/assets/?name=x"),
        ("GET", "/tasks/some-task"),
        ("GET", "/scheduler/"),
        ("DELETE", "/scheduler/some-task"),
    ],
)
def test_vendor_routes_need_the_token(sim: Sim, method: str, path: str) -> None:
    missing = sim.call(method, path, auth=False, json={})
    wrong = sim.call(method, path, auth=False, json={}, headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized", "code": 401}
    assert sim.control("stats")["creates"] == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"seconds": 7}, "seconds"),
        ({"seconds": "5"}, "seconds"),
        ({"seed": 0}, "seed"),
        ({"seed": 4294967295}, "seed"),
        ({"static": True, "zoom": 3}, "static"),
        ({"horizontal": 11}, "horizontal"),
        ({"aspect_ratio": "16:9"}, "aspect_ratio"),
        ({"exploreMode": "yes"}, "exploreMode"),
        ({"maxJobs": 11}, "maxJobs"),
        ({"replyRef": "x" * 1025}, "replyRef"),
        ({"replyUrl": "https://example.com/" + "x" * 1010}, "replyUrl"),
        ({"replyUrl": "ftp://example.com/"}, "replyUrl"),
        ({"text_prompt": 5}, "text_prompt"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_gen3_validation(sim: Sim, body: dict[str, Any], fragment: str) -> None:
    response = sim.create(body)
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == 400
    assert fragment in data["error"]


def test_gen3_accepts_limits(sim: Sim) -> None:
    body = {
        "replyRef": "x" * 1024,
        "seed": 4294967294,
        "aspect_ratio": "portrait",
        "static": True,
        "maxJobs": 10,
    }
    response = sim.create(body)
    assert response.status_code == 200, response.text
    assert response.json()["options"]["camera"]["static"] is True


def test_body_must_be_a_json_object(sim: Sim) -> None:
    for data in (b"{not json", b"[1, 2]"):
        response = sim.call(
            "POST", "/gen3turbo/create", data=data, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["code"] == 400


def test_unknown_asset_is_404(sim: Sim) -> None:
    asset = "user:1234-runwayml:sim@example.com-asset:00000000-0000-0000-0000-000000000000"
    response = sim.create({"firstImage_assetId": asset})
    assert response.status_code == 404
    assert response.json() == {
        "error": f"Unable to retrieve assetId {asset} (Not found.)",
        "code": 404,
    }


def test_gen4turbo(sim: Sim) -> None:
    asset = sim.upload()
    missing = sim.create({"text_prompt": "x"}, endpoint="gen4turbo")
    assert missing.status_code == 400
    assert "firstImage_assetId" in missing.json()["error"]
    for extra in ({"lastImage_assetId": asset}, {"zoom": 1}, {"aspect_ratio": "landscape"}):
        refused = sim.create({"firstImage_assetId": asset, **extra}, endpoint="gen4turbo")
        assert refused.status_code == 400, extra

    task = sim.create({"firstImage_assetId": asset, "seconds": 5}, endpoint="gen4turbo").json()
    assert task["taskType"] == "gen4_turbo"
    assert task["options"]["aspect_ratio"] == "16:9"
    ok = sim.create({"firstImage_assetId": asset, "aspect_ratio": "21:9"}, endpoint="gen4turbo")
    assert ok.status_code == 200


def test_videos_create(sim: Sim) -> None:
    asset = sim.upload()
    assert sim.create({"text_prompt": "x"}, endpoint="videos").status_code == 400  # no model
    unknown = sim.create({"model": "gen9-ultra"}, endpoint="videos")
    assert unknown.status_code == 400 and "gen4-turbo" in unknown.json()["error"]

    body = {
        "model": "gen4-turbo",
        "imageAssetId1": asset,
        "text_prompt": "waves",
        "duration": 10,
        "aspect_ratio": "9:16",
    }
    response = sim.create(body, endpoint="videos")
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["taskType"] == "gen4_turbo"
    options = task["options"]
    assert (options["text_prompt"], options["seconds"], options["height"]) == ("waves", 10, 1280)
    assert options["model"] == "gen4-turbo"
    logged = sim.control("creates?endpoint=videos")
    # refused bodies are logged too, in order
    assert [item["body"].get("imageAssetId1") for item in logged] == [None, None, asset]
    stats = sim.control("stats")
    assert stats["creates_by_endpoint"] == {"gen3turbo": 0, "gen4turbo": 0, "videos": 3}

    kling = {"model": "kling-3.0-pro", "imageAssetId1": asset, "imageAssetId2": asset}
    created = sim.create({**kling, "duration": 15, "aspect_ratio": "1:1"}, endpoint="videos")
    assert created.status_code == 200, created.text
    assert len(created.json()["options"]["keyframes"]) == 2
    text_only = sim.create({"model": "gen4.5", "text_prompt": "t", "duration": 2}, "videos")
    assert text_only.status_code == 200, text_only.text
    assert text_only.json()["taskType"] == "gen4.5"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "gen4-turbo", "text_prompt": "t"}, "imageAssetId1 is required"),
        ({"model": "gen4-turbo", "imageAssetId1": "A"}, "text_prompt is required"),
        ({"model": "gen4-turbo", "imageAssetId1": "A", "imageAssetId2": "A"}, "imageAssetId2"),
        ({"model": "gen4", "imageAssetId1": "A", "text_prompt": "x" * 1001}, "1000 characters"),
        (
            {"model": "gen4-turbo", "imageAssetId1": "A", "text_prompt": "t", "duration": 7},
            "duration",
        ),
        (
            {"model": "gen4-turbo", "imageAssetId1": "A", "text_prompt": "t", "seconds": 5},
            "seconds",
        ),
        (
            {
                "model": "gen4-turbo",
                "imageAssetId1": "A",
                "text_prompt": "t",
                "aspect_ratio": "landscape",
            },
            "aspect_ratio",
        ),
        ({"model": "gen4.5", "text_prompt": "t", "aspect_ratio": "9:16"}, "aspect_ratio"),
        ({"model": "gen4.5", "duration": 11}, "duration"),
        ({"model": "kling-3.0-pro", "aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"model": "kling-3.0-pro", "imageAssetId2": "A"}, "requires imageAssetId1"),
        (
            {"model": "gen4-turbo", "firstImage_assetId": "A", "text_prompt": "t"},
            "firstImage_assetId",
        ),
        ({"model": "gen4-turbo", "imageAssetId1": "A", "prompt": "t"}, "prompt"),
        ({"model": "GEN4-TURBO", "imageAssetId1": "A", "text_prompt": "t"}, "model"),
        ({"model": "gen3a_turbo", "text_prompt": "t"}, "model"),
        # fields each model's row does not list are refused (the vendor's table, not ours)
        ({"model": "gen4.5", "resolution": "720p"}, "Unsupported parameter(s) for model gen4.5"),
        ({"model": "kling-3.0-pro", "exploreMode": True}, "exploreMode"),
        (
            {
                "model": "kling-2.6-i2v",
                "imageAssetId1": "A",
                "text_prompt": "t",
                "aspect_ratio": "16:9",
            },
            "aspect_ratio",
        ),
        ({"model": "gen4.5", "startFrameAssetId": "A"}, "startFrameAssetId"),
        ({"model": "seedance-2", "startFrameAssetId": "A", "imageAssetId1": "A"}, "combined"),
        ({"model": "seedance-2", "endFrameAssetId": "A"}, "requires startFrameAssetId"),
        ({"model": "seedance-2", "resolution": "4k"}, "resolution"),
        ({"model": "seedance-2", "duration": 3}, "duration"),
        ({"model": "kling-2.6-pro", "imageAssetId1": "A"}, "text_prompt is required"),
    ],
)
def test_videos_create_validation(sim: Sim, body: dict[str, Any], fragment: str) -> None:
    asset = sim.upload()
    filled = {key: asset if value == "A" else value for key, value in body.items()}
    response = sim.create(filled, endpoint="videos")
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert sim.control("stats")["tasks_created"] == 0


def test_seedance_references_and_keyframes(sim: Sim) -> None:
    asset = sim.upload()
    refs = {f"imageAssetId{i}": asset for i in range(1, 12)}
    many = sim.create({"model": "seedance-2", **refs, "resolution": "1080p"}, "videos")
    assert many.status_code == 200, many.text
    assert len(many.json()["options"]["references"]) == 11
    frames = {"startFrameAssetId": asset, "endFrameAssetId": asset, "duration": 15}
    keyframes = sim.create({"model": "seedance-2", **frames}, "videos")
    assert keyframes.status_code == 200, keyframes.text
    assert keyframes.json()["options"]["seconds"] == 15


# -- accounts -----------------------------------------------------------------------------------

A1, A2 = "one@example.com", "two@example.com"


def test_several_accounts_require_email_everywhere(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(accounts=[A1, A2], start_delay=30)
    png = {"data": PNG, "headers": {"Content-Type": "image/png"}}
    refused = sim.call("POST", "/assets/?name=f", **png)
    assert refused.status_code == 400 and "email is required" in refused.json()["error"]
    unknown = sim.call("POST", "/assets/?name=f&email=three@example.com", **png)
    assert unknown.status_code == 400 and "not configured" in unknown.json()["error"]
    uploaded = sim.call("POST", f"/assets/?email={A2}&name=f", **png)
    assert uploaded.status_code == 200
    asset = uploaded.json()["assetId"]
    assert f"-runwayml:{A2}-asset:" in asset

    body = {"model": "gen4.5", "imageAssetId1": asset, "replyRef": "r"}
    assert sim.create(body, "videos").status_code == 400  # no email
    # an asset is usable by the account that uploaded it only
    assert sim.create({**body, "email": A1}, "videos").status_code == 404
    created = sim.create({**body, "email": A2}, "videos")
    assert created.status_code == 200, created.text
    task_id = created.json()["taskId"]
    assert f"-runwayml:{A2}-task:" in task_id

    assert sim.call("GET", f"/tasks/{task_id}").status_code == 400
    assert sim.call("GET", f"/tasks/{task_id}?email={A1}").status_code == 404
    assert sim.call("GET", f"/tasks/{task_id}?email={A2}").status_code == 200
    assert sim.call("GET", "/scheduler/").status_code == 400
    assert sim.call("GET", f"/scheduler/?email={A1}").json() == []
    assert [e["replyRef"] for e in sim.call("GET", f"/scheduler/?email={A2}").json()] == ["r"]
    logged = sim.control("requests")
    assert (logged[-1]["path"], logged[-1]["email"]) == ("/scheduler/", A2)
    assert sim.call("DELETE", f"/scheduler/{task_id}?email={A2}").status_code == 200


def test_one_account_makes_email_optional_and_lists_accounts(
    make_sim: Callable[..., Sim],
) -> None:
    sim = make_sim(accounts=[A1, A2], account_errors={A1: "cookies expired"})
    accounts = sim.call("GET", "/accounts").json()
    assert accounts[A1]["error"] == "cookies expired" and "error" not in accounts[A2]
    single = make_sim()
    asset = single.upload()
    ok = single.create({"model": "gen4.5", "imageAssetId1": asset}, "videos")
    assert ok.status_code == 200, ok.text


def test_scheduler_has_no_slashless_alias(sim: Sim) -> None:
    missing = sim.call("GET", "/scheduler")
    assert missing.status_code == 404 and "trailing slash" in missing.json()["error"]
    assert sim.call("GET", "/scheduler/").status_code == 200


def test_task_ids_must_keep_colon_and_at_raw(sim: Sim) -> None:
    created = sim.create({"model": "gen4.5", "text_prompt": "t"}, "videos").json()
    task_id = created["taskId"]
    assert sim.call("GET", f"/tasks/{task_id}").status_code == 200
    encoded = task_id.replace(":", "%3A").replace("@", "%40")
    assert sim.call("GET", f"/tasks/{encoded}").status_code == 404


def test_wrapped_answers_on_demand_and_by_config(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    sim.control("next", {"outcomes": ["wrapped"]})
    wrapped = sim.create({"model": "gen4.5", "text_prompt": "t"}, "videos").json()
    assert wrapped["code"] == 200 and wrapped["task"]["taskId"] and "taskId" not in wrapped
    plain = sim.create({"model": "gen4.5", "text_prompt": "t"}, "videos").json()
    assert plain["taskId"]
    always = make_sim(wrap_answers=True)
    assert "task" in always.create({"model": "gen4.5", "text_prompt": "t"}, "videos").json()


def test_drop_connection_closes_after_the_task_started(sim: Sim) -> None:
    sim.control("next", {"outcomes": ["drop_connection"]})
    with pytest.raises(requests.ConnectionError):
        sim.create({"model": "gen4.5", "text_prompt": "t", "replyRef": "lost"}, "videos")
    stats = sim.control("stats")
    assert (stats["creates"], stats["tasks_created"]) == (1, 1)
    assert len(stats["tasks"]) == 1


# -- assets -----------------------------------------------------------------------------------


def test_asset_upload(sim: Sim) -> None:
    for path in ("/assets/?name=a", "/assets?name=a"):
        response = sim.call("POST", path, data=PNG, headers={"Content-Type": "image/png"})
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert ASSET_ID_RE.match(body["assetId"])
        assert (body["name"], body["width"], body["height"]) == ("a", 1280, 768)
    assert ASSET_ID_RE.match(sim.upload(JPEG, "image/jpeg"))
    assert ASSET_ID_RE.match(sim.upload(GIF, "image/gif"))

    refused = [
        ("/assets/?name=a", PNG, "image/webp"),
        ("/assets/?name=a", JPEG, "image/png"),
        ("/assets/?name=a", b"", "image/png"),
        ("/assets/", PNG, "image/png"),
    ]
    for path, data, content_type in refused:
        response = sim.call("POST", path, data=data, headers={"Content-Type": content_type})
        assert response.status_code == 400, (path, content_type)
        assert response.json()["code"] == 400
    assert sim.control("stats")["uploads"] == 8


# -- queued outcomes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "check"),
    [
        ("400", 400, lambda b: b["code"] == 400 and b["error"]),
        ("401", 401, lambda b: b == {"error": "Unauthorized", "code": 401}),
        ("404", 404, lambda b: b["error"].startswith("Unable to retrieve assetId")),
        ("412", 412, lambda b: b == {"error": "You do not have enough credits to run this task."}),
        ("422", 422, lambda b: "moderat" in b["error"] and b["code"] == 422),
        (
            "429",
            429,
            lambda b: (
                "sim@example.com is busy executing 5 tasks" in b["error"]
                and "sim@example.com" in b["runningTasks"]
            ),
        ),
        ("429_runway", 429, lambda b: "too many tasks running or pending" in b["error"]),
        ("500", 500, lambda b: b["code"] == 500),
    ],
)
def test_queued_outcomes(sim: Sim, outcome: str, status: int, check: Callable[[Any], Any]) -> None:
    queued = sim.control("next", {"outcomes": [outcome, "ok"], "retry_after": 12})
    assert queued == {"queued": [outcome, "ok"]}
    response = sim.create({"text_prompt": "x"})
    assert response.status_code == status
    assert check(response.json())
    if status == 429:
        assert response.headers["Retry-After"] == "12"
    assert sim.create({"text_prompt": "x"}).status_code == 200  # "ok" lets one through
    assert sim.create({"text_prompt": "x"}).status_code == 200  # then the queue is empty
    stats = sim.control("stats")
    assert (stats["creates"], stats["tasks_created"]) == (3, 2)


def test_busy_429_lists_running_tasks_and_queue_is_fifo(sim: Sim) -> None:
    live = sim.create({"text_prompt": "[sim:start=5]", "replyRef": "live-1"}).json()
    sim.control("next", {"outcomes": ["412"]})
    sim.control("next", {"outcomes": ["429"]})
    assert sim.control("next") == {"queued": ["412", "429"]}
    assert sim.create({}).status_code == 412
    busy = sim.create({})
    assert busy.status_code == 429
    assert "Retry-After" not in busy.headers
    running = busy.json()["runningTasks"]["sim@example.com"]
    assert [(r["taskId"], r["replyRef"]) for r in running] == [(live["taskId"], "live-1")]


def test_unknown_outcome_is_refused(sim: Sim) -> None:
    response = sim.call("POST", "/_sim/next", auth=False, json={"outcomes": ["418"]})
    assert response.status_code == 400
    assert sim.control("next") == {"queued": []}


def test_lose_answer_delays_the_answer_and_the_scheduler_lists_the_task(sim: Sim) -> None:
    sim.control("next", {"outcomes": ["lose_answer"], "lose_answer_seconds": 1.0})
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        sim.call(
            "POST",
            "/gen3turbo/create",
            json={"text_prompt": "[sim:start=5]", "replyRef": "lost-1"},
            timeout=(2, 0.3),
        )
    assert time.monotonic() - started < 1.0
    listed = sim.call("GET", "/scheduler/").json()
    assert [item["replyRef"] for item in listed] == ["lost-1"]
    assert TASK_ID_RE.match(listed[0]["taskId"])
    stats = sim.control("stats")
    assert (stats["creates"], stats["tasks_created"]) == (1, 1)


def test_max_jobs_config_answers_busy(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(max_jobs=1, start_delay=5)
    assert sim.create({}).status_code == 200
    assert sim.create({}).status_code == 429


# -- tasks, scheduler, stats ------------------------------------------------------------------


def test_scheduler_lists_live_tasks_only_and_delete_stops_callbacks(
    sim: Sim, collector: tuple[Collector, str]
) -> None:
    received, base = collector
    fast = sim.create({"replyUrl": f"{base}/cb", "replyRef": "fast"}).json()
    slow = sim.create({"text_prompt": "[sim:start=0.8]", "replyUrl": f"{base}/cb", "replyRef": "s"})
    slow_id = slow.json()["taskId"]
    received.wait_terminal(fast["taskId"])
    wait_until(lambda: sim.control("stats")["tasks"][fast["taskId"]] == "SUCCEEDED")

    listed = sim.call("GET", "/scheduler/").json()
    assert listed == [{"taskId": slow_id, "replyUrl": f"{base}/cb", "replyRef": "s"}]

    assert sim.call("DELETE", f"/scheduler/{slow_id}").status_code == 200
    assert sim.call("DELETE", f"/scheduler/{slow_id}").status_code == 404
    assert sim.call("DELETE", f"/scheduler/{fast['taskId']}").status_code == 404
    assert sim.call("GET", "/scheduler/").json() == []
    sim.join_task_threads()
    assert received.bodies(slow_id) == []  # no callback after DELETE /scheduler
    assert sim.control("stats")["scheduler_requests"] == 5


def test_stats_count_status_requests(sim: Sim) -> None:
    task_id = sim.create({}).json()["taskId"]
    for _ in range(3):
        response = sim.call("GET", f"/tasks/{task_id}")
        assert response.status_code == 200
        assert response.json()["taskId"] == task_id
    assert sim.call("GET", "/tasks/user:1-runwayml:x@y-task:nope").status_code == 404
    stats = sim.control("stats")
    assert stats["status_requests"] == 4
    assert stats["creates"] == 1
    assert task_id in stats["tasks"]


def test_task_progresses_without_reply_url(sim: Sim) -> None:
    task_id = sim.create({}).json()["taskId"]
    wait_until(lambda: sim.call("GET", f"/tasks/{task_id}").json()["status"] == "SUCCEEDED")
    assert sim.control("callbacks") == []


# -- control ----------------------------------------------------------------------------------


def test_config_updates_at_run_time(sim: Sim, collector: tuple[Collector, str]) -> None:
    received, base = collector
    updated = sim.control("config", {"progress_steps": 0, "outcome": "failed"})
    assert (updated["progress_steps"], updated["outcome"]) == (0, "failed")
    task_id = sim.create({"replyUrl": f"{base}/cb"}).json()["taskId"]
    assert [b["status"] for b in received.wait_terminal(task_id)] == ["FAILED"]

    for bad in ({"progress_steps": -1}, {"outcome": "maybe"}, {"no_such_field": 1}):
        response = sim.call("POST", "/_sim/config", auth=False, json=bad)
        assert response.status_code == 400, bad
    assert sim.control("config")["progress_steps"] == 0

    sim.control("config", {"token": "rotated"})
    assert sim.create({}).status_code == 401


def test_public_url_builds_artifact_urls(
    make_sim: Callable[..., Sim], collector: tuple[Collector, str]
) -> None:
    received, base = collector
    sim = make_sim(public_url="https://media.example/", progress_steps=0)
    task_id = sim.create({"replyUrl": f"{base}/cb"}).json()["taskId"]
    artifact = received.wait_terminal(task_id)[-1]["artifacts"][0]
    assert artifact["url"].startswith("https://media.example/_sim/artifacts/")
    response = sim.call("POST", "/_sim/config", auth=False, json={"public_url": "not a url"})
    assert response.status_code == 400


def test_reset_forgets_everything(sim: Sim) -> None:
    sim.create({})
    sim.control("next", {"outcomes": ["500"]})
    sim.control("reset", {})
    stats = sim.control("stats")
    assert stats["creates"] == 0 and stats["tasks"] == {} and stats["queued_outcomes"] == []


# -- command line -----------------------------------------------------------------------------


def test_command_line_prints_port_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", "--token", "T", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"simulator listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}"
        with requests.Session() as http:
            http.trust_env = False
            assert http.get(f"{url}/scheduler/", timeout=5).status_code == 401
            ok = http.get(f"{url}/scheduler/", headers={"Authorization": "Bearer T"}, timeout=5)
            assert ok.json() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
