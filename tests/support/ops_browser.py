"""Headless Chromium (Debian's `chromium` package) driven by Playwright, for the dashboard."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("MCJOBS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Page, base_url: str, api_key: str, path: str = "/dashboard") -> None:
    """Open `path`, get sent to the login form, type the key and submit it."""
    page.goto(base_url + path)
    page.wait_for_url("**/dashboard/login")
    page.fill("#api_key", api_key)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
