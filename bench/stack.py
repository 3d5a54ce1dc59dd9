"""The processes under test, started as a PaaS would start them (the ``Procfile``), on loopback.

- :class:`WebServer`: the ``web:`` line (gunicorn with ``gunicorn.conf.py``) running either
  ``receiver:create_app()`` or the bare reference app, with the same environment;
- :class:`RelayStack`: one database (SQLite file or a PostgreSQL database made for the run),
  its migrated schema, its web server and, when asked, its ``relay worker`` (``worker:`` line);
- the sink subscriber and the vendor simulator.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from bench.procs import children
from client.replyref import ReplyRefSigner
from receiver.store.engine import make_engine
from simulator.processes import Process, bin_path, free_port, procfile_argv, simulator_argv, start

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "Procfile"
RELAY_APP = "receiver:create_app()"
BARE_APP = "bench.bare_app:create_app()"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Secrets:
    """Keys made for one run (never a real deployment's)."""

    secret_key: str = field(default_factory=lambda: secrets.token_hex(32))
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))


def base_env(web_concurrency: int) -> dict[str, str]:
    """The parent's environment without relay settings, plus gunicorn's process count."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RELAY_", "DATABASE_", "WEB_", "SECRET_", "ADMIN_", "USEAPI_"))
    }
    env["WEB_CONCURRENCY"] = str(web_concurrency)
    env["PYTHONPATH"] = str(ROOT)
    return env


class WebServer:
    """The Procfile's ``web:`` command on a free port, serving ``app`` (default: the relay)."""

    def __init__(
        self, name: str, env: Mapping[str, str], log_dir: Path, *, app: str = RELAY_APP
    ) -> None:
        self.port = int(env["PORT"]) if "PORT" in env else free_port()
        argv = procfile_argv("web", PROCFILE)
        if RELAY_APP not in argv:
            raise RuntimeError(f"the Procfile's web: line no longer names {RELAY_APP}: {argv}")
        self.argv = [app if a == RELAY_APP else a for a in argv]
        self.proc = Process(
            name,
            self.argv,
            env={**env, "PORT": str(self.port)},
            cwd=ROOT,
            log_path=log_dir / f"{name}.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/healthz") -> None:
        self.proc.wait_http(self.url + path, 60)

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes (children of its master)."""
        return children(self.proc.pid)

    def stop(self) -> None:
        self.proc.stop()


class Database:
    """A database for one stack: a SQLite file in the run folder, or a PostgreSQL database
    created for the run (``CREATE DATABASE bench_…``) and dropped by :meth:`drop`."""

    def __init__(self, kind: str, run_dir: Path, pg_url: str) -> None:
        self.kind = kind
        self._admin: Engine | None = None
        self._name: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite:///{run_dir / 'relay.sqlite3'}"
            return
        self._name = "bench_" + uuid.uuid4().hex[:12]
        admin_url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self._name}"'))
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self._name

    def drop(self) -> None:
        """Drop the PostgreSQL database (twice at most: a pooled admin connection may have been
        closed by the server meanwhile)."""
        if self._admin is None or self._name is None:
            return
        statement = text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')
        try:
            for attempt in (1, 2):
                try:
                    with self._admin.connect() as conn:
                        conn.execute(statement)
                    break
                except OperationalError:
                    self._admin.dispose()
                    if attempt == 2:
                        raise
        finally:
            self._admin.dispose()
            self._admin = None


class RelayStack:
    """One database with its web process and, once :meth:`start_worker` ran, its worker."""

    def __init__(
        self,
        kind: str,
        *,
        run_dir: Path,
        env: Mapping[str, str],
        keys: Secrets,
        pg_url: str,
        simulator_url: str,
    ) -> None:
        self.kind = kind
        self.dir = run_dir / kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(kind, self.dir, pg_url)
        self.keys = keys
        port = free_port()
        self.env = {
            **env,
            # development: everything here is on loopback, which ALLOW_PRIVATE_URLS needs and
            # production refuses; nothing measured depends on the mode.
            "RELAY_ENV": "development",
            "SECRET_KEY": keys.secret_key,
            "ADMIN_TOKEN": keys.admin_token,
            "DATABASE_URL": self.db.url,
            "USEAPI_TOKEN": "sim-token",
            "USEAPI_BASE_URL": simulator_url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "ALLOW_PRIVATE_URLS": "1",
        }
        self.signer = ReplyRefSigner([keys.secret_key])
        self.engine = make_engine(self.db.url)
        self.web: WebServer | None = None
        self.worker: Process | None = None

    @property
    def reply_url(self) -> str:
        return self.env["PUBLIC_BASE_URL"] + "/callbacks/useapi"

    def relay(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
        """Run ``relay ARGS`` with the stack's environment (or ``env``); returns its stdout.

        :raises subprocess.CalledProcessError: it failed.
        :raises subprocess.TimeoutExpired: not within ``timeout`` seconds.
        """
        done = subprocess.run(
            [bin_path("relay"), *args],
            env=dict(env or self.env),
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def start_web(self) -> WebServer:
        self.relay("db", "upgrade")
        self.web = WebServer(f"web-{self.kind}", self.env, self.dir)
        self.web.wait_ready("/readyz")
        return self.web

    def start_worker(self) -> Process:
        name = f"worker-{self.kind}"
        self.worker = start(
            name,
            procfile_argv("worker", PROCFILE),
            env=self.env,
            cwd=self.dir,
            ready_line="relay worker",
            timeout=60,
            log_path=self.dir / f"{name}.log",
        )
        return self.worker

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        assert self.web is not None
        headers = {"Authorization": f"Bearer {self.keys.admin_token}"}
        return requests.request(method, self.web.url + path, headers=headers, timeout=30, **kwargs)

    def add_subscriber(
        self, url: str, event_types: list[str], max_in_flight: int | None = None
    ) -> dict[str, Any]:
        """Register a subscriber through ``POST /api/subscribers``; returns the answer."""
        body: dict[str, Any] = {"url": url, "event_types": event_types}
        if max_in_flight is not None:
            body["max_in_flight"] = max_in_flight
        response = self.api("POST", "/api/subscribers", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def remove_subscriber(self, subscriber_id: str) -> None:
        self.api("DELETE", f"/api/subscribers/{subscriber_id}").raise_for_status()

    def stop(self) -> None:
        for proc in (self.worker, self.web):
            if proc is not None:
                proc.stop()
        self.engine.dispose()
        self.db.drop()


def start_subscriber(log_dir: Path, env: Mapping[str, str]) -> tuple[Process, str]:
    """The sink (:mod:`bench.subscriber`); returns it and its base URL.

    :raises TimeoutError: it did not listen within 30 s (it is stopped).
    """
    port = free_port()
    argv = [sys.executable, "-m", "bench.subscriber", "--port", str(port)]
    return _start_listening("subscriber", argv, log_dir, env), f"http://127.0.0.1:{port}"


def start_simulator(
    log_dir: Path, env: Mapping[str, str], timings: Mapping[str, float]
) -> tuple[Process, str]:
    """The useapi.net simulator with ``timings`` (progress steps and delays, seconds).

    :raises TimeoutError: it did not listen within 30 s (it is stopped).
    """
    port = free_port()
    argv = simulator_argv(
        port,
        "--progress-steps",
        str(int(timings["progress_steps"])),
        "--start-delay",
        str(timings["start_delay"]),
        "--step-delay",
        str(timings["step_delay"]),
        "--quiet",
    )
    return _start_listening("simulator", argv, log_dir, env), f"http://127.0.0.1:{port}"


def _start_listening(name: str, argv: list[str], log_dir: Path, env: Mapping[str, str]) -> Process:
    return start(
        name,
        argv,
        env=env,
        cwd=ROOT,
        ready_line="listening on",
        timeout=30,
        log_path=log_dir / f"{name}.log",
    )
