"""On a PaaS: no SQLite trap, and the pool settings every process honours.

Without DATABASE_URL on Heroku, Render, Fly.io or Railway, each process would make its own
SQLite file on its own ephemeral disk; every entry point (release, web, worker, any ``relay``
command) must refuse instead, with one line naming DATABASE_URL. And DB_POOL_SIZE /
DB_MAX_OVERFLOW must size the real pool of the web's engine and of the worker's and CLI's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from receiver import create_app
from receiver.cli import Context
from receiver.settings import PAAS_MARKERS, ConfigError, Settings, load_settings
from simulator.processes import Process, bin_path, free_port, procfile_command
from tests.conftest import SECRET
from tests.helpers import python_output

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
OURS = {f.upper() for f in Settings.model_fields} | {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in OURS}
    env.update({"PYTHONUNBUFFERED": "1", "SECRET_KEY": SECRET, **extra})
    return env


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper() in OURS:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    return monkeypatch


@pytest.mark.parametrize("variable", [name.upper() for name, _ in PAAS_MARKERS])
def test_settings_refuse_a_paas_without_database_url(
    env: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    env.setenv(variable, "x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and "DATABASE_URL" in message and variable in message, message
    assert not (tmp_path / "instance").exists()  # no SQLite file, no dev key made
    # With it (as the platform's PostgreSQL add-on sets it) the same process starts.
    env.setenv("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/relay")
    assert load_settings().database_url.startswith("postgresql+psycopg://")


def test_a_paas_refuses_a_local_artifact_store(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The worker copies videos and the web serves them: on separate ephemeral disks a
    directory cannot be shared, so only an S3 bucket is accepted there."""
    env.setenv("DYNO", "web.1")
    env.setenv("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/relay")
    env.setenv("PUBLIC_BASE_URL", "https://relay.example.com")
    env.setenv("ARTIFACT_STORE", str(tmp_path / "videos"))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and "ARTIFACT_STORE" in message and "s3://" in message, message
    assert not (tmp_path / "videos").exists()
    env.setenv("ARTIFACT_STORE", "s3://videos/relay")
    assert load_settings().artifact_store == "s3://videos/relay"
    env.delenv("DYNO")  # off a PaaS a directory is fine (web and worker share the machine)
    env.setenv("ARTIFACT_STORE", str(tmp_path / "videos"))
    assert load_settings().artifact_store == str(tmp_path / "videos")


@pytest.mark.parametrize("store", ["", "s3://videos/relay"])
def test_gunicorn_master_imports_no_http_stack_before_gevent_patches(
    tmp_path: Path, store: str
) -> None:
    """gunicorn.conf.py runs in the master, before the gevent workers monkey-patch ssl: had it
    imported urllib3 (boto3, requests) by then, every https call of a web worker (the vendor,
    image downloads, S3 presigning) would die in a RecursionError. Whatever the settings."""
    probe = (
        "import runpy, sys; runpy.run_path('gunicorn.conf.py'); "
        "print(sorted(m for m in ('urllib3', 'requests', 'boto3', 'botocore') if m in sys.modules))"
    )
    env = clean_env(
        RELAY_ENV="test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'relay.sqlite3'}",
        PUBLIC_BASE_URL="https://relay.example.com",
        ARTIFACT_STORE=store,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    out = python_output(probe, env)
    assert out.strip() == "[]", out


def test_off_a_paas_sqlite_stays_the_default(env: pytest.MonkeyPatch) -> None:
    assert load_settings(relay_env="test").paas is None


@pytest.mark.parametrize(
    "kind", ["release", "web", "worker", "relay subscribers list", "relay reconcile"]
)
def test_every_process_refuses_with_one_line_naming_database_url(tmp_path: Path, kind: str) -> None:
    if kind in ("release", "web", "worker"):
        argv = procfile_command(kind, PROCFILE)
    else:
        argv = shlex.split(kind) + (["--older-than", "15m"] if "reconcile" in kind else [])
    argv[0] = bin_path(argv[0])
    env = clean_env(DYNO=f"{kind.split()[0]}.1", PORT=str(free_port()), WEB_CONCURRENCY="2")
    # gunicorn reads gunicorn.conf.py from its working directory: the repository's, as on a dyno.
    cwd = ROOT if kind == "web" else tmp_path
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode != 0, lines
    assert len(lines) == 1, lines
    assert "DATABASE_URL" in lines[0] and "DYNO" in lines[0], lines
    assert not (tmp_path / "instance").exists()


def test_gunicorn_takes_its_connections_and_access_log_from_the_settings(tmp_path: Path) -> None:
    show = (
        "import json, runpy; g = runpy.run_path('gunicorn.conf.py'); "
        "print(json.dumps({k: g[k] for k in ('worker_connections', 'accesslog')}))"
    )
    base = {"RELAY_ENV": "test", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert json.loads(python_output(show, clean_env(**base))) == {
        "worker_connections": 1000,
        "accesslog": None,
    }
    chosen = clean_env(**base, WEB_CONNECTIONS="250", ACCESS_LOG="1")
    assert json.loads(python_output(show, chosen)) == {"worker_connections": 250, "accesslog": "-"}


def pool_limits(pool: object) -> tuple[int, int]:
    assert isinstance(pool, QueuePool)
    return pool.size(), pool._max_overflow


def test_the_web_and_the_cli_build_their_pools_from_the_settings(
    env: pytest.MonkeyPatch, postgres_database_url: str
) -> None:
    env.setenv("DYNO", "web.1")
    env.setenv("RELAY_ENV", "test")
    env.setenv("DATABASE_URL", postgres_database_url)
    env.setenv("DB_POOL_SIZE", "3")
    env.setenv("DB_MAX_OVERFLOW", "1")
    app = create_app()  # as gunicorn's workers build it: from the environment
    engine = app.extensions["relay"].engine
    try:
        assert pool_limits(engine.pool) == (3, 1)
        with app.test_client() as client:
            assert client.get("/readyz").status_code == 200  # and it works
    finally:
        engine.dispose()
    ctx = Context()  # what every `relay` command, worker included, builds its engine with
    try:
        assert pool_limits(ctx.runtime.engine.pool) == (3, 1)
    finally:
        ctx.runtime.engine.dispose()


def test_the_worker_process_reports_the_pool_it_built(
    tmp_path: Path, postgres_database_url: str
) -> None:
    env = clean_env(
        DYNO="worker.1",
        DATABASE_URL=postgres_database_url,
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="5",
        LOG_FORMAT="text",
    )
    argv = procfile_command("worker", PROCFILE)
    argv[0] = bin_path(argv[0])
    worker = Process("worker", argv, env=env, cwd=tmp_path)
    try:
        line = worker.wait_for_line("relay worker", 30)
        assert "(pool 2+5)" in line, line
    finally:
        assert worker.stop() == 0, worker.output()


def test_gunicorn_outlasts_the_router_and_the_platform_kill(tmp_path: Path) -> None:
    """gunicorn.conf.py as gunicorn reads it: keep-alive longer than Heroku's Router 2.0 keeps
    an idle connection (90 s), and the graceful stop well inside the 30 s before SIGKILL."""
    show = (
        "import json, runpy; g = runpy.run_path('gunicorn.conf.py'); "
        "print(json.dumps({k: g[k] for k in ('keepalive', 'graceful_timeout', 'worker_class')}))"
    )
    env = clean_env(
        RELAY_ENV="test", PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PORT="5000", DYNO="web.1"
    )
    env["DATABASE_URL"] = "postgres://u:p@127.0.0.1:5432/relay"
    config = json.loads(python_output(show, env))
    assert config["keepalive"] > 90
    assert config["graceful_timeout"] <= 25
    assert config["worker_class"] != "sync"  # the sync worker ignores keep-alive
