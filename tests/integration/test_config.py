"""Configuration: a bad or missing setting stops start-up with a message naming it, and a
secret's value never appears in that message, in a log line or in an error body.

``load_settings`` is checked against the environment as a PaaS sets it; then the real entry
points: the Procfile's ``web:`` line (gunicorn) and ``relay``, which must exit non-zero with
the message, and a running gunicorn at ``LOG_LEVEL=DEBUG`` whose whole output is searched for
every secret it was given or shown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver.settings import ConfigError, Settings, load_settings
from simulator.processes import Process, bin_path, free_port, procfile_command
from tests.conftest import ADMIN_TOKEN, SECRET

ROOT = Path(__file__).resolve().parents[2]
#: Values that must never be echoed back (each long enough to be found unambiguously).
SHORT_KEY = "tiny-s3cret-k"  # 13 characters: too short for SECRET_KEY
GOOD_KEY = "a-good-and-long-s3cret-key-0001"
USEAPI_TOKEN = "useapi-t0ken-never-to-be-printed"
#: In production ADMIN_TOKEN must be at least 32 characters.
PROD_ADMIN_TOKEN = ADMIN_TOKEN + "-long-enough-for-production"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment for Settings: no variable of ours from the outer shell."""
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields} or name.startswith("RELAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # dev-secret-key and the default SQLite file go here
    return monkeypatch


def config_error(env: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RELAY_ENV": "production"}, "SECRET_KEY is required"),
        (
            {"RELAY_ENV": "production", "SECRET_KEY": GOOD_KEY, "ADMIN_TOKEN": "short-admin-t0ken"},
            "ADMIN_TOKEN must be at least 32 characters",
        ),
        ({"RELAY_ENV": "staging", "SECRET_KEY": GOOD_KEY}, "RELAY_ENV"),
        ({"SECRET_KEY": SHORT_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": f"{GOOD_KEY},{SHORT_KEY}"}, "SECRET_KEY"),
        ({"SECRET_KEY": GOOD_KEY, "PORT": "http"}, "PORT"),
        ({"SECRET_KEY": GOOD_KEY, "PORT": "70000"}, "PORT"),
        ({"SECRET_KEY": GOOD_KEY, "TRUSTED_PROXY_HOPS": "-1"}, "TRUSTED_PROXY_HOPS"),
        ({"SECRET_KEY": GOOD_KEY, "TRUSTED_PROXY_HOPS": "two"}, "TRUSTED_PROXY_HOPS"),
        ({"SECRET_KEY": GOOD_KEY, "MAX_CONTENT_LENGTH": "0"}, "MAX_CONTENT_LENGTH"),
        ({"SECRET_KEY": GOOD_KEY, "MAX_CONTENT_LENGTH": "256KiB"}, "MAX_CONTENT_LENGTH"),
        ({"SECRET_KEY": GOOD_KEY, "REPLY_REF_MAX_AGE": "0"}, "REPLY_REF_MAX_AGE"),
        ({"SECRET_KEY": GOOD_KEY, "REPLY_REF_MAX_AGE": "30 days"}, "REPLY_REF_MAX_AGE"),
        ({"SECRET_KEY": GOOD_KEY, "REFUSED_LOG_SIZE": "5"}, "REFUSED_LOG_SIZE"),
        ({"SECRET_KEY": GOOD_KEY, "DELIVERY_RETRY_SCHEDULE": "5,x"}, "DELIVERY_RETRY_SCHEDULE"),
        ({"SECRET_KEY": GOOD_KEY, "DELIVERY_RETRY_SCHEDULE": "5,-1"}, "DELIVERY_RETRY_SCHEDULE"),
        ({"SECRET_KEY": GOOD_KEY, "DELIVERY_TIMEOUT_SECONDS": "0"}, "DELIVERY_TIMEOUT_SECONDS"),
        ({"SECRET_KEY": GOOD_KEY, "LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"SECRET_KEY": GOOD_KEY, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"SECRET_KEY": GOOD_KEY, "VERIFY_WITH_VENDOR": "maybe"}, "VERIFY_WITH_VENDOR"),
        ({"SECRET_KEY": GOOD_KEY, "VERIFY_WITH_VENDOR": "1"}, "USEAPI_TOKEN"),
        ({"SECRET_KEY": GOOD_KEY, "ALLOW_PRIVATE_URLS": "perhaps"}, "ALLOW_PRIVATE_URLS"),
        ({"SECRET_KEY": GOOD_KEY, "USEAPI_BASE_URL": "ftp://vendor"}, "USEAPI_BASE_URL"),
        ({"SECRET_KEY": GOOD_KEY, "PUBLIC_BASE_URL": "relay.example.com"}, "PUBLIC_BASE_URL"),
        ({"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "relay.sqlite3"}, "DATABASE_URL"),
        (
            {"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "postgres://u:db-pa55word@h:port/relay"},
            "DATABASE_URL",
        ),
        ({"SECRET_KEY": GOOD_KEY, "DATABASE_URL": "mysql://u:db-pa55word@h/relay"}, "DATABASE_URL"),
    ],
)
def test_a_bad_setting_is_named_and_no_value_is_echoed(
    env: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    env.setenv("USEAPI_BASE_URL", "https://vendor.example")  # overridden where the case sets it
    message = config_error(env, **variables)
    assert named in message
    assert message.startswith("invalid configuration:")
    for value in (SHORT_KEY, GOOD_KEY, "db-pa55word", *variables.values()):
        if len(value) > 4 and value not in ("production", "https://vendor.example"):
            assert value not in message


def test_every_bad_setting_is_named_at_once(env: pytest.MonkeyPatch) -> None:
    message = config_error(
        env, SECRET_KEY=SHORT_KEY, PORT="x", LOG_FORMAT="xml", TRUSTED_PROXY_HOPS="99"
    )
    for name in ("SECRET_KEY", "PORT", "LOG_FORMAT", "TRUSTED_PROXY_HOPS"):
        assert name in message
    assert SHORT_KEY not in message


def test_good_settings_parse_lists_and_flags(env: pytest.MonkeyPatch) -> None:
    env.setenv("SECRET_KEY", f" {GOOD_KEY} , {SECRET} ")
    env.setenv("DELIVERY_RETRY_SCHEDULE", "1, 2.5,60")
    env.setenv("VERIFY_WITH_VENDOR", "1")
    env.setenv("USEAPI_TOKEN", USEAPI_TOKEN)
    env.setenv("TRUSTED_PROXY_HOPS", "2")
    env.setenv("DATABASE_URL", "postgres://u:p@db.internal:5432/relay")
    settings = load_settings()
    assert settings.signing_keys == [GOOD_KEY, SECRET]  # the first signs
    assert settings.delivery_retry_schedule == [1, 2.5, 60]
    assert settings.verify_with_vendor is True and settings.trusted_proxy_hops == 2
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert (settings.max_content_length, settings.reply_ref_max_age) == (262144, 604800)


def test_settings_never_show_a_secret_in_their_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("SECRET_KEY", GOOD_KEY)
    env.setenv("ADMIN_TOKEN", PROD_ADMIN_TOKEN + "-repr")
    env.setenv("USEAPI_TOKEN", USEAPI_TOKEN)
    shown = repr(load_settings()) + str(load_settings())
    for secret in (GOOD_KEY, PROD_ADMIN_TOKEN + "-repr", USEAPI_TOKEN):
        assert secret not in shown


# -- the real entry points ------------------------------------------------------------------


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _OURS}
    env.update({"PYTHONUNBUFFERED": "1", "LOG_FORMAT": "text", **extra})
    return env


_OURS = {f.upper() for f in Settings.model_fields} | {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}


def web_argv() -> list[str]:
    argv = procfile_command("web", ROOT / "Procfile")
    argv[0] = bin_path(argv[0])
    return argv


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"RELAY_ENV": "production"}, "SECRET_KEY"),
        ({"RELAY_ENV": "production", "SECRET_KEY": SHORT_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": GOOD_KEY, "TRUSTED_PROXY_HOPS": "lots"}, "TRUSTED_PROXY_HOPS"),
        ({"SECRET_KEY": GOOD_KEY, "WEB_CONNECTIONS": "lots"}, "WEB_CONNECTIONS"),
        ({"SECRET_KEY": GOOD_KEY, "WEB_CONNECTIONS": "0"}, "WEB_CONNECTIONS"),
        ({"SECRET_KEY": GOOD_KEY, "ACCESS_LOG": "maybe"}, "ACCESS_LOG"),
    ],
)
def test_gunicorn_refuses_to_start_and_names_the_variable(
    tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    env = base_env(
        tmp_path,
        PORT=str(free_port()),
        WEB_CONCURRENCY="1",
        ADMIN_TOKEN=ADMIN_TOKEN,
        USEAPI_TOKEN=USEAPI_TOKEN,
        DATABASE_URL=f"sqlite:///{tmp_path / 'relay.sqlite3'}",
        **variables,
    )
    result = subprocess.run(
        web_argv(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "invalid configuration" in output and named in output, output
    for secret in (SHORT_KEY, GOOD_KEY, ADMIN_TOKEN, USEAPI_TOKEN):
        assert secret not in output


def test_relay_refuses_to_start_and_names_the_variable(tmp_path: Path) -> None:
    env = base_env(tmp_path, RELAY_ENV="production", SECRET_KEY=SHORT_KEY, PORT="-3")
    result = subprocess.run(
        [bin_path("relay"), "subscribers", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr and "PORT" in result.stderr
    assert SHORT_KEY not in result.stdout + result.stderr


@pytest.fixture
def debug_web(tmp_path: Path, migrated_sqlite_template: Path) -> Iterator[tuple[str, Process]]:
    db = tmp_path / "relay.sqlite3"
    shutil.copy(migrated_sqlite_template, db)
    port = free_port()
    env = base_env(
        tmp_path,
        RELAY_ENV="development",  # ALLOW_PRIVATE_URLS (loopback) is refused in production
        SECRET_KEY=f"{GOOD_KEY},{SECRET}",
        ADMIN_TOKEN=PROD_ADMIN_TOKEN,
        USEAPI_TOKEN=USEAPI_TOKEN,
        USEAPI_BASE_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens: a vendor error
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        DATABASE_URL=f"sqlite:///{db}",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        LOG_LEVEL="DEBUG",
        ACCESS_LOG="1",
        ALLOW_PRIVATE_URLS="1",
    )
    proc = Process("web", web_argv(), env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        proc.wait_http(base + "/readyz", 30)
        yield base, proc
    finally:
        proc.stop()


def test_no_secret_reaches_the_logs_or_an_error_body_at_debug_level(
    debug_web: tuple[str, Process],
) -> None:
    """Every secret the process holds or hands out, through successes and failures alike."""
    base, proc = debug_web
    admin = {"Authorization": f"Bearer {PROD_ADMIN_TOKEN}"}
    guess = "Bearer guessed-admin-t0ken-value"
    bodies: list[str] = []
    shown: list[str] = []
    with requests.Session() as http:
        http.trust_env = False

        def call(method: str, path: str, **kw: Any) -> requests.Response:
            response = http.request(method, base + path, timeout=20, **kw)
            bodies.append(response.text)
            return response

        assert call("GET", "/api/tasks", headers={"Authorization": guess}).status_code == 401
        assert call("GET", "/metrics", headers={"Authorization": guess}).status_code == 401
        created = call(
            "POST", "/api/subscribers", headers=admin, json={"url": "http://127.0.0.1:9/h"}
        )
        assert created.status_code == 201
        shown.append(created.json()["secret"])
        rotated = call(
            "POST", f"/api/subscribers/{created.json()['id']}/rotate-secret", headers=admin
        )
        shown.append(rotated.json()["secret"])
        submitted = call(
            "POST",
            "/api/tasks",
            headers=admin,
            json={"prompt": "a test", "metadata": {"order": 1}},
        )
        assert submitted.status_code in (502, 503), submitted.text  # the vendor is away
        for path in ("/api/tasks", "/api/subscribers", "/api/refused-callbacks", "/api/nope"):
            call("GET", path, headers=admin)
        call("POST", "/callbacks/useapi", data=b"{not json")
        call("POST", "/callbacks/useapi", json={"replyRef": GOOD_KEY, "status": "SUCCEEDED"})
        call(
            "POST",
            "/dashboard/login",
            data={"token": "guessed-admin-t0ken-value"},
        )
        jobs = call("GET", "/api/tasks", headers=admin).json()["items"]
    assert jobs, "the failed submission keeps its job as evidence"
    proc.stop()
    output = proc.output()
    assert "callback refused" in output  # the logs were really at hand
    secrets = [
        GOOD_KEY,
        SECRET,
        PROD_ADMIN_TOKEN,
        USEAPI_TOKEN,
        "guessed-admin-t0ken-value",
        *shown,
    ]
    for secret in secrets:
        assert secret not in output, secret
        for body in bodies:
            if body not in (created.text, rotated.text):  # shown once, on purpose
                assert secret not in body, (secret, body[:300])
    assert json.dumps(shown)  # two distinct whsec_ secrets were in play
    assert len(set(shown)) == 2 and all(s.startswith("whsec_") for s in shown)
