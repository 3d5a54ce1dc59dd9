"""The deploy test: runway-relay as a buildpack deploys it, then used as a PaaS runs it.

A fresh ``git clone`` of HEAD; a new venv with ``pip install -r requirements.txt`` and nothing
else (from the wheelhouse ``make deploy-wheels`` downloaded, since tests reach only 127.0.0.1);
the Procfile's ``release``, ``web`` and ``worker`` lines, each run by ``bash -c`` as its own
process with the venv first on PATH, ``DYNO`` set and ``DATABASE_URL`` as ``postgres://…`` (a
fresh PostgreSQL database). A task submitted through ``POST /api/tasks`` (the simulator plays
useapi.net) reaches a subscriber that verifies every signature; the web's ``/metrics`` shows
the worker's delivery although the two share nothing but the database; on SIGTERM the worker
finishes the attempt it was making, records it and exits within 30 s, and what it had not sent
is delivered by the next worker; the web exits within 30 s too; a dyno without DATABASE_URL
refuses to start.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from receiver.settings import Settings
from simulator.demo import tiny_png
from simulator.processes import Process, free_port
from simulator.subscriber import SubscriberServer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / ".deploy-wheels"
ADMIN_TOKEN = "deploy-admin-token-0123456789abcdef0123"  # 32+: valid in production too
SECRET_KEY = "deploy-secret-key-0123456789abcdef"
IMAGE = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
#: A PaaS sends SIGKILL this long after SIGTERM (Heroku, Render).
KILL_AFTER_SECONDS = 30.0
#: The admin API's credentials.
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OURS = {f.upper() for f in Settings.model_fields} | {
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
}


def procfile(app: Path) -> dict[str, str]:
    """The clone's Procfile: process type → command line (as a shell will run it)."""
    out = {}
    for line in (app / "Procfile").read_text().splitlines():
        kind, sep, command = line.partition(":")
        if sep and kind.strip():
            out[kind.strip()] = command.strip()
    return out


@dataclass
class Slug:
    """The built app: the clone and the venv made from its requirements.txt."""

    app: Path
    venv: Path

    def env(self, dyno: str, **extra: str) -> dict[str, str]:
        """A dyno's environment: the venv first on PATH, none of the test run's settings."""
        env = {k: v for k, v in os.environ.items() if k.upper() not in OURS}
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            PYTHONUNBUFFERED="1",
            DYNO=dyno,
            **extra,
        )
        return env

    def start(self, kind: str, dyno: str, env: dict[str, str]) -> Process:
        return Process(dyno, ["bash", "-c", procfile(self.app)[kind]], env=env, cwd=self.app)


@pytest.fixture(scope="module")
def slug(tmp_path_factory: pytest.TempPathFactory) -> Slug:
    if not (WHEELS / ".downloaded").exists():
        message = "no wheelhouse for the deploy test: run `make deploy-wheels` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("deploy")
    app, venv = tmp / "app", tmp / "venv"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(app)],
        check=True,
        timeout=120,
    )
    for name in ("requirements.txt", ".python-version", "app.json", "render.yaml", "uv.lock"):
        assert (app / name).is_file(), f"a fresh clone has no {name}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # What the buildpack runs, offline: pip on requirements.txt alone, in the clone.
    pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    pip_env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index"]
        + ["--find-links", str(WHEELS), "-r", "requirements.txt"],
        cwd=app,
        env=pip_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    version = subprocess.run(
        [str(venv / "bin" / "relay"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and "relay" in version.stdout, version.stderr
    # The venv runs the clone's code, not this tree's (no editable install, no path entry).
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import receiver; print(receiver.__file__)"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout, where
    return Slug(app, venv)


@pytest.fixture(scope="module")
def database_url(postgres_base_url: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database, as ``postgres://…`` the way Heroku writes it."""
    base = postgres_base_url
    if base is None:
        pytest.fail("the deploy test needs PostgreSQL: set TEST_DATABASE_URL")
    name = "relay_deploy_" + uuid.uuid4().hex[:10]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield "postgres://" + url.split("://", 1)[1]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(base + "/metrics", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


SUCCESS = ("runway_relay_delivery_attempts_total", (("outcome", "success"),))
LATENCY_COUNT = ("runway_relay_delivery_latency_seconds_count", ())


def stop_within(process: Process, seconds: float) -> tuple[int, float]:
    """SIGTERM ``process``; its exit code and how long it took (SIGKILL after ``seconds``)."""
    started = time.monotonic()
    code = process.stop(timeout=seconds)
    return code, time.monotonic() - started


def job_events(received: list[Any], job_id: str) -> list[dict[str, Any]]:
    return [
        r.body for r in received if r.verified and r.body and r.body["data"]["job_id"] == job_id
    ]


def submit(base: str, prompt: str) -> str:
    """``POST /api/tasks`` on the web at ``base`` (a tiny PNG and ``prompt``); the new job's id.
    Asserts that it answers 201."""
    submitted = requests.post(
        base + "/api/tasks", json={"image": IMAGE, "prompt": prompt}, headers=ADMIN, timeout=30
    )
    assert submitted.status_code == 201, submitted.text
    return str(submitted.json()["job_id"])


def wait_succeeded(subscriber: SubscriberServer, job_id: str) -> list[Any]:
    """What ``subscriber`` received, once a verified ``task.succeeded`` of ``job_id`` is among
    it (60 s at most)."""
    return subscriber.wait_for(
        lambda r: any(e["type"] == "task.succeeded" for e in job_events(r, job_id)), timeout=60
    )


def test_a_buildpack_deploy_runs_end_to_end(slug: Slug, database_url: str, tmp_path: Path) -> None:
    web_port, sim_port = free_port(), free_port()
    base = f"http://127.0.0.1:{web_port}"
    config = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "USEAPI_TOKEN": "sim-token",
        "USEAPI_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "PUBLIC_BASE_URL": base,
        "ALLOW_PRIVATE_URLS": "1",  # the subscriber and the simulator are on loopback
        # ALLOW_PRIVATE_URLS is refused in production (issue 16), and this test can only reach
        # 127.0.0.1: development mode, with every production requirement met anyway.
        "RELAY_ENV": "development",
        "LOG_FORMAT": "text",
    }
    processes: list[Process] = []
    try:
        # Release phase, then the simulator (the fake useapi.net: test scaffolding, not the app).
        release = subprocess.run(
            ["bash", "-c", procfile(slug.app)["release"]],
            env=slug.env("release.1", **config),
            cwd=slug.app,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert release.returncode == 0, release.stderr
        sim = Process(
            "simulator",
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(sim_port)]
            + ["--step-delay", "0.05", "--start-delay", "0.05"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        processes.append(sim)
        web_env = slug.env("web.1", PORT=str(web_port), WEB_CONCURRENCY="2", **config)
        web = slug.start("web", "web.1", web_env)
        processes.append(web)
        worker = slug.start("worker", "worker.1", slug.env("worker.1", **config))
        processes.append(worker)
        sim.wait_for_line("listening on", 30)
        web.wait_http(base + "/readyz", 60)
        worker.wait_for_line("relay worker", 60)
        # Two gunicorn workers (WEB_CONCURRENCY=2) bound to PORT on every interface.
        for _ in range(100):
            if web.output().count("Booting worker") >= 2:
                break
            time.sleep(0.1)
        assert web.output().count("Booting worker") == 2, web.output()
        assert f"0.0.0.0:{web_port}" in web.output(), web.output()

        with SubscriberServer(hang_seconds=3.0) as subscriber:
            added = requests.post(
                base + "/api/subscribers", json={"url": subscriber.url}, headers=ADMIN, timeout=10
            )
            assert added.status_code == 201, added.text
            subscriber.secrets.append(added.json()["secret"])

            job_id = submit(base, "deploy")
            got = wait_succeeded(subscriber, job_id)
            events = job_events(got, job_id)
            assert [e["type"] for e in events][-1] == "task.succeeded", events
            assert all(r.verified for r in got), [r.error for r in got if not r.verified]

            # The web's /metrics shows what the worker (another process, sharing only the
            # database) did: no PROMETHEUS_MULTIPROC_DIR is shared here.
            samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for _ in range(100):
                samples = scrape(base)
                if samples.get(SUCCESS, 0) >= len(events):
                    break
                time.sleep(0.1)
            assert samples[SUCCESS] >= len(events) >= 1, samples.get(SUCCESS)
            assert samples[LATENCY_COUNT] >= len(events)
            assert samples[("runway_relay_database_up", ())] == 1

            # SIGTERM while an attempt is in flight: the worker finishes it, records it and
            # exits in time; what it had not sent stays pending for the next worker.
            subscriber.script("hang")
            arrived = subscriber.arrivals
            second_id = submit(base, "sigterm")
            assert subscriber.wait_for_arrivals(arrived + 1, timeout=30) >= arrived + 1
            code, took = stop_within(worker, KILL_AFTER_SECONDS)
            assert code == 0 and took < KILL_AFTER_SECONDS, worker.output()
            assert "worker stopped" in worker.output()
            # The scripted hang answers 200 after 3 s (others 204): it was answered, not cut off.
            hung = [r for r in list(subscriber.received)[arrived:] if r.status_answered == 200]
            assert len(hung) == 1 and hung[0].verified, hung
            processes.append(slug.start("worker", "worker.2", slug.env("worker.2", **config)))
            got = wait_succeeded(subscriber, second_id)
            assert any(e["type"] == "task.succeeded" for e in job_events(got, second_id))
            # Every event of the second task was delivered, and none was sent twice: the
            # attempt in flight at SIGTERM was recorded before the worker exited.
            # (task.succeeded may arrive while an earlier event's delivery is still in flight.)
            pending: list[Any] = []
            for _ in range(300):
                pending = requests.get(
                    base + "/api/deliveries",
                    params={"status": "pending"},
                    headers=ADMIN,
                    timeout=10,
                ).json()["items"]
                if not pending:
                    break
                time.sleep(0.1)
            assert pending == [], pending
            ids = [r.webhook_id for r in list(subscriber.received) if r.verified]
            assert len(ids) == len(set(ids)), ids

        code, took = stop_within(web, KILL_AFTER_SECONDS)
        assert code == 0 and took < KILL_AFTER_SECONDS, web.output()
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.mark.parametrize("kind", ["release", "web", "worker"])
def test_a_dyno_without_database_url_refuses_to_start(slug: Slug, kind: str) -> None:
    env = slug.env(f"{kind}.1", SECRET_KEY=SECRET_KEY, PORT=str(free_port()))
    result = subprocess.run(
        ["bash", "-c", procfile(slug.app)[kind]],
        env=env,
        cwd=slug.app,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, lines
    assert "DATABASE_URL" in lines[0], lines
    assert not (slug.app / "instance").exists()  # no SQLite file on the ephemeral disk
