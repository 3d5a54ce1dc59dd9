"""Fixtures shared by the integration tests (the project-wide ones are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from receiver.runtime import Runtime, build_runtime
from tests.conftest import make_settings


@pytest.fixture
def sqlite_runtime(sqlite_url: str) -> Iterator[Runtime]:
    """A runtime on a fresh, migrated SQLite file only, not parametrized over the databases
    like ``runtime`` (e.g. for the hypothesis loops). Its engine is disposed at the end."""
    rt = build_runtime(make_settings(sqlite_url))
    yield rt
    rt.engine.dispose()
