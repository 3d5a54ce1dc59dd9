"""Models end to end: with no model named, `relay submit` and `POST /api/tasks` create on
`POST /videos/create` with `model: gen4.5`; `--model NAME` / `"model"` take the vendor's model
names and reach the right simulator endpoint with that endpoint's own field names; the task's
callbacks come back through gunicorn and the worker, and a verified `task.succeeded` reaches the
subscriber. Requests that do not fit their model (per the table in client/catalog.py) fail
before anything reaches the simulator (exit 2 / HTTP 422)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from simulator.demo import tiny_png
from simulator.subscriber import SubscriberServer
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

DATA_URI = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
ASSET_PREFIX = "user:1234-runwayml:sim@example.com-asset:"


def logged_creates(stack: Stack, endpoint: str) -> list[dict[str, Any]]:
    """Bodies the simulator received on ``endpoint`` (``GET /_sim/creates``), oldest first."""
    response = requests.get(stack.sim + "/_sim/creates", params={"endpoint": endpoint}, timeout=5)
    response.raise_for_status()
    return [item["body"] for item in response.json()]


def body_for(stack: Stack, endpoint: str, job_id: str) -> dict[str, Any]:
    """The one create body on ``endpoint`` that carries ``job_id``'s uploaded first image (each
    upload gets a fresh asset id; the job records it). Asks the vendor nothing."""
    request = stack.api("GET", f"/api/tasks/{job_id}").json()["request"]
    asset_id = request.get("first_image_asset_id") or request.get("start_frame_asset_id")
    mine = [
        body
        for body in logged_creates(stack, endpoint)
        if asset_id
        in (
            body.get("firstImage_assetId"),
            body.get("imageAssetId1"),
            body.get("startFrameAssetId"),
        )
    ]
    assert len(mine) == 1, (endpoint, asset_id, mine)
    return mine[0]


def wait_succeeded(server: SubscriberServer, job_id: str) -> dict[str, Any]:
    """The verified ``task.succeeded`` body for ``job_id`` (fails after 20 s)."""

    def arrived(received: list[Any]) -> bool:
        return any(
            r.body and r.body["type"] == "task.succeeded" and r.body["data"]["job_id"] == job_id
            for r in received
        )

    got = server.wait_for(arrived, timeout=20)
    mine = [r for r in got if r.body and r.body["data"]["job_id"] == job_id]
    assert mine and all(r.verified for r in mine), [r.error for r in mine]
    assert [r.body["type"] for r in mine if r.body] == ["task.succeeded"]
    assert mine[0].body is not None
    return mine[0].body


def submit(stack: Stack, **options: str) -> Any:
    """``relay submit`` with each of ``options`` as ``--name value`` (underscores written as
    dashes: ``last_image=…`` is ``--last-image …``); its JSON answer. Asserts that it exits 0."""
    flags = [
        arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", value)
    ]
    return stack.relay_json("submit", *flags)


def counts(stack: Stack) -> tuple[int, int, dict[str, int], int]:
    """(creates, uploads, creates per endpoint, jobs stored): what a refusal must not change."""
    stats = stack.sim_stats()
    jobs = stack.api("GET", "/api/tasks", params={"limit": 200}).json()["items"]
    return stats["creates"], stats["uploads"], stats["creates_by_endpoint"], len(jobs)


# -- relay submit ---------------------------------------------------------------------------


def test_cli_default_is_gen45_on_videos_create(
    stack: Stack, subscriber: SubscriberServer, image: str
) -> None:
    before = stack.sim_stats()
    submitted = submit(stack, image=image, prompt="a paper boat")
    assert (submitted["model"], submitted["endpoint"]) == ("gen4.5", "/videos/create")
    assert submitted["task_id"]
    event = wait_succeeded(subscriber, submitted["job_id"])
    assert event["data"]["model"] == "gen4.5"

    body = body_for(stack, "videos", submitted["job_id"])
    assert body.pop("imageAssetId1").startswith(ASSET_PREFIX)
    assert body.pop("replyUrl") and body.pop("replyRef")
    assert body == {"model": "gen4.5", "text_prompt": "a paper boat"}
    after = stack.sim_stats()
    assert after["creates_by_endpoint"]["videos"] == before["creates_by_endpoint"]["videos"] + 1
    assert after["creates_by_endpoint"]["gen3turbo"] == before["creates_by_endpoint"]["gen3turbo"]
    assert after["status_requests"] == before["status_requests"] == 0


def test_cli_vendor_model_names_pick_the_endpoint(
    stack: Stack, subscriber: SubscriberServer, image: str
) -> None:
    submitted = submit(
        stack, model="seedance-2", image=image, last_image=image, resolution="1080p", seconds="12"
    )
    assert (submitted["model"], submitted["endpoint"]) == ("seedance-2", "/videos/create")
    wait_succeeded(subscriber, submitted["job_id"])
    body = body_for(stack, "videos", submitted["job_id"])
    assert body["startFrameAssetId"].startswith(ASSET_PREFIX)
    assert body["endFrameAssetId"].startswith(ASSET_PREFIX)
    assert (body["model"], body["resolution"], body["duration"]) == ("seedance-2", "1080p", 12)
    assert "imageAssetId1" not in body


def test_cli_unlisted_model_is_passed_through_with_a_warning(stack: Stack, image: str) -> None:
    # The simulator plays only the table's models, so it refuses veo-3.1 as a vendor would
    # refuse a name it does not know: the point is that the client sent it, after a warning.
    result = stack.relay("submit", "--model", "veo-3.1", "--image", image, check=False)
    assert "warning: model 'veo-3.1' is not in runway-relay's table" in result.stderr
    assert result.returncode == 1, result.stderr
    sent = logged_creates(stack, "videos")[-1]
    assert sent["model"] == "veo-3.1"


def test_cli_gen3turbo_refusal_advises_a_live_model(stack: Stack, image: str) -> None:
    requests.post(stack.sim + "/_sim/next", json={"outcomes": ["400"]}, timeout=5)
    result = stack.relay("submit", "--model", "gen3turbo", "--image", image, check=False)
    assert result.returncode == 1, result.stderr
    assert "BadRequest" in result.stderr
    assert "Runway retired Gen-3 Alpha Turbo" in result.stderr and "gen4.5" in result.stderr
    job = stack.api("GET", f"/api/tasks/{json.loads(result.stdout)['job_id']}").json()
    assert job["status"] == "SUBMIT_FAILED" and "gen4.5" in job["error"]["advice"]


def test_cli_gen4turbo(stack: Stack, subscriber: SubscriberServer, image: str) -> None:
    before = stack.sim_stats()["creates_by_endpoint"]
    submitted = submit(
        stack,
        model="gen4turbo",
        image=image,
        prompt="a glacier calving",
        seconds="10",
        aspect_ratio="21:9",
        seed="42",
        metadata=json.dumps({"order": "G4"}),
    )
    assert submitted["model"] == "gen4turbo" and submitted["task_id"]

    event = wait_succeeded(subscriber, submitted["job_id"])
    data = event["data"]
    assert (data["model"], data["status"], data["metadata"]) == (
        "gen4turbo",
        "SUCCEEDED",
        {"order": "G4"},
    )
    assert data["artifacts"][0]["url"].startswith("http")

    body = body_for(stack, "gen4turbo", submitted["job_id"])
    assert body.pop("firstImage_assetId").startswith(ASSET_PREFIX)
    assert body.pop("replyUrl") == stack.base + "/callbacks/useapi"
    assert body.pop("replyRef")
    assert body == {
        "text_prompt": "a glacier calving",
        "seconds": 10,
        "aspect_ratio": "21:9",
        "seed": 42,
    }
    after = stack.sim_stats()["creates_by_endpoint"]
    assert after["gen4turbo"] == before["gen4turbo"] + 1
    assert (after["gen3turbo"], after["videos"]) == (before["gen3turbo"], before["videos"])


def test_cli_videos_maps_seconds_to_duration(
    stack: Stack, subscriber: SubscriberServer, image: str
) -> None:
    submitted = submit(
        stack,
        model="videos",
        video_model="gen4-turbo",
        image=image,
        prompt="rain on a tin roof",
        seconds="10",
        aspect_ratio="9:16",
    )
    event = wait_succeeded(subscriber, submitted["job_id"])
    assert event["data"]["model"] == "gen4-turbo"  # the alias records the vendor's model

    body = body_for(stack, "videos", submitted["job_id"])
    assert body.pop("imageAssetId1").startswith(ASSET_PREFIX)
    assert body.pop("replyUrl") and body.pop("replyRef")
    assert body == {
        "model": "gen4-turbo",
        "text_prompt": "rain on a tin roof",
        "duration": 10,
        "aspect_ratio": "9:16",
    }


def test_cli_vendor_refusal_marks_the_job_failed(stack: Stack, image: str) -> None:
    # The simulator checks each model's rules itself (its own copy of the vendor's table);
    # here it refuses once on demand, as the vendor may for reasons of its own.
    before = stack.sim_stats()["creates_by_endpoint"]["videos"]
    requests.post(stack.sim + "/_sim/next", json={"outcomes": ["400"]}, timeout=5)
    result = stack.relay("submit", "--model", "gen4.5", "--image", image, check=False)
    assert result.returncode == 1, result.stderr
    assert "BadRequest" in result.stderr
    job = stack.api("GET", f"/api/tasks/{json.loads(result.stdout)['job_id']}").json()
    assert (job["status"], job["model"]) == ("SUBMIT_FAILED", "gen4.5")
    assert stack.sim_stats()["creates_by_endpoint"]["videos"] == before + 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "gen4turbo", "--prompt", "no image"], "gen4turbo needs a first image"),
        (["--model", "gen4turbo", "--image", "IMG", "--last-image", "IMG"], "takes no last image"),
        (["--model", "gen4turbo", "--image", "IMG", "--aspect-ratio", "landscape"], "aspect_ratio"),
        (["--model", "videos", "--image", "IMG"], "--video-model"),
        (
            ["--model", "videos", "--video-model", "gen4-turbo", "--option", "seconds=10"],
            "its video length is 'duration'",
        ),
        (["--model", "gen4-turbo", "--image", "IMG"], "gen4-turbo needs text_prompt"),
        (["--image", "IMG", "--seconds", "11"], "duration 11 is not allowed; allowed: 2..10"),
        (["--image", "IMG", "--aspect-ratio", "5:4"], "aspect_ratio '5:4' is not allowed"),
        (["--aspect-ratio", "9:16"], "allowed: 16:9"),
        (["--model", "gen4", "--prompt", "x"], "gen4 needs a first image"),
        (["--image", "IMG", "--last-image", "IMG"], "gen4.5 takes no last image"),
        (
            [
                "--model",
                "kling-2.6-i2v",
                "--image",
                "IMG",
                "--prompt",
                "x",
                "--aspect-ratio",
                "1:1",
            ],
            "kling-2.6-i2v does not take 'aspect_ratio'",
        ),
        (["--image", "IMG", "--resolution", "720p"], "gen4.5 does not take 'resolution'"),
    ],
)
def test_cli_refuses_before_any_request(
    stack: Stack, image: str, args: list[str], fragment: str
) -> None:
    before = counts(stack)
    argv = [image if arg == "IMG" else arg for arg in args]
    result = stack.relay("submit", *argv, check=False)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert counts(stack) == before


# -- POST /api/tasks ------------------------------------------------------------------------


def test_api_chooses_the_endpoint(stack: Stack, subscriber: SubscriberServer) -> None:
    submissions = {
        "gen4.5": {"image": DATA_URI, "prompt": "default model"},
        "gen3turbo": {"model": "gen3turbo", "image": DATA_URI, "prompt": "gen-3"},
        "gen4turbo": {
            "model": "gen4turbo",
            "image": DATA_URI,
            "prompt": "a kite",
            "options": {"aspect_ratio": "1:1", "seconds": 5},
        },
        "videos": {
            "model": "videos",
            "video_model": "gen4-turbo",
            "image": DATA_URI,
            "prompt": "a kite",
            "options": {"duration": 5, "aspect_ratio": "4:3"},
        },
    }
    expected = {"gen4.5": "gen4.5", "gen3turbo": "gen3turbo", "gen4turbo": "gen4turbo"}
    expected["videos"] = "gen4-turbo"
    jobs = {}
    for key, payload in submissions.items():
        response = stack.api("POST", "/api/tasks", json=payload)
        assert response.status_code == 201, response.text
        assert response.json()["model"] == expected[key]
        jobs[key] = response.json()["job_id"]
    for key, job_id in jobs.items():
        assert wait_succeeded(subscriber, job_id)["data"]["model"] == expected[key]

    default = body_for(stack, "videos", jobs["gen4.5"])
    assert (default["model"], default["text_prompt"]) == ("gen4.5", "default model")
    gen3 = body_for(stack, "gen3turbo", jobs["gen3turbo"])
    assert "firstImage_assetId" in gen3 and "model" not in gen3
    gen4 = body_for(stack, "gen4turbo", jobs["gen4turbo"])
    assert (gen4["aspect_ratio"], gen4["seconds"]) == ("1:1", 5)
    videos = body_for(stack, "videos", jobs["videos"])
    assert (videos["model"], videos["duration"], videos["aspect_ratio"]) == ("gen4-turbo", 5, "4:3")
    assert "imageAssetId1" in videos and "seconds" not in videos


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"model": "gen4turbo", "prompt": "no image"}, "gen4turbo needs a first image"),
        ({"model": "gen4turbo", "image": DATA_URI, "last_image": DATA_URI}, "takes no last image"),
        (
            {"model": "gen4turbo", "image": DATA_URI, "options": {"aspect_ratio": "5:4"}},
            "aspect_ratio",
        ),
        (
            {
                "model": "videos",
                "video_model": "gen4-turbo",
                "image": DATA_URI,
                "options": {"seconds": 5},
            },
            "its video length is 'duration'",
        ),
        ({"model": "videos", "image": DATA_URI}, "video_model"),
        ({"model": "gen3turbo", "video_model": "gen4-turbo"}, "model videos only"),
        ({"model": "gen4 turbo"}, "model"),
        ({"model": "gen4-turbo", "image": DATA_URI}, "gen4-turbo needs text_prompt"),
        ({"options": {"duration": 12}}, "duration 12 is not allowed; allowed: 2..10"),
    ],
)
def test_api_refuses_before_any_request(
    stack: Stack, payload: dict[str, Any], fragment: str
) -> None:
    before = counts(stack)
    response = stack.api("POST", "/api/tasks", json=payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert fragment in error["message"], error
    assert counts(stack) == before
