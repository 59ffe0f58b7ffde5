"""Browser fixtures: the real server in a daphne process, the fake model, Debian's Chromium.

One server per module (migrating and loading the knowledge base is the slow part); every test
gets a fresh browser context, so a fresh cookie and with it a fresh conversation. The server
runs on SQLite in a temporary data directory; REDIS_URL, when the run has one, is passed on so
the Redis channel layer is what carries the frames.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import REQUIRE_SERVICES
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Explicit waits (expect, wait_for_function) give up after this long; each test stays well
# under 20 s even when one of them runs out.
WAIT_MS = 8000
ROOT = Path(__file__).resolve().parents[2]
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str | None:
    """Debian's Chromium (Playwright's own browser downloads are never used)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return os.environ.get("CHROMIUM") or found


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeOpenAIServer]:
    """The model the live server talks to; one per module, reset before every test."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_model(fake_model: FakeOpenAIServer) -> None:
    fake_model.reset()


@pytest.fixture(scope="module")
def app_server(
    tmp_path_factory: pytest.TempPathFactory, fake_model: FakeOpenAIServer
) -> Iterator[LiveServer]:
    """supportbot in a daphne process on a free 127.0.0.1 port; ``stop()``/``start()`` restart
    it on the same port."""
    env = {
        "LLM_BASE_URL": fake_model.base_url,
        "LLM_MODEL": "fake-model",
        "LLM_API_KEY": "test-key",
        "LLM_MAX_RETRIES": "0",
        # The tests open many sessions from one address within seconds.
        "RATE_LIMITS_ENABLED": "false",
    }
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    server = LiveServer(tmp_path_factory.mktemp("live"), env=env).prepare()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _server_running(app_server: LiveServer) -> None:
    """A test that stopped the server and failed before restarting it does not take the rest
    of the module with it."""
    if app_server.process is None:
        app_server.start()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Playwright gives each launch a fresh temporary profile); skipped
    without Chromium, failed when REQUIRE_SERVICES=1. Module-scoped: Playwright's sync API
    keeps an event loop running in this thread while it is open, which the async tests of
    later modules could not start beside."""
    executable = chromium_path()
    if executable is None:
        if REQUIRE_SERVICES:
            pytest.fail("REQUIRE_SERVICES=1 but chromium is not installed")
        pytest.skip("chromium is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Browser, app_server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh context: no cookies, so the page opens a new conversation."""
    context = browser.new_context(base_url=app_server.base_url)
    context.set_default_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page of the fresh context; an uncaught script error fails the test."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], f"uncaught errors in the page: {errors}"


# --- helpers the browser tests share ----------------------------------------------------------


def open_chat(page: Page) -> str:
    """Load the chat page and wait until it is connected; returns the session id it shows."""
    page.goto("/")
    expect(page.locator("#status")).to_have_text("Connected")
    session_id = page.locator("body").get_attribute("data-session-id")
    assert session_id and session_id.startswith("sess_")
    return session_id


def send(page: Page, text: str) -> None:
    """Type ``text`` into the chat page's composer and send it with Enter."""
    page.locator("#message").fill(text)
    page.locator("#message").press("Enter")


def manage_shell(server: LiveServer, code: str) -> str:
    """Run ``code`` in ``manage.py shell`` against the live server's database; its last line."""
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = out.strip().splitlines()
    return lines[-1] if lines else ""


# --- staff pages: an offline server, a signed-in admin, screenshots -------------------------------

NO_OVERFLOW_JS = "() => document.documentElement.scrollWidth <= window.innerWidth + 1"
SignIn = Callable[..., Page]


@contextmanager
def offline_server(folder: Path) -> Iterator[LiveServer]:
    """A live server with no model at all: the offline assistant answers (deterministic, no fake
    server); rate limits off; the run's Redis, when it has one, under a prefix of its own."""
    env = {"RATE_LIMITS_ENABLED": "false"}
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
        env["METRICS_PREFIX"] = f"supportbot-test-{uuid.uuid4().hex[:12]}:metrics"
    server = LiveServer(folder, env=env).prepare()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``SHOTS``, or the test's temporary folder."""
    folder = Path(os.environ.get("SHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def admin_sign_in(
    browser: Browser, server: LiveServer, username: str, password: str
) -> Iterator[SignIn]:
    """``sign_in(**context_options)`` → a page of a fresh context signed in to the admin; an
    uncaught script error on any of them fails the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_signed_in(**options: Any) -> Page:
        context = browser.new_context(base_url=server.base_url, accept_downloads=True, **options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("/admin/login/")
        page.locator("#id_username").fill(username)
        page.locator("#id_password").fill(password)
        page.locator("#id_password").press("Enter")
        page.wait_for_url(re.compile(r"/admin/$"))
        return page

    try:
        yield open_signed_in
    finally:
        for context in contexts:
            context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"
