"""The README stays in step with the code: its Configuration table names every setting (and
only settings, or what gunicorn.conf.py reads), its "The `relay` command" block every command
of the `relay` script (and no other), its webhook section every event type; every option of
every command explains itself in `--help`."""

from __future__ import annotations

import re
from pathlib import Path

import click

from receiver.cli import main
from receiver.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _commands(command, (*path, name))
        else:
            out.append((*path, name))
    return out


def _readme_block() -> list[str]:
    text = README.read_text()
    section = text.split("## The `relay` command", 1)[1]
    block = section.split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("relay ")]


def test_readme_names_every_relay_command_and_only_those() -> None:
    lines = _readme_block()
    leaves = _commands(main)
    for *groups, name in leaves:
        prefix = " ".join(["relay", *groups])
        usage = [line[len(prefix) :] for line in lines if line.startswith(prefix + " ")]
        # "relay subscribers list | remove ID | …": the leaf is one of the |-separated words.
        words = {w for line in usage for w in re.split(r"[\s|]+", line.split("  ")[0]) if w}
        assert name in words, f"README's relay block lacks `{prefix} {name}`"
    groups = {leaf[0] for leaf in leaves}
    for line in lines:
        assert line.split()[1] in groups, f"README names a command relay lacks: {line}"


def _options(command: click.Command, path: tuple[str, ...] = ()) -> list[str]:
    missing = []
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            missing += _options(sub, (*path, name))
        return missing
    if not command.help:
        missing.append(" ".join(path) + " (no description)")
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden and not param.help:
            missing.append(f"{' '.join(path)} {param.opts[0]}")
    return missing


def test_every_option_has_help() -> None:
    assert _options(main, ("relay",)) == []


def test_event_types_agree_everywhere() -> None:
    """One list of subscribable event types (receiver/domain/events.py): the API's body model,
    `relay subscribers add --events`, the OpenAPI document and the README name the same ones."""
    from typing import get_args

    from receiver.domain.events import EVENT_TYPES, WEBHOOK_TEST
    from receiver.web.schemas import SubscriberIn

    (listed,) = get_args(SubscriberIn.model_fields["event_types"].annotation)[:1]
    assert set(get_args(get_args(listed)[0])) == set(EVENT_TYPES)

    add = main.commands["subscribers"].commands["add"]  # type: ignore[attr-defined]
    (events_option,) = [p for p in add.params if p.name == "events"]
    assert all(t in (events_option.help or "") for t in EVENT_TYPES)

    section = README.read_text().split("## Outgoing webhooks", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:task|subscriber|webhook)\.[a-z_]+)`", section))
    assert named == {*EVENT_TYPES, WEBHOOK_TEST}


#: Read by gunicorn itself, not by Settings (WEB_CONNECTIONS and ACCESS_LOG are settings).
GUNICORN_VARIABLES = {"WEB_CONCURRENCY"}


def test_configuration_table_names_every_setting_and_only_those() -> None:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for cell in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings without a README row"
    assert documented - fields - GUNICORN_VARIABLES == set(), "README rows that are no setting"
