"""The deploy manifests: app.json (Heroku's button and review apps) and render.yaml (a Render
Blueprint). Each is parsed, and every command it names must be a real ``relay`` command (with
options click accepts) or the Procfile's own web line, and every path a real route of the app.
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from flask.testing import FlaskClient

from receiver.cli import main as relay_cli
from receiver.settings import Settings
from simulator.processes import procfile_command

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
#: Variables runway-relay reads: its settings, and gunicorn's own (gunicorn.conf.py).
SETTINGS = {name.upper() for name in Settings.model_fields} | {"WEB_CONCURRENCY"}


def check_relay_command(argv: list[str]) -> click.Command:
    """Resolve ``relay …`` through click as the real command line would, options included.

    :raises AssertionError: unknown command. :raises click.UsageError: unknown option, missing
        argument or a value click refuses.
    """
    assert argv[0] == "relay", argv
    command: click.Command = relay_cli
    name, args = "relay", argv[1:]
    while isinstance(command, click.Group):
        assert args, f"{' '.join(argv)}: a group, not a command"
        name, *args = args
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"{' '.join(argv)}: no command {name!r}"
        command = sub
    command.make_context(name, list(args))  # parses and validates every option
    return command


def check_command(line: str) -> None:
    """A manifest's command: a ``relay`` command, or exactly the Procfile's ``web`` line."""
    argv = shlex.split(line)
    if argv[0] == "relay":
        check_relay_command(argv)
        return
    assert argv == procfile_command("web", PROCFILE), f"{line!r} is not the Procfile's web line"
    module, _, factory = argv[-1].partition(":")
    assert callable(getattr(importlib.import_module(module), factory.removesuffix("()")))


def test_every_procfile_line_names_a_real_command() -> None:
    kinds = {}
    for line in PROCFILE.read_text().splitlines():
        kind, _, command = line.partition(":")
        kinds[kind.strip()] = command.strip()
        check_command(command.strip())
    assert set(kinds) == {"release", "web", "worker"}
    assert kinds["release"] == "relay db upgrade"
    assert kinds["worker"] == "relay worker"


def test_a_wrong_command_or_option_is_caught() -> None:
    with pytest.raises(AssertionError):
        check_command("relay reconcilee --older-than 15m")
    with pytest.raises(click.UsageError):
        check_command("relay reconcile --older-then 15m")
    with pytest.raises(click.UsageError):
        check_command("relay reconcile")  # --older-than is required
    with pytest.raises(AssertionError):
        check_command("gunicorn receiver:app")


# -- app.json -------------------------------------------------------------------------------


def app_json() -> dict[str, Any]:
    return json.loads((ROOT / "app.json").read_text())  # type: ignore[no-any-return]


def test_app_json_provisions_postgres_and_both_process_types() -> None:
    manifest = app_json()
    plans = [a["plan"] if isinstance(a, dict) else a for a in manifest["addons"]]
    assert any(p.split(":")[0] == "heroku-postgresql" for p in plans), plans
    assert {"as": "DATABASE", "plan": plans[0]} in manifest["addons"]  # so it sets DATABASE_URL
    assert any(p.split(":")[0] == "scheduler" for p in plans)  # for `relay reconcile`
    formation = manifest["formation"]
    assert formation["web"]["quantity"] >= 1 and formation["worker"]["quantity"] >= 1
    # Each formation entry is a Procfile process type (release runs from the Procfile too).
    procfile_kinds = {line.partition(":")[0] for line in PROCFILE.read_text().splitlines()}
    assert set(formation) <= procfile_kinds and "release" in procfile_kinds
    review = manifest["environments"]["review"]
    assert any(str(a).startswith("heroku-postgresql") for a in review["addons"])
    assert [{"url": "heroku/python"}] == manifest["buildpacks"]


def test_app_json_generates_the_secrets_and_asks_for_the_public_url() -> None:
    env = app_json()["env"]
    assert set(env) <= SETTINGS, set(env) - SETTINGS  # only variables runway-relay reads
    for name in ("SECRET_KEY", "ADMIN_TOKEN"):
        assert env[name]["generator"] == "secret", name
    public = env["PUBLIC_BASE_URL"]
    assert public["required"] is True and "value" not in public and public["description"]
    assert env["RELAY_ENV"]["value"] == "production"
    assert "DATABASE_URL" not in env  # the add-on sets it


# -- render.yaml ----------------------------------------------------------------------------


def blueprint() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "render.yaml").read_text())  # type: ignore[no-any-return]


def services() -> dict[str, dict[str, Any]]:
    return {s["type"]: s for s in blueprint()["services"]}


def env_of(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's variables by name, those of its groups included."""
    groups = {g["name"]: g["envVars"] for g in blueprint().get("envVarGroups", [])}
    out: dict[str, dict[str, Any]] = {}
    for item in service["envVars"]:
        if "fromGroup" in item:
            out.update({v["key"]: v for v in groups[item["fromGroup"]]})
        else:
            out[item["key"]] = item
    return out


def test_render_blueprint_has_web_worker_cron_and_a_database() -> None:
    found = services()
    assert set(found) == {"web", "worker", "cron"}
    assert len(blueprint()["services"]) == 3
    web, worker, cron = found["web"], found["worker"], found["cron"]
    check_command(web["startCommand"])
    assert shlex.split(worker["startCommand"]) == procfile_command("worker", PROCFILE)
    assert shlex.split(web["preDeployCommand"]) == procfile_command("release", PROCFILE)
    reconcile = shlex.split(cron["startCommand"])
    assert reconcile[:2] == ["relay", "reconcile"] and "--older-than" in reconcile
    assert cron["schedule"].count(" ") == 4  # a five-field cron expression
    for service in found.values():
        check_command(service["startCommand"])
        assert service["runtime"] == "python"
        assert service["buildCommand"] == "pip install -r requirements.txt"
        assert (ROOT / "requirements.txt").is_file()
    check_command(web["preDeployCommand"])


def test_render_wires_the_database_and_the_secrets_into_every_service() -> None:
    databases = {d["name"] for d in blueprint()["databases"]}
    found = services()
    web_env = env_of(found["web"])
    for service in found.values():
        env = env_of(service)
        assert set(env) <= SETTINGS, set(env) - SETTINGS
        source = env["DATABASE_URL"]["fromDatabase"]
        assert source["name"] in databases and source["property"] == "connectionString"
        secret = env["SECRET_KEY"]
        if service is found["web"]:
            assert secret["generateValue"] is True
        else:  # the same key as the web's, or no replyRef would verify
            assert secret["fromService"] == {
                "type": "web",
                "name": found["web"]["name"],
                "envVarKey": "SECRET_KEY",
            }
        assert env["RELAY_ENV"]["value"] == "production"
    assert web_env["ADMIN_TOKEN"]["generateValue"] is True
    assert web_env["PUBLIC_BASE_URL"]["sync"] is False  # asked for when the Blueprint is created
    assert env_of(found["worker"])["ADMIN_TOKEN"]["fromService"]["envVarKey"] == "ADMIN_TOKEN"
    assert "USEAPI_TOKEN" in env_of(found["cron"])  # reconcile asks the vendor


def test_the_health_check_path_is_a_route_that_answers_when_ready(client: FlaskClient) -> None:
    path = services()["web"]["healthCheckPath"]
    assert path == "/readyz"
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
