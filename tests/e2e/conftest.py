"""Browser tests: Playwright driving Debian's Chromium against a live server on PostgreSQL.

``UPDATE_SCREENSHOTS=1`` makes the tests write their screenshots to docs/screenshots/ (they go to
a temporary folder otherwise, so a test run leaves the work tree clean).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# alongside it are synchronous on purpose.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(autouse=True)
def _quiet_workers(quiet_workers_before_flush: None) -> None:
    """See ``quiet_workers_before_flush`` in tests/conftest.py."""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the tests save their screenshots (see the module docstring)."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
