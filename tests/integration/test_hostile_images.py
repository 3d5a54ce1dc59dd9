"""Image URLs given to ``POST /api/tasks`` (issue 16, point 5): fetched the way webhooks are
delivered (the guarded connection, no redirects, no proxy from the environment), with errors
that do not tell hosts or ports apart, and never taken for a file path.

Real HTTP servers on loopback play the image host, a redirect target and a proxy; the vendor
is the simulator. ``ALLOW_PRIVATE_URLS`` is on (everything here is 127.0.0.1), which lifts only
the address check; the connect-time guard itself is tested in test_delivery.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, redirect
from sqlalchemy import Engine, text
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from receiver import create_app
from receiver.delivery.urls import IMAGE_FETCH_FAILED
from receiver.runtime import Runtime, build_runtime
from simulator.app import create_app as create_simulator
from simulator.app import get_state
from simulator.config import SimulatorConfig
from simulator.demo import tiny_png
from simulator.processes import free_port
from tests.conftest import ADMIN_TOKEN, make_settings

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Host:
    """A loopback HTTP server that records the paths it was asked for."""

    def __init__(self, name: str) -> None:
        self.app = Flask(name)
        self.hits: list[str] = []
        self.app.before_request(self._record)
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet
        )
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _record(self) -> None:
        from flask import request

        self.hits.append(request.full_path)


@pytest.fixture
def hosts() -> Iterator[dict[str, Host]]:
    image, target, proxy = Host("image-host"), Host("redirect-target"), Host("proxy")

    @image.app.get("/frame.png")
    def frame() -> Response:
        return Response(tiny_png(), mimetype="image/png")

    @image.app.get("/missing.png")
    def missing() -> Response:
        return Response("not here", status=404)

    @image.app.get("/page.png")
    def page() -> Response:
        return Response("<html>a page</html>", mimetype="text/html")

    @image.app.get("/moved.png")
    def moved() -> Any:
        return redirect(target.base + "/internal.png", 302)

    @target.app.get("/internal.png")
    def internal() -> Response:
        return Response(tiny_png(), mimetype="image/png")

    @proxy.app.route("/", defaults={"path": ""})
    @proxy.app.route("/<path:path>")
    def anything(path: str) -> Response:
        return Response(tiny_png(), mimetype="image/png")

    yield {"image": image, "target": target, "proxy": proxy}
    for host in (image, target, proxy):
        host.server.shutdown()


@pytest.fixture
def relay(sqlite_url: str) -> Iterator[tuple[Flask, Runtime]]:
    """The relay with the simulator as its vendor, reached as ``localhost`` (so that a proxy
    setting can be told to spare the vendor and not the image host)."""
    sim = create_simulator(SimulatorConfig(progress_steps=0, start_delay=3600))
    server = make_server("127.0.0.1", 0, sim, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rt = build_runtime(
        make_settings(
            sqlite_url,
            useapi_base_url=f"http://localhost:{server.server_port}",
            log_level="ERROR",
        )
    )
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    try:
        yield app, rt
    finally:
        rt.engine.dispose()
        server.shutdown()
        get_state(sim).shutdown()


def submit(app: Flask, image: str) -> Any:
    return app.test_client().post(
        "/api/tasks", json={"image": image, "prompt": "a test"}, headers=AUTH
    )


def jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def test_an_image_url_is_fetched_without_the_environment_s_proxy(
    relay: tuple[Flask, Runtime], hosts: dict[str, Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, rt = relay
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, hosts["proxy"].base)
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("no_proxy", "localhost")
    r = submit(app, hosts["image"].base + "/frame.png")
    assert r.status_code == 201, r.json
    assert hosts["image"].hits == ["/frame.png?"]
    assert hosts["proxy"].hits == []  # the download went straight to the host
    assert jobs(rt.engine) == 1


def test_redirects_are_not_followed(relay: tuple[Flask, Runtime], hosts: dict[str, Host]) -> None:
    app, rt = relay
    r = submit(app, hosts["image"].base + "/moved.png")
    assert r.status_code == 422
    assert r.json["error"] == {
        "code": "invalid_image",
        "message": IMAGE_FETCH_FAILED,
        "request_id": r.json["error"]["request_id"],
    }
    assert hosts["image"].hits == ["/moved.png?"]
    assert hosts["target"].hits == []  # never asked
    assert jobs(rt.engine) == 0


def test_download_errors_do_not_tell_ports_apart(
    relay: tuple[Flask, Runtime], hosts: dict[str, Host]
) -> None:
    """A closed port, an HTTP error, a page that is not an image and a redirect all answer
    the same: a probe learns nothing of what listens where."""
    app, rt = relay
    image = hosts["image"].base
    answers = [
        submit(app, url)
        for url in (
            f"http://127.0.0.1:{free_port()}/frame.png",  # nothing listens
            image + "/missing.png",
            image + "/page.png",
            image + "/moved.png",
        )
    ]
    assert [a.status_code for a in answers] == [422] * 4
    assert {a.json["error"]["message"] for a in answers} == {IMAGE_FETCH_FAILED}
    assert jobs(rt.engine) == 0


@pytest.mark.parametrize(
    "prefix",
    [" " * 10, "\t", "\x01", "\x1b"],
)
def test_a_string_taken_for_a_url_never_reaches_the_file_system(
    relay: tuple[Flask, Runtime],
    hosts: dict[str, Host],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
) -> None:
    """URL parsers drop leading whitespace and control characters; a file named like what is
    left must not be read and uploaded in its place."""
    app, rt = relay
    monkeypatch.chdir(tmp_path)
    url = prefix + hosts["image"].base + "/frame.png"
    planted = tmp_path / Path(url.replace("//", "/"))
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(tiny_png())
    r = submit(app, url)
    assert r.status_code == 422, r.json
    assert r.json["error"]["code"] == "invalid_image"
    assert hosts["image"].hits == []
    assert jobs(rt.engine) == 0
