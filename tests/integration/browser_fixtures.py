"""Headless Chromium for the dashboard and report tests (a plugin of tests/conftest.py).

The tests drive Debian's ``chromium`` through Playwright. Where it is missing (or Playwright
is not installed) they are skipped with the reason, unless ``CODEFLOW_REQUIRE_BROWSER=1`` (CI
sets it), which makes that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration.server_fixtures import ROOT

CHROMIUM = Path("/usr/bin/chromium")
#: Screenshots the browser tests keep (CI uploads the folder).
ARTIFACTS = ROOT / "artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(what: str) -> None:
    if os.environ.get("CODEFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} (CODEFLOW_REQUIRE_BROWSER=1)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def playwright_api() -> ModuleType:
    """``playwright.sync_api``, after checking that Chromium is installed."""
    if not CHROMIUM.exists():
        _missing(f"needs Debian's chromium ({CHROMIUM})")
    try:
        import playwright.sync_api as sync_api
    except ImportError as exc:
        _missing(f"needs playwright ({exc})")
        raise
    ARTIFACTS.mkdir(exist_ok=True)
    return sync_api


@pytest.fixture
def browser(playwright_api: ModuleType) -> Iterator[Any]:
    """A launched headless Chromium, closed after the test."""
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()
