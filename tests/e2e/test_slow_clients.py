"""Slow clients cannot freeze ingest (issue 16, point 1).

The Procfile's ``web:`` line at its defaults (``gunicorn.conf.py``, one worker process) with 64
connections open that sent their headers and then trickle their body a byte at a time: the
health check and a genuine callback must each still answer within 2 s, and a body that has not
arrived whole by ``BODY_READ_TIMEOUT_SECONDS`` (5 s) gets its connection closed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from receiver.runtime import build_runtime
from tests.conftest import JobFactory, make_settings, task_body
from tests.helpers import start_web

pytestmark = pytest.mark.e2e

SLOW_CONNECTIONS = 64
BODY_DEADLINE = 5.0  # the default of BODY_READ_TIMEOUT_SECONDS
TRICKLE_EVERY = 0.5  # seconds between two bytes of a slow body


@pytest.fixture
def web(tmp_path: Path, migrated_sqlite_template: Path) -> Iterator[tuple[str, str]]:
    """The Procfile's web line with nothing of gunicorn's overridden: (base URL, database)."""
    db = tmp_path / "relay.sqlite3"
    proc, port = start_web("web", migrated_sqlite_template, db)
    try:
        yield f"http://127.0.0.1:{port}", f"sqlite:///{db}"
    finally:
        proc.stop()


def open_slow(port: int) -> socket.socket:
    """A connection that sent a callback's headers and the first byte of a 1000-byte body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /callbacks/useapi HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    return sock


def test_trickling_bodies_neither_freeze_ingest_nor_stay_open(web: tuple[str, str]) -> None:
    base, database_url = web
    port = int(base.rsplit(":", 1)[1])
    rt = build_runtime(make_settings(database_url))
    try:
        job, ref = JobFactory(rt)()
    finally:
        rt.engine.dispose()

    slow = [open_slow(port) for _ in range(SLOW_CONNECTIONS)]
    opened = time.monotonic()
    dropped: dict[int, float] = {}  # index -> seconds after opening
    answers: dict[int, bytes] = {}
    stop = threading.Event()

    def trickle() -> None:
        """One byte per connection every TRICKLE_EVERY s; notes when the server closed one."""
        for _ in range(int(3 * BODY_DEADLINE / TRICKLE_EVERY)):  # bounded
            if stop.wait(TRICKLE_EVERY) or len(dropped) == len(slow):
                return
            for i, sock in enumerate(slow):
                if i in dropped:
                    continue
                try:
                    sock.setblocking(False)
                    try:
                        data = sock.recv(4096)
                    except BlockingIOError:
                        data = None
                    if data == b"":
                        dropped[i] = time.monotonic() - opened
                        continue
                    if data:
                        answers[i] = answers.get(i, b"") + data
                    sock.setblocking(True)
                    sock.sendall(b" ")
                except OSError:  # reset or broken pipe: the server closed it
                    dropped[i] = time.monotonic() - opened

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1.0)  # every slow connection is open and has started its body
        with requests.Session() as session:
            session.trust_env = False
            for round_ in range(2):
                started = time.monotonic()
                health = session.get(base + "/healthz", timeout=2)
                assert health.status_code == 200
                assert time.monotonic() - started < 2
                started = time.monotonic()
                body = task_body(ref, "RUNNING", progressRatio=0.1 + 0.2 * round_)
                r = session.post(
                    base + "/callbacks/useapi",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                    timeout=2,
                )
                assert r.status_code == 202, r.text
                assert r.json()["outcome"] == "queued"
                assert time.monotonic() - started < 2
                time.sleep(1.0)
        assert not dropped  # the slow ones are still open before their deadline
        trickler.join(timeout=BODY_DEADLINE + 5)
        assert not trickler.is_alive()
        # every slow connection was closed by the server soon after the body deadline
        assert len(dropped) == SLOW_CONNECTIONS, sorted(dropped)
        assert all(BODY_DEADLINE - 0.5 <= t <= BODY_DEADLINE + 3 for t in dropped.values())
        assert answers and all(a.startswith(b"HTTP/1.1 408") for a in answers.values())
    finally:
        stop.set()
        for sock in slow:
            sock.close()
