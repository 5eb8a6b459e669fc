"""Headless Chromium (Debian's package) driven by Playwright, against a real zaqar-server.

Playwright drives the system browser (``/usr/bin/chromium``, or
``ZAQAR_TEST_CHROMIUM``) with an explicit executable path and a fresh
profile per test; it never downloads a browser of its own. Without Chromium
or Playwright the tests are skipped, except under CI (``CI=true``), where that
is a failure: ``.ci/run`` installs both.

Screenshots go to ``artifacts/browser/`` at the top of the checkout (ignored by git),
or to ``ZAQAR_TEST_ARTIFACTS``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import Console

CHROMIUM = os.environ.get("ZAQAR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = Path(os.environ.get("ZAQAR_TEST_ARTIFACTS")
                 or Path(__file__).parents[2] / "artifacts" / "browser")


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run the browser tests (.ci/run installs chromium and playwright)")
    pytest.skip(why)


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[object]:
    """A fresh Chromium profile; pages opened in it share nothing with other tests."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}")
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def console(browser_context: Any) -> Iterator[Console]:
    from playwright.sync_api import expect

    page = browser_context.new_page()
    view = Console(page, expect)
    yield view
    assert not view.errors, view.errors


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static web server on another port: another origin for the browser."""
    root = tmp_path / "site"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
