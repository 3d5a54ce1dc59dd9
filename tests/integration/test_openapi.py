"""The admin API's published contract: the OpenAPI document at ``/api/openapi.json`` matches
the routes, every route refuses a missing or wrong bearer token, and schemathesis, generating
requests from the document against the real app (WSGI, a SQLite file, the vendor simulator on
loopback), finds no 5xx and no response that breaks the document.

Network: everything stays on 127.0.0.1. A guard refuses any other name or address for the
duration of these tests (generated image URLs would otherwise be fetched).
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from sqlalchemy import Engine, text
from werkzeug.serving import WSGIRequestHandler, make_server

from receiver import create_app
from receiver.delivery.worker import Worker
from receiver.runtime import Runtime, build_runtime
from receiver.web.ratelimit import FailureLimiter
from simulator.app import create_app as create_simulator
from simulator.app import get_state
from simulator.config import SimulatorConfig
from tests.conftest import ADMIN_TOKEN, JobFactory, make_settings, new_subscriber, task_body
from tests.helpers import post_and_apply, worker_config

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any name lookup or connection that is not loopback."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: not loopback (test guard)")
        return real_getaddrinfo(host, *args, **kw)

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and str(address[0]) not in LOOPBACK:
            raise OSError(f"connection to {address[0]} refused by the test guard")
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@pytest.fixture
def vendor_url() -> Iterator[str]:
    """The simulator as the vendor; its tasks never call back (start delay of an hour)."""
    sim = create_simulator(SimulatorConfig(progress_steps=0, start_delay=3600))
    server = make_server("127.0.0.1", 0, sim, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        get_state(sim).shutdown()


@pytest.fixture
def api(sqlite_url: str, vendor_url: str) -> Iterator[tuple[Flask, Runtime]]:
    rt = build_runtime(make_settings(sqlite_url, useapi_base_url=vendor_url, log_level="ERROR"))
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    # These tests send hundreds of wrong tokens from one address on purpose: a limiter with
    # room for them (the limit itself: tests/integration/test_hostile_round2.py).
    app.extensions["auth_limiter"] = FailureLimiter(max_failures=1_000_000)
    yield app, rt
    rt.engine.dispose()


def seed(client: FlaskClient, rt: Runtime) -> dict[str, str]:
    """Real objects for the path parameters: a subscriber, a finished job with events, and a
    delivery that failed (a dead letter, so that it can be retried)."""
    sub = new_subscriber(
        rt.engine,
        ["task.progress", "task.succeeded", "task.failed"],
        url="http://127.0.0.1:9/closed",
        max_in_flight=2,
        description="seeded",
    )
    job, ref = JobFactory(rt)(metadata={"order": 1})
    for body in (
        task_body(ref, "RUNNING", progressRatio="0.5", progressText="half"),
        task_body(ref, "SUCCEEDED", artifacts=[{"url": "https://cdn.example/v.mp4"}]),
    ):
        assert post_and_apply(client, body).status_code == 202
    config = worker_config((0.0,))
    Worker(rt.engine, config).run_until_idle()
    with rt.engine.connect() as conn:
        delivery = conn.execute(
            text("SELECT id FROM deliveries WHERE status = 'failed' ORDER BY id")
        ).scalars()
        delivery_id = next(iter(delivery))
    return {"subscriber_id": sub.id, "job_id": job.id, "delivery_id": delivery_id}


def document(client: FlaskClient) -> dict[str, Any]:
    r = client.get("/api/openapi.json", headers=AUTH)
    assert r.status_code == 200
    return r.json  # type: ignore[no-any-return]


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    )


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), path)


def counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("jobs", "subscribers", "deliveries", "events")
        ) + (
            int(
                conn.execute(
                    text("SELECT count(*) FROM subscribers WHERE deleted_at IS NULL AND enabled")
                ).scalar_one()
            ),
        )


# -- the document and the routes ------------------------------------------------------------


def test_document_is_valid_openapi_and_matches_the_routes(api: tuple[Flask, Runtime]) -> None:
    app, _ = api
    doc = document(app.test_client())
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            for method in rule.methods or ():
                if method.lower() in METHODS:
                    routes.add((path, method.lower()))
    assert set(operations(doc)) == routes
    for path, method in operations(doc):
        responses = doc["paths"][path][method]["responses"]
        for status in ("401", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, (path, method, status)
        if "requestBody" in doc["paths"][path][method]:
            # 408: BODY_READ_TIMEOUT_SECONDS applies to every body (receiver/web/slowbody.py).
            assert {"400", "408", "413", "422"} <= set(responses), (path, method)
    submit = doc["paths"]["/api/tasks"]["post"]["responses"]
    assert "idempotency_key_in_flight" in submit["409"]["description"]
    assert "idempotency_key_reused" in submit["422"]["description"]


BAD_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Authorization": ADMIN_TOKEN},
    {"Authorization": f"Token {ADMIN_TOKEN}"},
    {"Authorization": f"Bearer {ADMIN_TOKEN.upper()}"},
    {"Authorization": "Bearer t\u00f6ken"},
    {"X-Admin-Token": ADMIN_TOKEN},
    {"Cookie": f"token={ADMIN_TOKEN}"},
]


def test_every_documented_route_refuses_a_missing_or_wrong_token(
    api: tuple[Flask, Runtime],
) -> None:
    app, rt = api
    client = app.test_client()
    ids = seed(client, rt)
    doc = document(client)
    before = counts(rt.engine)
    body = json.dumps({"url": "http://127.0.0.1:9/x", "since": "2020-01-01T00:00:00Z"})
    for path, method in operations(doc):
        url = fill(path, ids)
        for headers in BAD_AUTH:
            r = client.open(
                url + f"?token={ADMIN_TOKEN}", method=method.upper(), headers=headers, data=body
            )
            assert r.status_code == 401, (method, url, headers, r.status_code)
            assert r.json["error"]["code"] == "unauthorized"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert ADMIN_TOKEN not in r.get_data(as_text=True)
    assert counts(rt.engine) == before  # nothing created, deleted, retried or disabled


def test_unknown_paths_and_methods_need_the_token_too(api: tuple[Flask, Runtime]) -> None:
    """Without the token, /api answers 401 whatever the path or method, so a caller learns
    nothing of what exists; with it, the usual JSON 404 and 405 (with Allow)."""
    app, _ = api
    client = app.test_client()
    doc = document(client)
    for url, method in (("/api/nope", "GET"), ("/api", "GET"), ("/api/tasks", "PUT")):
        assert client.open(url, method=method).status_code == 401
    assert client.get("/api/nope", headers=AUTH).json["error"]["code"] == "not_found"
    templates = [
        (re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"), method.upper())
        for path, method in operations(doc)
    ]
    for path, item in doc["paths"].items():
        documented = {m.upper() for m in item if m in METHODS}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
            url = fill(path, {})
            assert client.open(url, method=method).status_code == 401
            if any(m == method and rx.match(url) for rx, m in templates):
                continue  # e.g. GET /api/deliveries/recover is GET /api/deliveries/{id}
            r = client.open(url, method=method, headers=AUTH)
            assert r.status_code == 405, (method, url)
            assert r.json["error"]["code"] == "method_not_allowed"
            allowed = {m.strip() for m in r.headers["Allow"].split(",")}
            assert allowed - {"HEAD", "OPTIONS"} == {m for rx, m in templates if rx.match(url)}


def test_admin_api_is_off_without_admin_token(sqlite_url: str) -> None:
    rt = build_runtime(make_settings(sqlite_url, admin_token=""))
    try:
        client = create_app(runtime=rt).test_client()
        for path, method in (("/api/tasks", "GET"), ("/api/openapi.json", "GET")):
            for headers in ({}, {"Authorization": "Bearer "}, AUTH):
                r = client.open(path, method=method, headers=headers)
                assert r.status_code == 503
                assert r.json["error"]["code"] == "admin_disabled"
    finally:
        rt.engine.dispose()


# -- hostile bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"", 400, "empty body"),
        (b"[]", 400, "expected a JSON object"),
        (b'{"url": NaN}', 400, "NaN is not allowed"),
        (b'{"url": "x", "n": 1e999}', 400, "out of range"),
        (b'{"url": "http://127.0.0.1:9/\\u0000"}', 400, "NUL"),
        (b'{"url": "\\udc00"}', 400, "unpaired surrogate"),
        (b'{"url": "\xff"}', 400, "UTF-8"),
        (b'{"url": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nested deeper"),
        (b'{"url": 5}', 422, "url"),
        (b'{"url": "http://127.0.0.1:9/x", "evil": 1}', 422, "evil"),
    ],
)
def test_hostile_bodies_on_the_api_are_4xx(
    client: FlaskClient, engine: Engine, raw: bytes, status: int, fragment: str
) -> None:
    """On both databases: nothing that PostgreSQL cannot store gets as far as an insert."""
    before = counts(engine)
    r = client.post("/api/subscribers", data=raw, headers=AUTH)
    assert r.status_code == status, r.json
    assert fragment in r.json["error"]["message"]
    assert counts(engine) == before


def test_hostile_submission_metadata_never_reaches_the_database(
    client: FlaskClient, engine: Engine
) -> None:
    before = counts(engine)
    for metadata in (b'{"k": "\\u0000"}', b'{"k": Infinity}', b'{"k": "\\ud800"}'):
        raw = b'{"prompt": "x", "metadata": ' + metadata + b"}"
        r = client.post("/api/tasks", data=raw, headers=AUTH)
        assert r.status_code == 400, r.json
    assert counts(engine) == before


def test_api_body_size_limit(client: FlaskClient) -> None:
    big = json.dumps({"url": "http://127.0.0.1:9/x", "description": "x" * 300_000})
    assert client.post("/api/subscribers", data=big, headers=AUTH).status_code == 413
    assert client.post("/api/subscribers", data=big).status_code == 401  # the token comes first


# -- schemathesis ---------------------------------------------------------------------------


def test_schemathesis_finds_no_5xx_and_no_response_breaking_the_document(
    api: tuple[Flask, Runtime],
) -> None:
    """Positive and negative cases for every operation, with random and with real ids, each
    response checked against the document (status, content type, schema, headers), plus
    schemathesis' auth and method checks. Excluded: ``positive_data_acceptance`` (schema-valid
    bodies may still break rules the schema cannot say, e.g. a model's options: 422) and
    ``negative_data_rejection`` (unknown query parameters are ignored, as HTTP APIs do)."""
    app, rt = api
    ids = seed(app.test_client(), rt)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=AUTH)
    failures: list[str] = []
    ops = [result.ok() for result in schema.get_all_operations()]
    ops.sort(key=lambda op: op.method.lower() == "delete")  # delete the seeded subscriber last
    documented = {f"{m.upper()} {path}" for path, m in operations(document(app.test_client()))}
    # schemathesis leaves out the document's own route
    assert {op.label for op in ops} == documented - {"GET /api/openapi.json"}
    statuses: dict[int, int] = {}

    for op in ops:
        names = re.findall(r"\{(\w+)\}", op.path)
        strategies = [
            op.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
            op.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        ]
        if names:
            real = {name: ids[name] for name in names}
            strategies.append(op.as_strategy(path_parameters=real))

        for strategy in strategies:

            @settings(
                max_examples=15,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                response = case.call(headers=AUTH)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                case.validate_response(
                    response,
                    headers=AUTH,
                    excluded_checks=[positive_data_acceptance, negative_data_rejection],
                )

            try:
                run()
            except Exception as exc:  # collect every operation's failure, then fail once
                failures.append(f"{op.label}:\n{exc}")

    assert not failures, "\n\n".join(failures)
    assert not [s for s in statuses if s >= 500], statuses
    # the run reached the interesting answers, not only refusals
    assert {200, 201, 204, 400, 401, 404, 422} <= set(statuses), statuses
