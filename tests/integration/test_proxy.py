"""Behind a PaaS router: the client address, scheme and host come from ``X-Forwarded-*`` for
exactly ``TRUSTED_PROXY_HOPS`` hops (werkzeug's ProxyFix), and nothing beyond them is trusted.

What is observed is what an operator sees: the source address in the refused-callback log and
in the callback records, and the ``Secure`` flag of the dashboard's session cookie (set when
the request came over https). The last test runs the Procfile's ``web:`` line (gunicorn) to
prove that the server in front of the app trusts no more than the app does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request
from sqlalchemy import Engine, text

from receiver import create_app
from receiver.runtime import Runtime, build_runtime
from simulator.processes import Process
from tests.conftest import ADMIN_TOKEN, JobFactory, make_settings, task_body
from tests.helpers import start_web

#: What a client wrote itself (6.6.6.6), what an inner proxy added (1.1.1.1) and what the
#: PaaS router appended last (9.9.9.9): only the right-most N are trustworthy.
CHAIN = "6.6.6.6, 1.1.1.1, 9.9.9.9"


@pytest.fixture
def make_app(sqlite_url: str) -> Iterator[Any]:
    runtimes: list[Runtime] = []

    def build(hops: int, **overrides: Any) -> tuple[Flask, Runtime]:
        rt = build_runtime(make_settings(sqlite_url, trusted_proxy_hops=hops, **overrides))
        runtimes.append(rt)
        app = create_app(runtime=rt)
        app.config["TESTING"] = True
        return app, rt

    yield build
    for rt in runtimes:
        rt.engine.dispose()


def refused_sources(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(text("SELECT source_ip FROM refused_callbacks ORDER BY id")).scalars()
        )


def callback_sources(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT source_ip FROM callbacks ORDER BY id")).scalars())


def cookie_is_secure(response: Any) -> bool:
    """Whether the dashboard's session cookie carries ``Secure`` (a Flask or a requests
    response; requests joins several Set-Cookie headers with commas)."""
    headers = response.headers
    values = (
        headers.getlist("Set-Cookie") if hasattr(headers, "getlist") else [headers["Set-Cookie"]]
    )
    cookies = [c for c in values if c.startswith("relay_session")]
    assert cookies, headers
    return "; Secure" in cookies[0]


@pytest.mark.parametrize(
    ("hops", "client_address"),
    [(0, "127.0.0.1"), (1, "9.9.9.9"), (2, "1.1.1.1"), (3, "6.6.6.6")],
)
def test_client_address_comes_from_the_trusted_hops_only(
    make_app: Any, hops: int, client_address: str
) -> None:
    app, rt = make_app(hops)
    client = app.test_client()
    headers = {"X-Forwarded-For": CHAIN}
    assert client.post("/callbacks/useapi", data=b"{}", headers=headers).status_code == 401
    job, ref = JobFactory(rt)()
    r = client.post("/callbacks/useapi", data=json.dumps(task_body(ref)), headers=headers)
    assert r.status_code == 202
    assert refused_sources(rt.engine) == [client_address]
    assert callback_sources(rt.engine) == [client_address]


def test_a_chain_shorter_than_the_trusted_hops_is_not_trusted_at_all(make_app: Any) -> None:
    """Two hops configured, one value present: the request did not come through both proxies,
    so the header is the client's own claim and the socket address stays."""
    app, rt = make_app(2)
    r = app.test_client().post(
        "/callbacks/useapi", data=b"[]", headers={"X-Forwarded-For": "9.9.9.9"}
    )
    assert r.status_code == 400
    assert refused_sources(rt.engine) == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("hops", "forwarded_proto", "secure"),
    [
        (0, "https", False),
        (1, "https", True),
        (1, "http", False),
        (1, "https, http", False),  # the router says http; the client's https is ignored
        (2, "https, http", True),
        (2, "https", False),  # fewer values than hops: not trusted
    ],
)
def test_scheme_comes_from_the_trusted_hops_only(
    make_app: Any, hops: int, forwarded_proto: str, secure: bool
) -> None:
    app, _ = make_app(hops)
    r = app.test_client().get("/dashboard/login", headers={"X-Forwarded-Proto": forwarded_proto})
    assert r.status_code == 200
    assert cookie_is_secure(r) is secure


FORWARDED_HOST = {
    "X-Forwarded-Host": "evil.example, relay.example.com",
    "X-Forwarded-Port": "1234, 443",
    "X-Forwarded-Proto": "http, https",
    "X-Forwarded-For": CHAIN,
}


def probe_app(make_app: Any, hops: int, **overrides: Any) -> Flask:
    app, _ = make_app(hops, **overrides)

    @app.get("/_probe")
    def probe() -> Any:  # a read-only view of what the app was told, nothing stubbed
        return jsonify(host=request.host, url=request.url, remote=request.remote_addr)

    return app  # type: ignore[no-any-return]


def test_host_and_port_come_from_the_trusted_hop_only_when_asked(make_app: Any) -> None:
    app = probe_app(make_app, 1, trust_forwarded_host=True)
    r = app.test_client().get("/_probe", headers=FORWARDED_HOST)
    assert r.json == {
        "host": "relay.example.com",
        "url": "https://relay.example.com/_probe",
        "remote": "9.9.9.9",
    }


def test_forwarded_host_is_ignored_by_default(make_app: Any) -> None:
    """x_host is off unless TRUST_FORWARDED_HOST asks for it: the Host header the server got
    stays, whatever the router passed on."""
    r = probe_app(make_app, 1).test_client().get("/_probe", headers=FORWARDED_HOST)
    assert r.json == {
        "host": "localhost",
        "url": "https://localhost/_probe",
        "remote": "9.9.9.9",
    }


def test_session_cookie_is_secure_in_production_even_over_plain_http(
    sqlite_url: str,
) -> None:
    rt = build_runtime(
        make_settings(
            sqlite_url,
            relay_env="production",
            admin_token="a" * 40,
            trusted_proxy_hops=0,
            allow_private_urls=False,
        )
    )
    try:
        app = create_app(runtime=rt)
        r = app.test_client().get("/dashboard/login")
        assert r.status_code == 200
        assert cookie_is_secure(r)
    finally:
        rt.engine.dispose()


# -- under gunicorn -------------------------------------------------------------------------


@pytest.fixture
def web(tmp_path: Path, migrated_sqlite_template: Path) -> Iterator[Any]:
    """Start the Procfile's web line with a given TRUSTED_PROXY_HOPS; stopped by pid."""
    started: list[Process] = []

    def start(hops: int) -> str:
        proc, port = start_web(
            f"web-{hops}",
            migrated_sqlite_template,
            tmp_path / f"relay-{hops}.sqlite3",
            TRUSTED_PROXY_HOPS=str(hops),
            WEB_CONCURRENCY="1",
        )
        started.append(proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.stop()


def test_gunicorn_trusts_forwarded_headers_no_further_than_the_app(web: Any) -> None:
    """gunicorn reads X-Forwarded-Proto itself when it trusts the peer; it must not make a
    request https that TRUSTED_PROXY_HOPS=0 says nobody may vouch for."""
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": CHAIN}
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for hops, secure, source in ((0, False, "127.0.0.1"), (1, True, "9.9.9.9")):
        base = web(hops)
        with requests.Session() as session:
            session.trust_env = False
            r = session.get(base + "/dashboard/login", headers=headers, timeout=10)
            assert r.status_code == 200
            assert cookie_is_secure(r) is secure, (hops, r.headers)
            assert (
                session.post(
                    base + "/callbacks/useapi", data=b"{}", headers=headers, timeout=10
                ).status_code
                == 401
            )
            log = session.get(base + "/api/refused-callbacks", headers=auth, timeout=10).json()
        assert [item["source_ip"] for item in log["items"]] == [source]


def test_gunicorn_takes_no_script_name_or_path_info_from_a_client(web: Any) -> None:
    """From a peer it trusts, gunicorn turns a ``SCRIPT_NAME`` header into the app's mount
    point, so that every URL the app builds (the sign-in redirect) points where the header
    says: an open redirect. It trusts no peer."""
    base = web(1)
    with requests.Session() as session:
        session.trust_env = False
        r = session.get(
            base + "/dashboard/tasks",
            headers={"SCRIPT_NAME": "//evil.example", "PATH_INFO": "/elsewhere"},
            allow_redirects=False,
            timeout=10,
        )
    assert r.status_code == 303
    location = r.headers["Location"]
    assert "evil" not in location
    assert location.startswith("/dashboard/login")
