"""``ARTIFACT_STORE`` (a local directory) on a real SQLite file and PostgreSQL: a succeeded
task's deliveries wait for the copy of its video, the event then carries a durable URL beside
the vendor's, and that URL still serves the video once the vendor's is dead. Videos come from
a real HTTP server on loopback."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from receiver import create_app
from receiver.artifacts import RETRY_SCHEDULE, Copier, CopierConfig, copier_config
from receiver.clock import utcnow
from receiver.runtime import build_runtime
from receiver.settings import Settings
from simulator.subscriber import SubscriberServer
from tests.conftest import JobFactory, make_settings, task_body
from tests.helpers import post_and_apply
from tests.integration.test_delivery import register, worker_for

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # about 10 kB


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class VendorCdn:
    """Serves ``/video.mp4``; ``fail_next`` answers 503 that many times first."""

    def __init__(self) -> None:
        self.hits = 0
        self.fail_next = 0
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, name: str = "video.mp4") -> str:
        return f"http://127.0.0.1:{self._server.server_port}/{name}?sig=abc&expires=1"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.hits += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response("busy", status=503)(environ, start_response)
        if request.path != "/video.mp4":
            return Response("no", status=404)(environ, start_response)
        return Response(VIDEO, mimetype="video/mp4")(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def cdn() -> Iterator[VendorCdn]:
    server = VendorCdn()
    yield server
    server.stop()


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"artifact_store": str(tmp_path / "videos")}


@contextmanager
def subscribed(engine: Engine) -> Iterator[SubscriberServer]:
    """A subscriber on loopback inside the block, registered in ``engine``'s database for the
    default event types."""
    with SubscriberServer() as server:
        register(engine, server)
        yield server


def configured(settings: Settings) -> CopierConfig:
    """The copier's configuration of ``settings`` (which name an artifact store)."""
    config = copier_config(settings)
    assert config is not None
    return config


def succeed(client: FlaskClient, make_job: JobFactory, url: str) -> None:
    """A new job whose task succeeds with one artifact at ``url`` (its callback accepted)."""
    _, ref = make_job()
    body = task_body(
        ref,
        "SUCCEEDED",
        artifacts=[{"url": url, "filename": "boat.mp4", "fileSize": "10"}],
        task_uuid=ref[-12:],
    )
    assert post_and_apply(client, body).status_code == 202


@pytest.fixture
def task_succeeds(client: FlaskClient, make_job: JobFactory, cdn: VendorCdn) -> Callable[[], None]:
    """:func:`succeed` on the test's app, with the artifact on ``cdn``: each call, one more
    job whose task succeeded."""
    return functools.partial(succeed, client, make_job, cdn.url())


def copy_row(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM artifact_copies")).one()._mapping)


def test_delivery_waits_for_the_copy_and_carries_a_durable_url(
    client: FlaskClient,
    engine: Engine,
    cdn: VendorCdn,
    settings: Settings,
    task_succeeds: Callable[[], None],
) -> None:
    with subscribed(engine) as subscriber:
        task_succeeds()
        worker = worker_for(engine)
        assert worker.run_until_idle() == 0  # held for the copy
        assert copy_row(engine)["status"] == "pending"
        config = configured(settings)
        assert Copier(engine, config).run_once() is True
        row = copy_row(engine)
        assert row["status"] == "done" and row["attempts"] == 1
        assert worker.run_until_idle() == 1
        (event,) = subscriber.verified_events()
    artifact = event["data"]["artifacts"][0]
    assert event["type"] == "task.succeeded" and artifact["url"] == cdn.url()
    durable = artifact["durable_url"]
    assert durable.startswith(settings.public_base_url + "/artifacts/")
    cdn.stop()  # the vendor's URL is dead now; ours is not
    path = durable.removeprefix(settings.public_base_url)
    got = client.get(path)
    try:
        assert got.status_code == 200 and got.data == VIDEO
        assert got.mimetype == "video/mp4"
    finally:
        got.close()
    assert client.get(path[:-3] + "xyz").status_code == 404  # a forged token
    stored = Path(settings.artifact_store)
    assert [p.read_bytes() for p in stored.rglob("*.mp4")] == [VIDEO]


def test_a_failing_download_is_retried_then_done(
    engine: Engine, cdn: VendorCdn, settings: Settings, task_succeeds: Callable[[], None]
) -> None:
    task_succeeds()
    cdn.fail_next = 1
    config = configured(settings)
    copier = Copier(engine, config)
    assert copier.run_once() is True
    row = copy_row(engine)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "503" in row["last_error"]
    assert copier.run_once() is False  # not due yet
    later = utcnow() + timedelta(seconds=RETRY_SCHEDULE[0] + 1)
    assert copier.run_once(now=later) is True
    assert copy_row(engine)["status"] == "done" and cdn.hits == 2


def test_too_large_or_unsafe_goes_out_with_the_vendor_url_only(
    engine: Engine, cdn: VendorCdn, settings: Settings, task_succeeds: Callable[[], None]
) -> None:
    with subscribed(engine) as subscriber:
        task_succeeds()
        config = configured(settings)
        assert Copier(engine, replace(config, max_bytes=1024)).run_once() is True
        row = copy_row(engine)
        assert row["status"] == "failed" and "ARTIFACT_MAX_BYTES" in row["last_error"]
        assert worker_for(engine).run_until_idle() == 1  # released at once, not after the hold
        (event,) = subscriber.verified_events()
        assert "durable_url" not in event["data"]["artifacts"][0]
        assert not list(Path(settings.artifact_store).rglob("*.mp4"))

        # Without ALLOW_PRIVATE_URLS the guard refuses a loopback (and plain http) source.
        task_succeeds()
        hits = cdn.hits
        Copier(engine, replace(config, allow_private=False)).run_once()
        with engine.connect() as conn:
            status, error = conn.execute(
                text("SELECT status, last_error FROM artifact_copies ORDER BY created_at DESC")
            ).first() or (None, None)
        assert status == "failed" and "refused" in error
        assert cdn.hits == hits  # never contacted


@pytest.mark.parametrize("settings_overrides", [{}])
def test_without_artifact_store_nothing_is_held(
    client: FlaskClient, engine: Engine, task_succeeds: Callable[[], None]
) -> None:
    with subscribed(engine) as subscriber:
        task_succeeds()
        assert worker_for(engine).run_until_idle() == 1
        (event,) = subscriber.verified_events()
    assert "durable_url" not in event["data"]["artifacts"][0]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM artifact_copies")).scalar_one() == 0
    assert client.get("/artifacts/anything").status_code == 404
    assert json.loads(client.get("/artifacts/x").data)["error"]["code"] == "artifact_not_found"


def test_store_setting_is_checked_at_start_up(database_url: str) -> None:
    from receiver.settings import ConfigError

    assert make_settings(database_url, artifact_store="s3://videos/relay").artifact_store
    with pytest.raises(ConfigError, match="is not an S3 bucket name"):
        make_settings(database_url, artifact_store="s3://No_Such/prefix")
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        make_settings(database_url, artifact_store="/tmp/x", public_base_url="")


# -- an S3-compatible bucket (moto's server on loopback) ----------------------------------------


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with the bucket ``videos``; AWS variables as a user
    would set them (boto3 reads them)."""
    from moto.server import ThreadedMotoServer

    from simulator.processes import free_port

    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3_client(endpoint).create_bucket(Bucket="videos")
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint)


def test_s3_store_copy_redirects_to_a_presigned_url_and_purge_deletes_it(
    database_url: str, s3_endpoint: str, cdn: VendorCdn
) -> None:
    import requests

    from receiver.store import retention

    settings = make_settings(
        database_url, artifact_store="s3://videos/relay", artifact_s3_endpoint_url=s3_endpoint
    )
    runtime = build_runtime(settings)
    try:
        app = create_app(runtime=runtime)
        client, engine = app.test_client(), runtime.engine
        with subscribed(engine) as subscriber:
            succeed(client, JobFactory(runtime), cdn.url())
            config = configured(settings)
            assert Copier(engine, config).run_once() is True
            assert copy_row(engine)["status"] == "done"
            assert worker_for(engine).run_until_idle() == 1
            (event,) = subscriber.verified_events()
        objects = s3_client(s3_endpoint).list_objects_v2(Bucket="videos")["Contents"]
        assert [o["Key"].startswith("relay/job_") for o in objects] == [True]
        durable = event["data"]["artifacts"][0]["durable_url"]
        cdn.stop()
        answer = client.get(durable.removeprefix(settings.public_base_url))
        assert answer.status_code == 302
        location = answer.headers["Location"]
        assert location.startswith(s3_endpoint + "/videos/relay/") and "Signature" in location
        video = requests.get(location, timeout=10)
        assert video.status_code == 200 and video.content == VIDEO

        removed = retention.purge(
            engine,
            retention.cutoff_for(1, utcnow() + timedelta(days=2)),
            artifact_store=settings.artifact_store,
            s3_endpoint_url=s3_endpoint,
        )
        assert removed["artifact_copies"] == 1 and removed["events"] == 1
        assert "Contents" not in s3_client(s3_endpoint).list_objects_v2(Bucket="videos")
    finally:
        runtime.engine.dispose()
