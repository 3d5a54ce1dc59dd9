"""When the database is away: /readyz says so, callbacks get 503 (never a half-stored 2xx),
and lost PostgreSQL connections are replaced without a restart."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, text

from client import ReplyRefSigner
from receiver import create_app
from receiver.delivery.worker import Worker, WorkerConfig
from receiver.runtime import Runtime, build_runtime
from receiver.store.engine import application_name
from simulator.processes import free_port
from simulator.subscriber import SubscriberServer
from tests.conftest import SECRET, JobFactory, make_settings, new_subscriber, task_body


@pytest.fixture
def unreachable_client() -> Iterator[FlaskClient]:
    """An app whose DATABASE_URL points at a PostgreSQL port where nothing listens."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    rt = build_runtime(make_settings(url))
    app = create_app(runtime=rt)
    yield app.test_client()
    rt.engine.dispose()


def test_readyz_and_callbacks_report_503_while_the_database_is_down(
    unreachable_client: FlaskClient,
) -> None:
    assert unreachable_client.get("/healthz").status_code == 200
    ready = unreachable_client.get("/readyz")
    assert ready.status_code == 503 and ready.json["status"] == "unavailable"
    ref = ReplyRefSigner([SECRET]).sign("job_whatever")
    r = unreachable_client.post("/callbacks/useapi", data=json.dumps(task_body(ref, "SUCCEEDED")))
    assert r.status_code == 503
    assert r.json["error"]["code"] == "database_unavailable"
    assert r.headers["Retry-After"] == "5"
    api = unreachable_client.get("/api/tasks", headers={"Authorization": "Bearer test-admin-token"})
    assert api.status_code == 503


def _kill_connections(engine: Engine, name: str) -> int:
    """Terminate every other backend of this test, known by its ``application_name`` (what a
    failover does to a pool); other tests' and runs' connections are left alone."""
    with engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name "
                "AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).scalar_one()
        conn.commit()
    return int(killed)


@pytest.fixture
def pg_runtime(postgres_database_url: str) -> Iterator[Runtime]:
    """A runtime whose PostgreSQL connections all carry an ``application_name`` of this test's
    own (``relay-outage-…``)."""
    name = f"relay-outage-{uuid.uuid4().hex[:12]}"
    rt = build_runtime(make_settings(f"{postgres_database_url}&application_name={name}"))
    assert application_name(rt.settings.effective_database_url) == name
    yield rt
    rt.engine.dispose()


def test_lost_postgres_connections_are_replaced(pg_runtime: Runtime) -> None:
    engine = pg_runtime.engine
    name = application_name(pg_runtime.settings.effective_database_url)
    bystander = create_engine(pg_runtime.settings.effective_database_url.split("?")[0])
    client = create_app(runtime=pg_runtime).test_client()
    make_job = JobFactory(pg_runtime)
    with SubscriberServer() as server:
        sub = new_subscriber(engine, url=server.url)
        server.secrets.append(sub.secret)
        config = WorkerConfig(
            (0.1, 0.1, 0.1), 2.0, 2, allow_private=True, disable_after=3600.0, idle_poll=0.1
        )
        worker = Worker(engine, config)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        bystander_conn = bystander.connect()  # another application's connection
        try:
            for n in range(2):
                job, ref = make_job()
                assert client.get("/readyz").status_code == 200
                # pooled connections of the app and the worker's LISTEN connection all die
                assert _kill_connections(engine, name) >= 1
                assert bystander_conn.execute(text("SELECT 1")).scalar_one() == 1  # not this
                body = task_body(
                    ref,
                    "SUCCEEDED",
                    task_uuid=f"outage-{n}",
                    artifacts=[{"url": "https://x/v.mp4"}],
                )
                r = client.post("/callbacks/useapi", data=json.dumps(body))
                assert r.status_code == 202, r.json
                got = server.wait_for(
                    lambda rs, j=job.id: any(x.body and x.body["data"]["job_id"] == j for x in rs),
                    timeout=10,
                )
                assert any(x.body and x.body["data"]["job_id"] == job.id for x in got)
        finally:
            worker.stop()
            thread.join(10)
            bystander_conn.close()
            bystander.dispose()
        assert not thread.is_alive()
