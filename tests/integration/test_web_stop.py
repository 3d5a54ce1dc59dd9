"""The Procfile's web line stops at once on SIGTERM when its kept-alive connections are idle
(receiver/web/gunicorn_worker.py), and still answers a request that is in flight."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from simulator.processes import Process
from tests.helpers import start_web


@pytest.fixture
def web(tmp_path: Path, migrated_sqlite_template: Path) -> tuple[Process, int]:
    return start_web(
        "web", migrated_sqlite_template, tmp_path / "relay.sqlite3", WEB_CONCURRENCY="2"
    )


def test_sigterm_closes_idle_kept_alive_connections_at_once(web: tuple[Process, int]) -> None:
    proc, port = web
    idle = []
    busy: socket.socket | None = None
    try:
        for _ in range(4):  # kept-alive connections, idle after one request each
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close
            idle.append(conn)
        # A request half sent when the stop begins: its connection is not idle, so it is
        # answered before the worker exits.
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        busy.sendall(b"\r\n")
        answer = busy.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert proc.proc.wait(20) == 0
        took = time.monotonic() - started
    finally:
        for conn in idle:
            conn.close()
        if busy is not None:
            busy.close()
        proc.stop()
    # gunicorn's own gevent worker waited out graceful_timeout (25 s, gunicorn.conf.py) for the
    # idle ones; ours closes them at once (about 1 s here, several on a loaded machine).
    assert took < 12.5, f"the web took {took:.1f} s to stop: it waited for idle connections"
