"""A real Chromium, driven by Playwright, against the real servers on 127.0.0.1.

Playwright cannot download browsers here, so it drives Debian's ``chromium`` package through
``executable_path``. Where no Chromium is installed the browser tests are skipped with a reason
naming the package; under CI (``.ci/run`` sets ``POSTBUS_REQUIRE_BROWSER=1`` after installing it) a
missing browser is a failure instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

# The pipeline fixtures (both emulators, a worker, a publisher) are the end-to-end suite's.
from tests.e2e.conftest import publisher, servicebus, settings, worker

__all__ = ["browser", "page", "publisher", "servicebus", "settings", "worker"]

# Read at import: the suite-wide clean_environ fixture removes POSTBUS_* variables per test.
_REQUIRED = os.environ.get("POSTBUS_REQUIRE_BROWSER") == "1"
_CHROMIUM = os.environ.get("POSTBUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
_MISSING = "Chromium is not installed: install Debian's 'chromium' package (apt-get install chromium)"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if _CHROMIUM is None:
        if _REQUIRED:
            pytest.fail(f"{_MISSING}; POSTBUS_REQUIRE_BROWSER=1 makes this a failure")
        pytest.skip(_MISSING)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=_CHROMIUM,
            headless=True,
            # Containers (CI runs as root) have no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(accept_downloads=True)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"the console raised in the browser: {errors}"
