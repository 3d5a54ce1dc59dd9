"""Browser fixtures: Debian's headless Chromium driven by Playwright, against the real app
under gunicorn (the Procfile's ``web:`` line) with ``relay worker``, the vendor simulator and a
verifying subscriber, all on loopback.

Chromium comes from Debian (``make browser``, which ``make test`` runs); Playwright never
downloads a browser here. Where Chromium or Playwright is missing these tests skip with the
reason, except under CI (``CI=true``), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.subscriber import SubscriberServer
from tests.e2e.conftest import Stack

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
#: As this machine needs them: no sandbox as root, and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The viewer's zone in these tests, so that "local time" is checkably not UTC.
TIMEZONE = "America/New_York"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), one per test session."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(
            f"Chromium not installed at {CHROMIUM} (apt-get install chromium; make browser)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def subscriber() -> Iterator[SubscriberServer]:
    """A subscriber that verifies every webhook (its secrets are set by the tests)."""
    with SubscriberServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The system under gunicorn with two web workers, on SQLite; one retry, quickly."""
    tmp = tmp_path_factory.mktemp("browser-stack")
    running = Stack(
        tmp,
        f"sqlite:///{tmp / 'relay.sqlite3'}",
        WEB_CONCURRENCY="2",
        DELIVERY_RETRY_SCHEDULE="0.2",
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser context (no cookies) in a non-UTC zone, with bounded waits."""
    context = browser.new_context(
        base_url=stack.base,
        timezone_id=TIMEZONE,
        locale="en-US",
        viewport={"width": 1360, "height": 900},
    )
    context.set_default_timeout(15_000)
    outside: list[str] = []

    def note(request: Any) -> None:
        if not request.url.startswith(stack.base):
            outside.append(request.url)

    context.on("request", note)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()
    assert not outside, f"the dashboard loaded something from outside the app: {outside}"


def save_screenshot(tab: Any, name: str, tmp_path: Path) -> Path:
    """Screenshot the page into ``tmp_path``; also into docs/screenshots/ when
    ``RELAY_SCREENSHOTS=1`` (``make screenshots``), which is how the README's are made."""
    path = tmp_path / name
    tab.screenshot(path=str(path), full_page=True)
    if os.environ.get("RELAY_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
    return path
