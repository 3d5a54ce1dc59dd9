"""Locked installs: uv.lock agrees with pyproject.toml, requirements.txt is exactly what the lock
exports, and the files a buildpack reads are there.

uv runs offline here (``--offline``): checking a lock against pyproject.toml and exporting it
need no index. ``make install`` puts uv in the venv, beside this Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
#: The export that `make requirements` writes below the header of requirements.txt.
EXPORT = [
    "export",
    "--frozen",
    "--offline",
    "--quiet",
    "--format",
    "requirements-txt",
    "--no-hashes",
    "--no-editable",
    "--no-header",
    "--no-annotate",
    "--extra",
    "s3",
]


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run `make install` (it installs uv into the venv)")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    return subprocess.run(
        [str(UV), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_the_lock_is_in_step_with_pyproject() -> None:
    result = uv("lock", "--check", "--offline")
    assert result.returncode == 0, (
        "uv.lock is out of step with pyproject.toml: run `make lock`\n" + result.stderr
    )


def test_requirements_txt_is_what_the_lock_exports() -> None:
    result = uv(*EXPORT)
    assert result.returncode == 0, result.stderr
    exported = requirement_lines(result.stdout)
    committed = requirement_lines((ROOT / "requirements.txt").read_text())
    assert committed == exported, "requirements.txt is out of step with uv.lock: run `make lock`"
    # What a buildpack needs from it: the project itself (hence `relay`), everything pinned.
    assert committed[0] == "."
    assert all("==" in line for line in committed[1:]), committed


def pins() -> dict[str, Version]:
    """requirements.txt's pins, by canonical name."""
    out: dict[str, Version] = {}
    for line in requirement_lines((ROOT / "requirements.txt").read_text())[1:]:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        out[canonicalize_name(requirement.name)] = Version(spec.version)
    return out


def test_every_runtime_dependency_of_pyproject_is_pinned_to_a_version_it_allows() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = pins()
    for line in declared:
        requirement = Requirement(line)
        version = pinned[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), (line, version)


def test_the_floors_are_past_the_known_advisories() -> None:
    declared: dict[str, SpecifierSet] = {
        canonicalize_name(r.name): r.specifier
        for r in map(
            Requirement,
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"],
        )
    }
    for name, unsafe in (("requests", "2.32.3"), ("urllib3", "2.5.0"), ("werkzeug", "3.0.6")):
        assert not declared[name].contains(unsafe), f"{name} {unsafe} must be refused"
        assert pins()[name] > Version(unsafe)


def test_python_version_and_the_buildpack_files() -> None:
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
    assert sys.version_info[:2] == (3, 11)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    # Heroku's and Scalingo's buildpacks stop when they find two package manager files; the
    # slug ignores uv.lock so that they read requirements.txt only.
    assert "uv.lock" in (ROOT / ".slugignore").read_text().split()
    for name in ("requirements.txt", "uv.lock", "Procfile", "app.json", "render.yaml"):
        assert (ROOT / name).is_file(), name
