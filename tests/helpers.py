"""Helpers shared by several test modules (fixtures stay in the ``conftest.py`` files)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from socketserver import BaseServer
from typing import Any, TypeVar

from flask.testing import FlaskClient
from sqlalchemy import Engine, Row, select, text

from receiver.delivery.worker import WorkerConfig
from receiver.ingest.applier import apply_pending
from receiver.services.callbacks import ApplyOptions
from receiver.settings import Settings
from receiver.store.repositories import Job
from receiver.store.tables import jobs
from receiver.store.uow import UnitOfWork
from simulator.processes import Process, bin_path, free_port, procfile_argv, start

ROOT = Path(__file__).resolve().parents[1]
#: The admin token and the replyRef signing secret of every test configuration.
ADMIN_TOKEN = "test-admin-token"
SECRET = "test-secret-key-0123456789abcdef"

T = TypeVar("T")


def add_job(
    engine: Engine,
    *,
    task_id: str | None,
    created: datetime,
    status: str = "PENDING",
    model: str = "gen3turbo",
    request: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    last_callback: datetime | None = None,
) -> Job:
    """Store a job as if it had been submitted at ``created`` and return it.

    Args:
        engine: the receiver's database.
        task_id: the vendor's task id, or None (a job still SUBMITTING).
        created: when the job was made (aware UTC); also its ``updated_at`` unless
            ``last_callback`` is given.
        status: the job's status (``PENDING`` by default).
        model: the model name the job asked for.
        request: the stored request (``{"text_prompt": "test"}`` when None).
        metadata: the caller's metadata (``{}`` when None; copied).
        last_callback: when its last callback came, or None (never).
    """
    job = Job.new(
        model=model,
        request={"text_prompt": "test"} if request is None else request,
        metadata=metadata or {},
        status=status,
        task_id=task_id,
        now=created,
        last_callback_at=last_callback,
    )
    with UnitOfWork(engine) as uow:
        uow.repo.add_job(job)
        uow.commit()
    return job


def job_columns(engine: Engine, job_id: str, *names: str) -> dict[str, Any]:
    """The columns ``names`` of job ``job_id`` as ``{name: value}``, read through the table's
    column types (JSON decoded, times aware) on either database.

    Raises:
        sqlalchemy.exc.NoResultFound: there is no such job.
    """
    with engine.connect() as conn:
        query = select(*(jobs.c[name] for name in names)).where(jobs.c.id == job_id)
        return dict(conn.execute(query).one()._mapping)


def sql_rows(engine: Engine, sql: str, **params: Any) -> Sequence[Row[*tuple[Any, ...]]]:
    """Every row the SQL text ``sql`` answers, its ``:name`` placeholders bound from ``params``,
    read on a connection of its own."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def sql_column(engine: Engine, sql: str, **params: Any) -> list[Any]:
    """The first column of every row the SQL text ``sql`` answers (see :func:`sql_rows`)."""
    return [row[0] for row in sql_rows(engine, sql, **params)]


def sql_value(engine: Engine, sql: str, **params: Any) -> Any:
    """The first column of the one row the SQL text ``sql`` answers (see :func:`sql_rows`),
    e.g. a ``count(*)``.

    Raises:
        sqlalchemy.exc.NoResultFound, sqlalchemy.exc.MultipleResultsFound: not one row.
    """
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def wait_until(
    read: Callable[[], T], done: Callable[[T], bool], *, seconds: float, every: float
) -> T:
    """Call ``read`` every ``every`` seconds until ``done`` holds for what it returned; that
    value.

    Raises:
        AssertionError: ``done`` did not hold within ``seconds`` (the message is the last value
            read).
    """
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(every)


def run_in_threads(*calls: Callable[[], object], timeout: float) -> None:
    """Run each of ``calls`` in a thread of its own, all at once, and wait for them all.

    Args:
        calls: what each thread runs (bind arguments with ``functools.partial``).
        timeout: seconds to wait for each thread in turn.

    Raises:
        AssertionError: a thread was still running after its wait, or a call raised (the
            message lists what they raised).
    """
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    assert errors == [], errors


def post_callback(client: FlaskClient, body: Any, **kw: Any) -> Any:
    """POST ``body`` to ``/callbacks/useapi`` through the Flask test client.

    Args:
        client: the receiver's test client.
        body: bytes or str sent as they are; anything else sent as its JSON.
        kw: passed to ``client.post`` (``content_type`` is ``application/json`` unless given).

    Returns:
        The test client's response.
    """
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    kw.setdefault("content_type", "application/json")
    return client.post("/callbacks/useapi", data=data, **kw)


@dataclass(frozen=True)
class Posted:
    """A callback posted through the test client, then applied by the real applier.

    ``response`` is the door's answer (202 once stored); ``outcome`` what applying it did to
    its task (``applied``, ``duplicate``, …), None when the door refused it (nothing stored).
    """

    response: Any
    outcome: str | None

    @property
    def status_code(self) -> int:
        return int(self.response.status_code)

    @property
    def json(self) -> Any:
        return self.response.json

    def get_data(self, as_text: bool = False) -> Any:
        return self.response.get_data(as_text=as_text)


def apply_stored(engine: Engine, settings: Settings) -> dict[int, str]:
    """Run the worker's applier (:func:`receiver.ingest.applier.apply_pending`) here, on this
    thread, over every stored callback; ``{callback_id: outcome}`` of those it applied."""
    report = apply_pending(engine, ApplyOptions.from_settings(settings))
    assert not report.deferred, f"stored callbacks failed to apply: {report.deferred}"
    return {item.callback_id: item.result.outcome.value for item in report.applied}


def apply_for(client: FlaskClient) -> dict[int, str]:
    """:func:`apply_stored` over the database of ``client``'s app, with its settings."""
    rt = client.application.extensions["relay"]
    return apply_stored(rt.engine, rt.settings)


def post_and_apply(client: FlaskClient, body: Any, **kw: Any) -> Posted:
    """POST ``body`` to ``/callbacks/useapi`` (:func:`post_callback`), then apply what is
    stored, as ``relay worker`` does right after (:func:`apply_stored`).

    Returns:
        The answer and, for a stored callback, its outcome once applied.
    """
    response = post_callback(client, body, **kw)
    if response.status_code != 202:
        return Posted(response, None)
    return Posted(response, apply_for(client).get(response.json["callback_id"]))


#: Variables of the caller's environment that :func:`start_web` does not pass on.
_NOT_INHERITED = ("RELAY_", "DATABASE_", "WEB_", "GUNICORN")


def start_web(name: str, sqlite_template: Path, database: Path, **env: str) -> tuple[Process, int]:
    """Start the Procfile's ``web:`` line (gunicorn) on a free loopback port over ``database``,
    a copy of the migrated SQLite file ``sqlite_template``, and wait (30 s at most) until its
    ``/healthz`` answers.

    Args:
        name: the process's name in logs and failures.
        sqlite_template: a migrated SQLite file (the ``migrated_sqlite_template`` fixture).
        database: where the copy goes.
        env: variables on top of the test ones (``RELAY_ENV=test``, ``SECRET_KEY``,
            ``ADMIN_TOKEN``, ``DATABASE_URL``, ``PORT``, ``LOG_FORMAT=text``), e.g.
            ``WEB_CONCURRENCY``. The caller's ``RELAY_*``, ``DATABASE_*``, ``WEB_*`` and
            ``GUNICORN*`` are dropped: ``gunicorn.conf.py``'s defaults hold unless ``env``
            sets one.

    Returns:
        The process (the caller stops it: ``Process.stop``) and its port.

    Raises:
        TimeoutError: (from ``simulator.processes.start``) it exited or did not answer in
            time; it is stopped first.
    """
    shutil.copy(sqlite_template, database)
    port = free_port()
    variables = {
        **{k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)},
        "RELAY_ENV": "test",
        "SECRET_KEY": SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": f"sqlite:///{database}",
        "PORT": str(port),
        "LOG_FORMAT": "text",
        **env,
    }
    argv = procfile_argv("web", ROOT / "Procfile")
    ready = f"http://127.0.0.1:{port}/healthz"
    return start(name, argv, env=variables, cwd=ROOT, ready_url=ready, timeout=30), port


@contextmanager
def serving(server: BaseServer) -> Iterator[None]:
    """Serve ``server`` from a daemon thread (polling for shutdown every 0.01 s) inside the
    block; then shut it down, close its socket and join the thread (5 s at most)."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def worker_config(retry_schedule: tuple[float, ...], **overrides: Any) -> WorkerConfig:
    """A test worker's configuration: ``retry_schedule`` (seconds between attempts) and, unless
    ``overrides`` says otherwise, a 2 s timeout, 2 threads, private (loopback) subscriber URLs
    allowed, no auto-disable within the test (3600 s) and a 0.1 s idle poll."""
    values: dict[str, Any] = {
        "timeout": 2.0,
        "concurrency": 2,
        "allow_private": True,
        "disable_after": 3600.0,
        "idle_poll": 0.1,
        **overrides,
    }
    return WorkerConfig(retry_schedule=retry_schedule, **values)


def python_output(code: str, env: dict[str, str], *args: str) -> str:
    """What ``python -c code args…`` prints, run with this venv's Python in the project
    directory with ``env`` (60 s at most); asserts that it exits 0 (its stderr is the message
    when not)."""
    done = subprocess.run(
        [bin_path("python"), "-c", code, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
