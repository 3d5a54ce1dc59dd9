"""When the database is away: /readyz says so, callbacks get 503 (never a half-stored 2xx),
and lost PostgreSQL connections are replaced without a restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from client import ReplyRefSigner
from receiver import create_app, services
from receiver.clock import utcnow
from receiver.delivery.worker import Worker, WorkerConfig
from receiver.runtime import Runtime, build_runtime
from simulator.processes import free_port
from simulator.subscriber import SubscriberServer
from tests.conftest import SECRET, JobFactory, make_settings, task_body


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


def _kill_connections(engine: Engine) -> int:
    """Terminate every other backend on this database (what a failover does to a pool)."""
    with engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        conn.commit()
    return int(killed)


@pytest.fixture
def pg_runtime(postgres_database_url: str) -> Iterator[Runtime]:
    rt = build_runtime(make_settings(postgres_database_url))
    yield rt
    rt.engine.dispose()


def test_lost_postgres_connections_are_replaced(pg_runtime: Runtime) -> None:
    engine = pg_runtime.engine
    client = create_app(runtime=pg_runtime).test_client()
    make_job = JobFactory(pg_runtime)
    with SubscriberServer() as server:
        sub = services.create_subscriber(
            engine,
            url=server.url,
            event_types=None,
            description=None,
            max_in_flight=4,
            allow_private=True,
            now=utcnow(),
        )
        server.secrets.append(sub.secret)
        config = WorkerConfig(
            (0.1, 0.1, 0.1), 2.0, 2, allow_private=True, disable_after=3600.0, idle_poll=0.1
        )
        worker = Worker(engine, config)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            for n in range(2):
                job, ref = make_job()
                assert client.get("/readyz").status_code == 200
                # pooled connections of the app and the worker's LISTEN connection all die
                assert _kill_connections(engine) >= 1
                body = task_body(
                    ref,
                    "SUCCEEDED",
                    task_uuid=f"outage-{n}",
                    artifacts=[{"url": "https://x/v.mp4"}],
                )
                r = client.post("/callbacks/useapi", data=json.dumps(body))
                assert r.status_code == 200, r.json
                got = server.wait_for(
                    lambda rs, j=job.id: any(x.body and x.body["data"]["job_id"] == j for x in rs),
                    timeout=10,
                )
                assert any(x.body and x.body["data"]["job_id"] == job.id for x in got)
        finally:
            worker.stop()
            thread.join(10)
        assert not thread.is_alive()
