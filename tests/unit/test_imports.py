"""Each entry point imports on its own, in a fresh interpreter: an import cycle that only bites
when one module is imported first (as ``make bench`` imports the applier) fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

ENTRY_POINTS = [
    "receiver.ingest.applier",
    "receiver.services.reconcile",
    "receiver.services.callbacks",
    "receiver.delivery.worker",
    "receiver.store.retention",
    "receiver.views",
    "receiver.cli",
    "receiver.app",
    "bench.run",
    "bench.purger",
    "simulator.demo",
]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
