"""The Procfile's web line stops at once on SIGTERM when its kept-alive connections are idle
(receiver/web/gunicorn_worker.py), and still answers a request that is in flight."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from simulator.processes import Process, bin_path, free_port, procfile_command
from tests.conftest import ADMIN_TOKEN, SECRET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def web(tmp_path: Path, migrated_sqlite_template: Path) -> tuple[Process, int]:
    db = tmp_path / "relay.sqlite3"
    shutil.copy(migrated_sqlite_template, db)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "DATABASE_"))},
        "RELAY_ENV": "test",
        "SECRET_KEY": SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": f"sqlite:///{db}",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "LOG_FORMAT": "text",
    }
    argv = procfile_command("web", ROOT / "Procfile")
    argv[0] = bin_path(argv[0])
    proc = Process("web", argv, env=env, cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{port}/healthz", 30)
    return proc, port


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
