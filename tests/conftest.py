"""Shared fixtures: settings on a real SQLite file (and PostgreSQL when TEST_DATABASE_URL is
set), the app, its test client, and helpers that make jobs with signed replyRefs."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from receiver import create_app, services
from receiver.clock import utcnow
from receiver.runtime import Runtime, build_runtime
from receiver.settings import Settings, load_settings
from receiver.store.migrate import upgrade
from receiver.store.repositories import Job, Subscriber
from tests.helpers import ADMIN_TOKEN, SECRET, add_job

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Under CI, hypothesis draws the same examples on every run (a failure repeats, a pass is not
# luck) and, on a loaded machine, never fails an example for being slow.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, database=None)
if _in_ci():
    hypothesis_settings.load_profile("ci")


def postgres_url() -> str | None:
    """TEST_DATABASE_URL, or the local default when a server answers there; None otherwise
    (the PostgreSQL pass then skips, saying why).

    :raises pytest.UsageError: TEST_DATABASE_URL is set but empty (a broken CI variable would
        otherwise skip every PostgreSQL test without a word).
    :raises sqlalchemy.exc.OperationalError: the server does not answer while TEST_DATABASE_URL
        or CI is set.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if url is not None and not url.strip():
        raise pytest.UsageError(
            "TEST_DATABASE_URL is set but empty: give a PostgreSQL URL, or unset it to use "
            f"{DEFAULT_PG_URL} when it answers"
        )
    candidate = url or DEFAULT_PG_URL
    candidate = candidate.replace("postgres://", "postgresql+psycopg://", 1)
    if candidate.startswith("postgresql://"):
        candidate = candidate.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = create_engine(candidate, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        if url or _in_ci():
            raise
        return None
    return candidate


def pytest_configure(config: pytest.Config) -> None:
    """Fail the run at once on a TEST_DATABASE_URL that is set but empty."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url is not None and not url.strip():
        postgres_url()  # raises the UsageError


@pytest.fixture(scope="session")
def postgres_base_url() -> str | None:
    """The PostgreSQL server of this run (see :func:`postgres_url`), looked up once per run,
    whichever test asks first; None when there is none (tests that need it skip)."""
    return postgres_url()


def require_postgres(base: str | None) -> str:
    """``base``, or skip the test (never under CI, where :func:`postgres_url` raised)."""
    if base is None:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 (set TEST_DATABASE_URL)")
    return base


@contextmanager
def fresh_postgres_database(base: str, prefix: str = "relay_t_") -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``base``, dropped afterwards (with
    every connection still open to it). Its URL."""
    name = prefix + uuid.uuid4().hex[:10]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run; each test copies it."""
    path = tmp_path_factory.mktemp("template") / "relay.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


def _fresh_pg_schema(base: str) -> tuple[str, str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options=-csearch_path%3D{schema}"


def _drop_pg_schema(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@contextmanager
def _migrated_pg_schema(base: str) -> Iterator[str]:
    """A new schema on the server of ``base``, migrated to head, dropped afterwards. Its URL."""
    schema, url = _fresh_pg_schema(base)
    upgrade(url)
    try:
        yield url
    finally:
        _drop_pg_schema(base, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite_template: Path
) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, then (second pass) a PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "relay.sqlite3"
        shutil.copy(migrated_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    with _migrated_pg_schema(require_postgres(request.getfixturevalue("postgres_base_url"))) as url:
        yield url


@pytest.fixture
def postgres_database_url(postgres_base_url: str | None) -> Iterator[str]:
    """A migrated, empty PostgreSQL schema (for behaviours SQLite does not have)."""
    with _migrated_pg_schema(require_postgres(postgres_base_url)) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite_template: Path) -> str:
    """A migrated SQLite file only (for tests about SQLite itself)."""
    path = tmp_path / "relay.sqlite3"
    shutil.copy(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "relay_env": "test",
        "secret_key": [SECRET],
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "public_base_url": "http://127.0.0.1:9",
        "useapi_token": "sim-token",
        "useapi_base_url": "http://127.0.0.1:9",
        "allow_private_urls": True,
        "log_format": "text",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings that differ from ``make_settings``'s for a module or a test: override this
    fixture (or parametrize it) there; none here."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(database_url, **settings_overrides)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def engine(runtime: Runtime) -> Engine:
    return runtime.engine


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers that pass the admin API's bearer check."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class JobFactory:
    """Makes jobs as ``relay submit`` would leave them, without a vendor."""

    runtime: Runtime

    def __call__(
        self, *, task_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> tuple[Job, str]:
        """A SUBMITTING (or PENDING, with ``task_id``) job and its signed replyRef."""
        job = add_job(
            self.runtime.engine,
            task_id=task_id,
            created=utcnow(),
            status="PENDING" if task_id else "SUBMITTING",
            request={"text_prompt": "a test"},
            metadata=metadata,
        )
        return job, self.runtime.signer.sign(job.id, job.metadata)


@pytest.fixture
def make_job(runtime: Runtime) -> JobFactory:
    return JobFactory(runtime)


def task_body(reply_ref: str | None, status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    """A vendor task object (useapi.net task model) as a callback carries it."""
    body: dict[str, Any] = {
        "taskId": "user:1-runwayml:sim@example.com-task:" + extra.pop("task_uuid", "t-1"),
        "id": "t-1",
        "taskType": "gen3a_turbo",
        "status": status,
        "progressRatio": None,
        "artifacts": [],
        "error": None,
        "replyUrl": "http://127.0.0.1:9/callbacks/useapi",
        "features": {"storageGB": 500},
        "someNewVendorField": {"kept": True},
    }
    if reply_ref is not None:
        body["replyRef"] = reply_ref
    body.update(extra)
    return body


def table_counts(engine: Engine) -> dict[str, int]:
    """Row counts of every table that a callback may write."""
    out = {}
    with engine.connect() as conn:
        for table in ("jobs", "callbacks", "events", "deliveries", "attempts"):
            out[table] = int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    return out


def new_subscriber(
    engine: Engine,
    types: list[str] | None = None,
    *,
    url: str = "http://127.0.0.1:9/hook",
    max_in_flight: int = 4,
    description: str | None = None,
) -> Subscriber:
    """Register a subscriber at ``url``, by default an address nothing listens on (for tests
    that look at the deliveries written, not sent); ``types`` None means the default event
    types. The new row, with its secret."""
    return services.create_subscriber(
        engine,
        url=url,
        event_types=types,
        description=description,
        max_in_flight=max_in_flight,
        allow_private=True,
        now=utcnow(),
    )


def subscribe(
    engine: Engine,
    types: list[str] | None = None,
    *,
    url: str = "http://127.0.0.1:9/hook",
    max_in_flight: int = 4,
) -> str:
    """:func:`new_subscriber`'s id."""
    return new_subscriber(engine, types, url=url, max_in_flight=max_in_flight).id
