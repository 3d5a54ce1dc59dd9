"""The error tree, from_response(), Retry-After parsing and the transport error mapping."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from client import (
    AccountBusy,
    BadRequest,
    ConnectFailed,
    InsufficientCredits,
    Moderated,
    NotFound,
    OutcomeUnknown,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UseapiError,
    VendorServerError,
    from_response,
    map_transport_errors,
)
from client.errors import parse_retry_after


def make_response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Reason"
    if isinstance(body, bytes):
        response._content = body
    else:
        response._content = b"" if body is None else json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (404, NotFound),
        (412, InsufficientCredits),
        (422, Moderated),
        (429, AccountBusy),
        (500, VendorServerError),
        (502, VendorServerError),
        (599, VendorServerError),
        (200, UnexpectedResponse),
        (302, UnexpectedResponse),
        (403, UnexpectedResponse),
        (409, UnexpectedResponse),
    ],
)
def test_status_maps_to_one_class(status: int, cls: type[UseapiError]) -> None:
    error = from_response(make_response(status, {"error": "boom", "code": status}))
    assert type(error) is cls
    assert error.http_status == status
    assert error.code == status
    assert error.message == "boom"
    assert error.body == {"error": "boom", "code": status}


def test_vendor_404_message_and_code_are_carried() -> None:
    body = {"error": "Unable to retrieve assetId 1234 (Not found.)", "code": 404}
    error = from_response(make_response(404, body))
    assert isinstance(error, NotFound)
    assert "assetId 1234" in error.message
    assert str(error) == "NotFound (HTTP 404): Unable to retrieve assetId 1234 (Not found.)"


def test_412_without_code() -> None:
    error = from_response(make_response(412, {"error": "You do not have enough credits."}))
    assert isinstance(error, InsufficientCredits)
    assert error.code is None
    assert "enough credits" in str(error)


def test_429_with_running_tasks() -> None:
    body = {
        "error": "Account a@b.c is busy executing 2 tasks",
        "runningTasks": {
            "a@b.c": [{"taskId": "t1", "replyRef": "r1"}, {"taskId": "t2", "replyRef": "r2"}]
        },
        "code": 429,
    }
    error = from_response(make_response(429, body, {"Retry-After": "15"}))
    assert isinstance(error, AccountBusy)
    assert error.retry_after == 15.0
    assert error.running_tasks == [
        {"taskId": "t1", "replyRef": "r1"},
        {"taskId": "t2", "replyRef": "r2"},
    ]
    assert "retry after 15 s" in str(error)


def test_429_too_many_tasks_case_has_no_running_tasks() -> None:
    body = {"error": "You have too many tasks running or pending."}
    error = from_response(make_response(429, body))
    assert isinstance(error, AccountBusy)
    assert error.running_tasks is None
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>Bad gateway</html>", "HTTP 502 Reason without a vendor error message"),
        ([1, 2], "HTTP 502 Reason without a vendor error message"),
        ({"error": {"errorMessage": "deep"}}, "deep"),
        ({"message": "from message"}, "from message"),
        ({"error": 17}, "HTTP 502 Reason without a vendor error message"),
    ],
)
def test_message_extraction(body: Any, message: str) -> None:
    error = from_response(make_response(502, body))
    assert error.message == message
    assert error.body == (body if isinstance(body, dict) else None)


def test_long_messages_are_cut() -> None:
    error = from_response(make_response(400, {"error": "x" * 5000}))
    assert len(error.message) == 500


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("30", 30.0),
        ("1.5", 1.5),
        ("-5", None),
        ("nan", None),
        ("soon", None),
        ("Wed, 01 Jan 2031 00:00:30 GMT", 30.0),
        ("Tue, 31 Dec 2030 23:59:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2031, 1, 1, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


def test_hierarchy() -> None:
    for cls in (BadRequest, Unauthorized, NotFound, InsufficientCredits, Moderated, AccountBusy):
        assert issubclass(cls, UseapiError)
    assert issubclass(ConnectFailed, TransportError)
    assert issubclass(OutcomeUnknown, TransportError)
    assert issubclass(TransportError, UseapiError)
    assert not issubclass(ConnectFailed, OutcomeUnknown)
    assert not issubclass(UseapiError, ValueError)


# ---------------------------------------------------------------------------------------------
# map_transport_errors over real loopback sockets
# ---------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def raw_server() -> Iterator[tuple[int, list[str]]]:
    """A TCP server that reads a request and then does what the test wrote in ``mode[0]``:
    ``"silent"`` (keep the connection, answer nothing) or ``"close"`` (close at once)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(5)
    mode = ["silent"]
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            if mode[0] == "silent":
                stop.wait(5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], mode
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_connection_refused_is_connect_failed() -> None:
    with requests.Session() as session, pytest.raises(ConnectFailed) as caught:
        with map_transport_errors("GET /x"):
            session.get(f"http://127.0.0.1:{_closed_port()}/x", timeout=(1, 1))
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert caught.value.message.startswith("GET /x: could not connect")


@pytest.mark.parametrize(
    ("server_mode", "read_timeout", "cause", "says"),
    [
        ("silent", 0.2, requests.ReadTimeout, "may or may not"),
        ("close", 2.0, requests.ConnectionError, None),
    ],
    ids=["read_timeout", "closed_after_send"],
)
def test_no_answer_after_sending_is_outcome_unknown(
    raw_server: tuple[int, list[str]],
    server_mode: str,
    read_timeout: float,
    cause: type[Exception],
    says: str | None,
) -> None:
    port, mode = raw_server
    mode[0] = server_mode
    with requests.Session() as session, pytest.raises(OutcomeUnknown) as caught:
        with map_transport_errors("POST /create"):
            session.post(
                f"http://127.0.0.1:{port}/create", json={"a": 1}, timeout=(1, read_timeout)
            )
    assert isinstance(caught.value.__cause__, cause)
    if says is not None:
        assert says in caught.value.message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (requests.exceptions.ChunkedEncodingError("broken"), OutcomeUnknown),
        (requests.exceptions.ContentDecodingError("gzip"), OutcomeUnknown),
        (requests.exceptions.ConnectTimeout("connect"), ConnectFailed),
        (requests.exceptions.MissingSchema("no scheme"), ConnectFailed),
        (requests.exceptions.RequestException("unknown"), OutcomeUnknown),
    ],
)
def test_other_requests_errors(error: Exception, expected: type[TransportError]) -> None:
    with pytest.raises(expected) as caught, map_transport_errors("op"):
        raise error
    assert caught.value.__cause__ is error


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), map_transport_errors("op"):
        raise KeyError("x")
