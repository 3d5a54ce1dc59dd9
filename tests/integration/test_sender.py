"""One attempt over real loopback HTTP against a subscriber whose answer comes in pieces, each
within the read timeout, the whole past the attempt's timeout."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from receiver.clock import utcnow
from receiver.delivery.sender import Sender

TIMEOUT = 1.5  # seconds, the attempt's budget
GAP = 0.9  # seconds between the request and the head, and between the head and the body


@dataclass
class SlowSubscriber:
    """A loopback HTTP server that answers ``status`` in two pieces, ``GAP`` seconds apart:
    the status line and headers, then the body. It records each request it read whole."""

    status: int
    listener: socket.socket = field(init=False)
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def serve_one(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(body)
            time.sleep(GAP)
            head = f"HTTP/1.1 {self.status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
            conn.sendall(head.encode())
            time.sleep(GAP)
            conn.sendall(b"done")


@pytest.fixture
def slow_subscriber(request: pytest.FixtureRequest) -> Iterator[SlowSubscriber]:
    server = SlowSubscriber(status=request.param)
    thread = threading.Thread(target=server.serve_one, daemon=True)
    thread.start()
    yield server
    thread.join(10)
    server.listener.close()
    assert not thread.is_alive()


@pytest.mark.parametrize("slow_subscriber", [200], indirect=True)
def test_a_2xx_received_after_the_timeout_is_a_success_logged_as_slow(
    slow_subscriber: SlowSubscriber, caplog: pytest.LogCaptureFixture
) -> None:
    sender = Sender(timeout=TIMEOUT, allow_private=True)
    with caplog.at_level(logging.WARNING, logger="receiver.delivery.sender"):
        result = sender.send(
            slow_subscriber.url, "msg_1", '{"a": 1}', ["whsec_" + "A" * 32], utcnow()
        )
    assert slow_subscriber.requests == [b'{"a": 1}']
    assert result.duration_ms > TIMEOUT * 1000  # past the budget...
    assert result.outcome == "success" and result.ok  # ...but answered: never sent again
    assert result.status_code == 200 and result.response_body == "done"
    assert [r.getMessage() for r in caplog.records] == [
        "slow subscriber: answered 2xx after the attempt timeout"
    ]


@pytest.mark.parametrize("slow_subscriber", [500], indirect=True)
def test_a_slow_error_answer_is_still_a_failure(slow_subscriber: SlowSubscriber) -> None:
    sender = Sender(timeout=TIMEOUT, allow_private=True)
    result = sender.send(slow_subscriber.url, "msg_1", "{}", ["whsec_" + "A" * 32], utcnow())
    assert result.duration_ms > TIMEOUT * 1000
    assert not result.ok and result.status_code == 500
