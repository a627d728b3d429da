"""A real headless Chromium for page tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download cannot work on these machines; it drives the system browser
through `executable_path`. Without the browser the page tests skip with a message, except in CI,
where `.ci/run` installs it and its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.databases import running_in_ci

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "screenshots"
MISSING = (
    "no headless Chromium: install Debian's package (`apt-get install -y chromium`) to run the "
    "page tests; .ci/run installs it"
)


def chromium_path() -> str | None:
    given = os.environ.get("RENDERTRACK_TEST_CHROMIUM")
    if given:
        return given
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        if running_in_ci():
            pytest.fail(f"CI=true needs the page tests to run: {MISSING}")
        pytest.skip(MISSING)
    return path


@asynccontextmanager
async def chromium(*, offline_except: str | None = None) -> AsyncIterator[object]:
    """A fresh browser context. With `offline_except` (an origin such as http://127.0.0.1:8123),
    every request to any other origin is aborted and recorded in `context.blocked`, so a page
    that needs the internet fails its test instead of quietly fetching from a CDN."""
    from playwright.async_api import async_playwright

    executable = require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            context.blocked = []  # type: ignore[attr-defined]
            if offline_except is not None:

                async def only_local(route: object) -> None:
                    url = route.request.url  # type: ignore[attr-defined]
                    if url.startswith(offline_except) or url.startswith("data:"):
                        await route.continue_()  # type: ignore[attr-defined]
                    else:
                        context.blocked.append(url)  # type: ignore[attr-defined]
                        await route.abort()  # type: ignore[attr-defined]

                await context.route("**/*", only_local)
            yield context
        finally:
            await browser.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
