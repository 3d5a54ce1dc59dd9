"""End-to-end fixtures: real processes on free loopback ports.

- the vendor simulator (``python -m simulator``),
- the web process: the Procfile's ``web:`` line (gunicorn), with PORT set as a PaaS would,
- one or more ``relay worker`` processes (the ``worker:`` line),
- subscribers that verify every signature with ``standardwebhooks``: in-process
  (``SubscriberServer``), or, where a stall of the test process on a loaded machine must not
  hold their answers (the heavy and the timing-sensitive tests), processes of their own
  (``SubscriberProcess``).
Each process is stopped by its pid at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from simulator.demo import tiny_png
from simulator.processes import Process, bin_path, free_port, procfile_argv, simulator_argv
from simulator.subscriber import SubscriberServer
from tests.conftest import ADMIN_TOKEN, SECRET, fresh_postgres_database, require_postgres

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"


class Stack:
    """The running system for one test module."""

    def __init__(self, tmp: Path, database_url: str, **env_overrides: str) -> None:
        self.tmp = tmp
        self.web_port = free_port()
        self.sim_port = free_port()
        self.database_url = database_url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "DATABASE_"))},
            "RELAY_ENV": "test",
            "SECRET_KEY": SECRET,
            "DATABASE_URL": database_url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "USEAPI_TOKEN": "sim-token",
            "USEAPI_BASE_URL": f"http://127.0.0.1:{self.sim_port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "PORT": str(self.web_port),
            "ALLOW_PRIVATE_URLS": "1",
            "LOG_FORMAT": "json",
            "WEB_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
            **env_overrides,
        }
        self.processes: list[Process] = []
        self.workers: list[Process] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def relay(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the ``relay`` command with the stack's environment."""
        result = subprocess.run(
            [bin_path("relay"), *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"relay {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def relay_json(self, *args: str) -> Any:
        return json.loads(self.relay(*args).stdout)

    def add_subscriber(
        self, url: str, *events: str, max_in_flight: int | None = None
    ) -> dict[str, Any]:
        """``relay subscribers add URL`` with one ``--events`` per type in ``events`` (none: the
        default types) and ``--max-in-flight`` when given; its JSON answer (``id``, ``secret``)."""
        args = ["subscribers", "add", url]
        for event in events:
            args += ["--events", event]
        if max_in_flight is not None:
            args += ["--max-in-flight", str(max_in_flight)]
        added: dict[str, Any] = self.relay_json(*args)
        return added

    def start(self) -> Stack:
        self.relay("db", "upgrade")
        sim_argv = simulator_argv(self.sim_port, "--step-delay", "0.05", "--start-delay", "0.05")
        sim = self._process("simulator", sim_argv, ROOT)
        web = self._process("web", procfile_argv("web", PROCFILE), ROOT)
        sim.wait_for_line("listening on", 20)
        web.wait_http(self.base + "/readyz", 30)
        self.start_worker()
        return self

    def _process(self, name: str, argv: list[str], cwd: Path) -> Process:
        """Start ``argv`` (output in ``tmp/<name>.log``); :meth:`stop` stops it."""
        proc = Process(name, argv, env=self.env, cwd=cwd, log_path=self.tmp / f"{name}.log")
        self.processes.append(proc)
        return proc

    def start_worker(self) -> Process:
        """One more ``relay worker`` (the Procfile's ``worker:`` line), once it runs.

        :raises TimeoutError: it did not log that it runs within 30 s.
        """
        name = f"worker{len(self.workers)}"
        worker = self._process(name, procfile_argv("worker", PROCFILE), self.tmp)
        worker.wait_for_line("relay worker", 30)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kw)

    def sim_stats(self) -> dict[str, Any]:
        return requests.get(self.sim + "/_sim/stats", timeout=5).json()  # type: ignore[no-any-return]


def _database(kind: str, tmp: Path, postgres_base: str | None) -> Iterator[str]:
    """A database for a stack: a SQLite file in ``tmp``, or a new PostgreSQL database on the
    server of ``postgres_base`` (the ``postgres_base_url`` fixture; skips when None)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'relay.sqlite3'}"
        return
    with fresh_postgres_database(require_postgres(postgres_base), "relay_e2e_") as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    base = request.getfixturevalue("postgres_base_url") if request.param == "postgres" else None
    for url in _database(request.param, tmp, base):
        running = Stack(tmp, url, **getattr(request.module, "STACK_ENV", {}))
        try:
            running.start()
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def subscriber(stack: Stack) -> Iterator[SubscriberServer]:
    """One verifying subscriber for the module (terminal events only, the default)."""
    with SubscriberServer() as server:
        added = stack.relay_json("subscribers", "add", server.url)
        server.secrets.append(added["secret"])
        yield server
        stack.relay("subscribers", "remove", added["id"])


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "frame.png"
    path.write_bytes(tiny_png())
    return str(path)
