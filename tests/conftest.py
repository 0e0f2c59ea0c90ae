"""Fixtures of the end-to-end tests in this folder; the servers they run against are the root conftest.py's."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright, expect

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, started once per run; each test browses in a profile of its own (the
    `browser` fixture)."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(chromium: Browser) -> AsyncIterator[BrowserContext]:
    """A new browser profile (no cookies, no storage) in the run's Chromium."""
    expect.set_options(timeout=15_000)
    context = await chromium.new_context(viewport={"width": 1280, "height": 860}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
def auditor(gateway_as) -> httpx.AsyncClient:
    return gateway_as("auditor")
