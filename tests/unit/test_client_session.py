"""UseapiClient over real HTTP on loopback: a scripted stand-in for useapi.net in a thread."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from client import (
    AccountBusy,
    BadRequest,
    ConnectFailed,
    Gen3TurboRequest,
    Gen4TurboRequest,
    InsufficientCredits,
    LoadedImage,
    Moderated,
    NotFound,
    OutcomeUnknown,
    Unauthorized,
    UnexpectedResponse,
    UseapiClient,
    UseapiError,
    VendorServerError,
    VendorTask,
    VideosCreateRequest,
)
from tests.helpers import serving

TOKEN = "tok-very-secret-123"
REPLY_URL = "https://relay.example/callbacks/useapi?x=1"
REPLY_REF = "signed.reply.ref"
TASK_ID = "user:1-runwayml:someone@example.com-task:0b6a2c1e"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
READ_TIMEOUT = 0.3


# ---------------------------------------------------------------------------------------------
# The scripted vendor
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list → JSON; bytes → raw
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Read the request, then answer nothing until released (the client's read times out)."""


@dataclass
class Drop:
    """Read the request, then close the connection without answering (reset after send)."""


Action = Reply | Hang | Drop


def busy(retry_after: str) -> Reply:
    """The vendor's 429 (account busy) with ``Retry-After: retry_after``."""
    return Reply(429, {"error": "busy"}, {"Retry-After": retry_after})


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class FakeUseapi:
    """Routes ``(method, path)`` to a list of actions used in order; the last one repeats."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/v1/runwayml"
        self.script: dict[tuple[str, str], list[Action]] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def on(self, method: str, path: str, *actions: Action) -> None:
        self.script[(method, "/v1/runwayml" + path)] = list(actions)

    def next_action(self, method: str, path: str) -> Action:
        with self.lock:
            actions = self.script.get((method, path))
            if not actions:
                return Reply(599, {"error": f"unscripted {method} {path}"})
            return actions.pop(0) if len(actions) > 1 else actions[0]

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == "/v1/runwayml" + path]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeUseapi


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        with fake.lock:
            fake.seen.append(
                Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
            )
        action = fake.next_action(self.command, parts.path)
        if isinstance(action, Hang):
            fake.release.wait(5)
            self.close_connection = True
            return
        if isinstance(action, Drop):
            self.close_connection = True
            return
        payload = (
            action.body if isinstance(action.body, bytes) else json.dumps(action.body).encode()
        )
        self.send_response(action.status)
        headers = {"Content-Type": "application/json", **action.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _handle
    do_POST = _handle
    do_DELETE = _handle


@pytest.fixture
def vendor() -> Iterator[FakeUseapi]:
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeUseapi(server)
    server.fake = fake
    with serving(server):
        try:
            yield fake
        finally:
            fake.release.set()  # let held answers go before the server shuts down


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def client(vendor: FakeUseapi, delays: list[float]) -> Iterator[UseapiClient]:
    with UseapiClient(
        TOKEN,
        base_url=vendor.url,
        connect_timeout=1.0,
        read_timeout=READ_TIMEOUT,
        busy_retries=3,
        sleep=delays.append,
        rng=random.Random(0),
    ) as c:
        yield c


def task_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "taskId": TASK_ID,
        "id": "0b6a2c1e",
        "taskType": "gen3a_turbo",
        "status": "PENDING",
        "progressRatio": None,
        "artifacts": [],
        "error": None,
        "replyUrl": REPLY_URL,
        "replyRef": REPLY_REF,
        "features": {"storageGB": 500},
        "code": 200,
    }
    body.update(overrides)
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


GEN3 = Gen3TurboRequest(first_image_asset_id="asset-1", text_prompt="a fox", zoom=2)


# ---------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------


def test_create_posts_vendor_json_with_bearer_and_returns_the_task(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/gen3turbo/create", Reply(200, task_body()))

    task = client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert isinstance(task, VendorTask)
    assert task.taskId == TASK_ID
    assert task.status == "PENDING"
    assert task.model_extra == {"features": {"storageGB": 500}}
    [seen] = vendor.requests_to("POST", "/gen3turbo/create")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {
        "firstImage_assetId": "asset-1",
        "text_prompt": "a fox",
        "zoom": 2,
        "replyUrl": REPLY_URL,
        "replyRef": REPLY_REF,
    }


@pytest.mark.parametrize(
    ("request_model", "path"),
    [
        (Gen4TurboRequest(first_image_asset_id="a", seconds=10), "/gen4turbo/create"),
        (VideosCreateRequest(model="gen4.5", first_image_asset_id="a"), "/videos/create"),
    ],
)
def test_typed_wrappers_post_to_their_endpoint(
    vendor: FakeUseapi,
    client: UseapiClient,
    request_model: Gen4TurboRequest | VideosCreateRequest,
    path: str,
) -> None:
    vendor.on("POST", path, Reply(200, task_body()))
    if isinstance(request_model, Gen4TurboRequest):
        task = client.create_gen4turbo(request_model, REPLY_URL, REPLY_REF)
    else:
        task = client.create_video(request_model, REPLY_URL, REPLY_REF)
    assert task.taskId == TASK_ID
    assert len(vendor.requests_to("POST", path)) == 1


def test_create_gen3turbo_wrapper(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("POST", "/gen3turbo/create", Reply(200, task_body()))
    assert client.create_gen3turbo(GEN3, REPLY_URL, REPLY_REF).taskId == TASK_ID


def test_busy_twice_with_retry_after_zero_then_success(
    vendor: FakeUseapi, client: UseapiClient, delays: list[float]
) -> None:
    busy = Reply(
        429,
        {"error": "You have too many tasks running or pending. Please wait."},
        {"Retry-After": "0"},
    )
    vendor.on("POST", "/gen3turbo/create", busy, busy, Reply(200, task_body()))

    task = client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert task.taskId == TASK_ID
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 3
    assert delays == [1.0, 1.0]  # Retry-After 0 clamped up to 1 s


def test_busy_without_retry_after_uses_jitter_then_gives_up(
    vendor: FakeUseapi, delays: list[float]
) -> None:
    running = {
        "someone@example.com": [
            {"email": "someone@example.com", "taskId": "t1", "replyRef": "r1"},
            {"email": "someone@example.com", "taskId": "t2", "replyRef": "r2"},
        ]
    }
    body = {
        "error": "Account someone@example.com is busy executing 2 tasks",
        "runningTasks": running,
        "code": 429,
    }
    vendor.on("POST", "/gen3turbo/create", Reply(429, body))
    with (
        UseapiClient(
            TOKEN, base_url=vendor.url, busy_retries=2, sleep=delays.append, rng=random.Random(0)
        ) as c,
        pytest.raises(AccountBusy) as caught,
    ):
        c.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 3
    assert len(delays) == 2
    assert all(10.0 <= d <= 30.0 for d in delays)
    error = caught.value
    assert error.http_status == 429
    assert error.code == 429
    assert "busy executing 2 tasks" in error.message
    assert error.running_tasks is not None
    assert [t["taskId"] for t in error.running_tasks] == ["t1", "t2"]


def test_large_retry_after_is_clamped_to_120_seconds(
    vendor: FakeUseapi, client: UseapiClient, delays: list[float]
) -> None:
    vendor.on("POST", "/gen3turbo/create", busy("900"), Reply(200, task_body()))
    client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)
    assert delays == [120.0]


def test_busy_delay_is_jittered_within_10_to_30_seconds_and_seeded(vendor: FakeUseapi) -> None:
    a = UseapiClient(TOKEN, base_url=vendor.url, rng=random.Random(0))
    b = UseapiClient(TOKEN, base_url=vendor.url, rng=random.Random(0))
    with a, b:
        first = [a._busy_delay(attempt) for attempt in range(12)]
        second = [b._busy_delay(attempt) for attempt in range(12)]
    assert first == second
    assert all(10.0 <= d <= 30.0 for d in first)
    assert len(set(first)) > 1


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (400, {"error": "text_prompt too long", "code": 400}, BadRequest),
        (401, {"error": "Unauthorized", "code": 401}, Unauthorized),
        (404, {"error": "Unable to retrieve assetId asset-1 (Not found.)", "code": 404}, NotFound),
        (412, {"error": "You do not have enough credits to run this task."}, InsufficientCredits),
        (422, {"error": "Prompt was moderated", "code": 422}, Moderated),
        (500, {"error": "Internal error", "code": 500}, VendorServerError),
        (503, b"<html>down</html>", VendorServerError),
        (418, {"error": "teapot"}, UnexpectedResponse),
    ],
)
def test_error_answers_raise_at_once_and_are_never_resent(
    vendor: FakeUseapi,
    client: UseapiClient,
    delays: list[float],
    status: int,
    body: Any,
    error_class: type[UseapiError],
) -> None:
    vendor.on("POST", "/gen3turbo/create", Reply(status, body))

    with pytest.raises(error_class) as caught:
        client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert type(caught.value) is error_class
    assert caught.value.http_status == status
    if isinstance(body, dict):
        assert caught.value.message == body["error"]
        assert caught.value.code == body.get("code")
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1
    assert vendor.requests_to("GET", "/scheduler/") == []
    assert delays == []


def test_lost_answer_is_found_in_scheduler_with_exactly_one_create(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/gen3turbo/create", Hang())
    vendor.on(
        "GET",
        "/scheduler/",
        Reply(
            200,
            [
                {"taskId": "other", "replyUrl": REPLY_URL, "replyRef": "someone-else"},
                {"taskId": TASK_ID, "replyUrl": REPLY_URL, "replyRef": REPLY_REF},
            ],
        ),
    )

    task = client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert task.taskId == TASK_ID
    assert task.replyRef == REPLY_REF
    assert task.replyUrl == REPLY_URL
    assert task.status == "PENDING"
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1
    assert len(vendor.requests_to("GET", "/scheduler/")) == 1


@pytest.mark.parametrize("lost", [Hang(), Drop()], ids=["read-timeout", "reset-after-send"])
def test_lost_answer_not_in_scheduler_raises_outcome_unknown_without_resending(
    vendor: FakeUseapi, client: UseapiClient, lost: Action
) -> None:
    vendor.on("POST", "/gen3turbo/create", lost)
    vendor.on("GET", "/scheduler/", Reply(200, [{"taskId": "x", "replyRef": "not-ours"}]))

    with pytest.raises(OutcomeUnknown) as caught:
        client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert "may or may not exist" in str(caught.value)
    assert isinstance(caught.value.__cause__, OutcomeUnknown)
    assert isinstance(caught.value.__cause__.__cause__, requests.RequestException)
    assert caught.value.http_status is None
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1


def test_failed_scheduler_lookup_raises_outcome_unknown_chained(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/gen3turbo/create", Drop())
    vendor.on("GET", "/scheduler/", Reply(502, {"error": "bad gateway"}))

    with pytest.raises(OutcomeUnknown) as caught:
        client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert isinstance(caught.value.__cause__, VendorServerError)
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1


def test_2xx_without_a_task_is_looked_up_in_scheduler(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/gen3turbo/create", Reply(200, b"<html>ok</html>"))
    vendor.on(
        "GET", "/scheduler/", Reply(200, {"tasks": [{"taskId": TASK_ID, "replyRef": REPLY_REF}]})
    )

    task = client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert task.taskId == TASK_ID
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1


def test_2xx_without_a_task_and_not_in_scheduler_is_unexpected(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/gen3turbo/create", Reply(200, {"status": "PENDING"}))
    vendor.on("GET", "/scheduler/", Reply(200, []))

    with pytest.raises(UnexpectedResponse) as caught:
        client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert caught.value.http_status == 200
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1


def test_connect_refused_raises_connect_failed() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1/runwayml"
    with UseapiClient(TOKEN, base_url=dead, connect_timeout=1.0) as c:
        with pytest.raises(ConnectFailed) as caught:
            c.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert caught.value.http_status is None


class _FirstSendGoesToADeadPort(HTTPAdapter):
    """Fault injection below the client: the first send really connects to a closed port."""

    def __init__(self, dead_port: int) -> None:
        super().__init__()
        self.dead_port = dead_port
        self.sends = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sends += 1
        if self.sends == 1 and request.url is not None:
            parts = urlsplit(request.url)
            request.url = parts._replace(netloc=f"127.0.0.1:{self.dead_port}").geturl()
        return super().send(request, *args, **kwargs)


def test_connect_failure_is_resent_once(vendor: FakeUseapi) -> None:
    vendor.on("POST", "/gen3turbo/create", Reply(200, task_body()))
    adapter = _FirstSendGoesToADeadPort(free_port())
    with requests.Session() as session:
        session.mount("http://", adapter)
        with UseapiClient(TOKEN, base_url=vendor.url, session=session) as c:
            task = c.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)

    assert task.taskId == TASK_ID
    assert adapter.sends == 2
    assert len(vendor.requests_to("POST", "/gen3turbo/create")) == 1


def test_invalid_reply_url_fails_before_any_request(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    with pytest.raises(ValueError, match="1024"):
        client.create(GEN3, reply_url="https://x.example/" + "a" * 1024, reply_ref=REPLY_REF)
    assert vendor.seen == []


def test_token_is_never_logged(
    vendor: FakeUseapi, client: UseapiClient, caplog: pytest.LogCaptureFixture
) -> None:
    vendor.on("POST", "/gen3turbo/create", busy("0"))
    vendor.on("GET", "/scheduler/", Reply(200, []))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AccountBusy):
            client.create(GEN3, reply_url=REPLY_URL, reply_ref=REPLY_REF)
        client.list_scheduler()
    assert "POST /gen3turbo/create -> 429" in caplog.text
    assert "GET /scheduler/ -> 200" in caplog.text
    assert TOKEN not in caplog.text
    assert REPLY_REF not in caplog.text


# ---------------------------------------------------------------------------------------------
# assets
# ---------------------------------------------------------------------------------------------


def test_upload_asset_sends_raw_bytes_with_content_type(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/assets/", Reply(200, {"assetId": "user:1-runwayml:a@b.c-asset:9"}))

    asset_id = client.upload_asset(PNG, name="frame one.png")

    assert asset_id == "user:1-runwayml:a@b.c-asset:9"
    [seen] = vendor.requests_to("POST", "/assets/")
    assert seen.body == PNG
    assert seen.headers["Content-Type"] == "image/png"
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.query == {"name": ["frame one.png"]}


def test_upload_asset_takes_a_loaded_image_and_its_name(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/assets/", Reply(200, {"assetId": "a-1"}))
    image = LoadedImage(data=b"GIF89a" + b"\x00" * 8, content_type="image/gif", name="x.gif")

    assert client.upload_asset(image) == "a-1"
    [seen] = vendor.requests_to("POST", "/assets/")
    assert seen.headers["Content-Type"] == "image/gif"
    assert seen.query == {"name": ["x.gif"]}


def test_upload_asset_without_asset_id_is_unexpected(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    vendor.on("POST", "/assets/", Reply(200, {"ok": True}))
    with pytest.raises(UnexpectedResponse, match="assetId"):
        client.upload_asset(PNG)


def test_upload_asset_retries_after_429(
    vendor: FakeUseapi, client: UseapiClient, delays: list[float]
) -> None:
    vendor.on("POST", "/assets/", busy("2"), Reply(200, {"assetId": "a-2"}))
    assert client.upload_asset(PNG) == "a-2"
    assert delays == [2.0]


# ---------------------------------------------------------------------------------------------
# tasks and scheduler
# ---------------------------------------------------------------------------------------------


def test_get_task_quotes_the_id_but_keeps_colon_and_at(
    vendor: FakeUseapi, client: UseapiClient
) -> None:
    odd_id = "user:1-runwayml:a@b.c-task:x/y z?"
    quoted = "/tasks/user:1-runwayml:a@b.c-task:x%2Fy%20z%3F"
    vendor.on("GET", quoted, Reply(200, task_body(status="SUCCEEDED", progressRatio="1")))

    task = client.get_task(odd_id)

    assert task.status == "SUCCEEDED"
    assert task.progressRatio == 1.0
    assert len(vendor.requests_to("GET", quoted)) == 1


def test_get_task_unknown_is_not_found(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("GET", "/tasks/nope", Reply(404, {"error": "Task not found", "code": 404}))
    with pytest.raises(NotFound, match="Task not found"):
        client.get_task("nope")


def test_get_task_non_object_body_is_unexpected(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("GET", "/tasks/t", Reply(200, [1, 2]))
    with pytest.raises(UnexpectedResponse):
        client.get_task("t")


@pytest.mark.parametrize(
    "body",
    [
        [
            {"taskId": "t1", "replyRef": "r1", "extra": 1},
            "junk",
            {"taskId": "t2", "replyRef": "r2"},
        ],
        {
            "tasks": [
                {"taskId": "t1", "replyRef": "r1", "extra": 1},
                {"taskId": "t2", "replyRef": "r2"},
            ]
        },
        {"a@b.c": [{"taskId": "t1", "replyRef": "r1", "extra": 1}], "d@e.f": [{"taskId": "t2"}]},
    ],
    ids=["array", "wrapped", "by-account"],
)
def test_list_scheduler_accepts_array_or_wrapping_object(
    vendor: FakeUseapi, client: UseapiClient, body: Any
) -> None:
    vendor.on("GET", "/scheduler/", Reply(200, body))
    entries = client.list_scheduler()
    assert [e.taskId for e in entries] == ["t1", "t2"]
    assert entries[0].model_extra == {"extra": 1}


def test_find_in_scheduler(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("GET", "/scheduler/", Reply(200, [{"taskId": "t1", "replyRef": "r1"}]))
    found = client.find_in_scheduler("r1")
    assert found is not None and found.taskId == "t1"
    assert client.find_in_scheduler("r2") is None


def test_list_scheduler_rejects_a_scalar(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("GET", "/scheduler/", Reply(200, "nothing"))
    with pytest.raises(UnexpectedResponse):
        client.list_scheduler()


def test_cancel_deletes_from_scheduler(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("DELETE", f"/scheduler/{TASK_ID}", Reply(200, {"ok": True}))
    client.cancel(TASK_ID)
    [seen] = vendor.requests_to("DELETE", f"/scheduler/{TASK_ID}")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"


def test_cancel_unknown_task_is_not_found(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("DELETE", "/scheduler/t9", Reply(404, {"error": "not tracked"}))
    with pytest.raises(NotFound):
        client.cancel("t9")


def test_read_timeout_on_get_is_outcome_unknown(vendor: FakeUseapi, client: UseapiClient) -> None:
    vendor.on("GET", "/tasks/slow", Hang())
    with pytest.raises(OutcomeUnknown) as caught:
        client.get_task("slow")
    assert isinstance(caught.value.__cause__, requests.ReadTimeout)
    assert len(vendor.requests_to("GET", "/tasks/slow")) == 1


# ---------------------------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": ""},
        {"base_url": "ftp://x"},
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"busy_retries": -1},
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"token": TOKEN, **kwargs}
    token = args.pop("token")
    with pytest.raises(ValueError):
        UseapiClient(token, **args)


def test_repr_does_not_show_the_token() -> None:
    with UseapiClient(TOKEN) as c:
        assert TOKEN not in repr(c)
        assert "api.useapi.net" in repr(c)
