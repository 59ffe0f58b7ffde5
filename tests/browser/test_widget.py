"""The embeddable widget in Chromium, with the host page and supportbot on two different sites:
host pages on ``localhost`` (one allowed, one not), supportbot on ``127.0.0.1``.

The allowed host gets a launcher; the chat opens in the frame, answers, and the conversation
survives a reload of the host page (the frame has no cookie: the host keeps the session id). The
refused host gets no launcher, and a frame it makes itself is blocked by the browser. The JS API,
keyboard-only use and a phone-width screen are driven the way a visitor would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from tests.browser.conftest import NO_OVERFLOW_JS, WAIT_MS, manage_shell
from tests.fakes.live_server import LiveServer

pytestmark = pytest.mark.browser

SECRET = "widget-test-secret"
LAUNCHER = "supportbot-widget .launcher"
PANEL = "supportbot-widget .panel"
# The host's own rules: a widget that did not keep to its shadow root would be drawn by them.
HOST_CSS = "button { background: rgb(255, 0, 0) !important; width: 300px !important; }"


def host_page(widget_js: str, *, raw_frame: str = "") -> bytes:
    """A plain page of another site: a link, some text, the snippet twice (idempotence)."""
    frame = f'<iframe id="raw" src="{raw_frame}" title="raw"></iframe>' if raw_frame else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Host shop</title>
<style>{HOST_CSS}</style>
<script>window.namesBefore = Object.getOwnPropertyNames(window);</script></head><body>
<a id="first" href="#top">Shop home</a>
<h1>Host shop</h1><p>Boots, tents and stoves. {"Lorem ipsum dolor sit amet. " * 20}</p>
{frame}
<script src="{widget_js}" data-supportbot async></script>
<script src="{widget_js}" data-supportbot async></script>
</body></html>""".encode()


class HostSite:
    """A tiny HTTP server answering every path with a host page (``localhost:<port>``)."""

    def __init__(self) -> None:
        self.body = b""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(site.body)))
                self.end_headers()
                self.wfile.write(site.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sites(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HostSite, HostSite, LiveServer]]:
    """(allowed host, refused host, supportbot): supportbot offline (the offline
    assistant answers), allowing only the first host."""
    allowed, refused = HostSite(), HostSite()
    env = {
        "RATE_LIMITS_ENABLED": "false",
        "SUPPORTBOT_WIDGET_ORIGINS": allowed.origin,
        "SUPPORTBOT_WIDGET_SECRET": SECRET,
    }
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    server = LiveServer(tmp_path_factory.mktemp("widget"), env=env).prepare()
    try:
        server.start()
        widget_js = f"{server.base_url}/widget.js"
        allowed.body = host_page(widget_js)
        refused.body = host_page(widget_js, raw_frame=f"{server.base_url}/widget/")
        yield allowed, refused, server
    finally:
        server.close()
        allowed.close()
        refused.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator:
    """``visit(url, **context_options)`` → a page of a fresh context; script errors fail."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def open_page(url: str, **options: Any) -> Page:
        context = browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def chat(page: Page) -> FrameLocator:
    return page.frame_locator("supportbot-widget iframe")


def wait_connected(page: Page) -> str:
    frame = chat(page)
    expect(frame.locator("#status")).to_have_text("Connected")
    session_id = frame.locator("body").get_attribute("data-session-id")
    assert session_id and session_id.startswith("sess_")
    return session_id


def stored(page: Page, server: LiveServer) -> dict:
    raw = page.evaluate("key => localStorage.getItem(key)", f"supportbot:{server.base_url}")
    return json.loads(raw or "{}")


def session_status(server: LiveServer, session_id: str) -> str:
    with urllib.request.urlopen(f"{server.base_url}/api/session/{session_id}") as response:
        return json.load(response)["status"]


def sign(user_id: str, timestamp: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{timestamp}:{user_id}".encode(), hashlib.sha256).hexdigest()


def test_allowed_host_opens_the_chat_gets_an_answer_and_keeps_it_across_reloads(
    sites, visit, shots: Path
) -> None:
    allowed, _, server = sites
    page = visit(allowed.origin + "/")
    navigations: list[str] = []
    page.on("request", lambda r: navigations.append(r.url) if r.is_navigation_request() else None)
    launcher = page.get_by_role("button", name="Open chat with Nimbus Assistant")
    expect(launcher).to_be_visible()
    # Loaded twice, drawn once; the host's button rules do not reach the launcher.
    assert page.locator("supportbot-widget").count() == 1
    width, colour = page.locator(LAUNCHER).evaluate(
        "b => [b.getBoundingClientRect().width, getComputedStyle(b).backgroundColor]"
    )
    assert width == 56 and colour == "rgb(47, 95, 208)"
    # One global, window.Supportbot: the loader's own names stay inside it.
    added = page.evaluate(
        "() => Object.getOwnPropertyNames(window).filter(n => !window.namesBefore.includes(n))"
    )
    assert sorted(added) == ["Supportbot", "namesBefore"]
    assert page.evaluate("() => typeof window.Supportbot.open") == "function"
    page.screenshot(path=str(shots / "widget-host-closed.png"))

    launcher.click()
    expect(page.locator(PANEL)).to_be_visible()
    session_id = wait_connected(page)
    frame = chat(page)
    frame.locator("#message").fill("How do I reset my password?")
    frame.locator("#message").press("Enter")
    answer = frame.locator("article.message.from-assistant .body").first
    expect(answer).not_to_be_empty()
    expect(frame.locator("article.message.from-user .body")).to_have_text(
        "How do I reset my password?"
    )
    page.screenshot(path=str(shots / "widget-host-open.png"))

    # The host remembers the session; the id never travelled in a URL a server sees.
    assert stored(page, server) == {"session": session_id, "restart": False, "open": True}
    frame_urls = [url for url in navigations if "/widget/" in url]
    assert frame_urls and not any("sess_" in url.split("#")[0] for url in frame_urls)
    frame_page = next(f for f in page.frames if "/widget/" in f.url)
    assert "sess_" not in frame_page.url  # the fragment is gone from the frame's address

    page.reload()
    # It was open: it opens again, in the same conversation, with what was said.
    assert wait_connected(page) == session_id
    expect(chat(page).locator("article.message.from-user .body")).to_have_text(
        "How do I reset my password?"
    )
    expect(chat(page).locator("article.message.from-assistant")).to_have_count(1)
    assert session_status(server, session_id) == "active"


def test_refused_host_gets_no_launcher_and_its_own_frame_is_blocked(sites, visit) -> None:
    _, refused, server = sites
    console: list[str] = []
    page = visit("about:blank")
    page.on("console", lambda message: console.append(message.text))
    page.goto(refused.origin + "/")
    page.wait_for_function("() => window.Supportbot && window.Supportbot.version")
    assert page.evaluate("() => window.Supportbot.available") is False
    assert page.locator("supportbot-widget").count() == 0
    error = page.evaluate(
        "() => Supportbot.identify({userId: 'x', timestamp: 1, signature: 'y'})"
        ".then(() => 'resolved', (e) => e.code)"
    )
    assert error == "ACCESS_DENIED"
    # The frame the page makes by hand is refused by the browser: nothing of the chat loads.
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline and not any("frame-ancestors" in t for t in console):
        page.wait_for_timeout(100)
    assert any("frame-ancestors" in text for text in console), console
    raw = page.frame_locator("#raw")
    expect(raw.locator("#composer")).to_have_count(0)
    assert not any(f.url.startswith(server.base_url) for f in page.frames[1:])


def test_js_api_opens_closes_starts_over_and_identifies(sites, visit) -> None:
    allowed, _, server = sites
    page = visit(allowed.origin + "/")
    page.wait_for_function("() => window.Supportbot && window.Supportbot.version")
    page.evaluate(
        """() => {
            window.seen = [];
            for (const name of ["open", "close", "session", "identify", "error"]) {
                Supportbot.on(name, (detail) => window.seen.push(name));
            }
        }"""
    )
    page.evaluate("() => Supportbot.open()")
    expect(page.locator(PANEL)).to_be_visible()
    first = wait_connected(page)
    assert page.evaluate("() => Supportbot.isOpen()") is True
    page.evaluate("() => Supportbot.close()")
    expect(page.locator(PANEL)).to_be_hidden()
    assert page.evaluate("() => Supportbot.isOpen()") is False

    result = page.evaluate("() => Supportbot.newConversation()")
    second = result["sessionId"]
    assert second.startswith("sess_") and second != first
    page.evaluate("() => Supportbot.open()")
    expect(chat(page).locator("body")).to_have_attribute("data-session-id", second)
    expect(chat(page).locator("#status")).to_have_text("Connected")
    assert stored(page, server)["session"] == second
    assert session_status(server, first) == "ended"

    timestamp = int(time.time())
    good = {
        "userId": "cust-1001",
        "timestamp": timestamp,
        "signature": sign("cust-1001", timestamp),
    }
    assert page.evaluate("id => Supportbot.identify(id)", good) == {
        "userId": "cust-1001",
        "sessionId": second,
    }
    stored_user = (
        f"from chat.models import ChatSession as S; print(S.objects.get(pk={second!r}).user_id)"
    )
    assert manage_shell(server, stored_user) == "cust-1001"

    forged = {**good, "userId": "cust-2002"}  # cust-1001's signature, another customer's id
    refusal = page.evaluate(
        "id => Supportbot.identify(id)"
        ".then(() => null, (e) => ({code: e.code, message: e.message}))",
        forged,
    )
    assert refusal["code"] == "ACCESS_DENIED" and "does not match" in refusal["message"]
    assert manage_shell(server, stored_user) == "cust-1001"
    expect(chat(page).locator("body")).to_have_attribute("data-session-id", second)

    # The frame's own close button asks the host to close the panel.
    chat(page).get_by_role("button", name="Close chat").click()
    expect(page.locator(PANEL)).to_be_hidden()
    assert page.evaluate("() => window.seen") == [
        "open",
        "session",
        "close",
        "session",
        "open",
        "identify",
        "error",
        "close",
    ]


def test_keyboard_only_tab_to_the_launcher_enter_opens_escape_closes(sites, visit) -> None:
    allowed, _, _ = sites
    page = visit(allowed.origin + "/")
    expect(page.locator(LAUNCHER)).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("#first")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(LAUNCHER)).to_be_focused()
    assert page.locator(LAUNCHER).get_attribute("aria-expanded") == "false"

    page.keyboard.press("Enter")
    expect(page.locator(PANEL)).to_be_visible()
    wait_connected(page)
    expect(chat(page).locator("#message")).to_be_focused()
    page.keyboard.type("Hello from the keyboard")
    page.keyboard.press("Enter")
    expect(chat(page).locator("article.message.from-user .body")).to_have_text(
        "Hello from the keyboard"
    )

    page.keyboard.press("Escape")
    expect(page.locator(PANEL)).to_be_hidden()
    expect(page.locator(LAUNCHER)).to_be_focused()
    assert page.locator(LAUNCHER).get_attribute("aria-expanded") == "false"
    page.keyboard.press("Enter")
    expect(page.locator(PANEL)).to_be_visible()
    assert page.locator(LAUNCHER).get_attribute("aria-label") == "Close chat with Nimbus Assistant"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_width_launcher_stays_small_and_the_chat_fills_the_screen(
    sites, visit, shots: Path, scheme: str
) -> None:
    allowed, _, _ = sites
    page = visit(
        allowed.origin + "/",
        viewport={"width": 390, "height": 844},
        color_scheme=scheme,
        has_touch=True,
        is_mobile=True,
    )
    launcher = page.locator(LAUNCHER)
    expect(launcher).to_be_visible()
    box = launcher.bounding_box()
    assert box and box["width"] <= 52 and box["x"] + box["width"] <= 390 - 8
    assert page.evaluate(NO_OVERFLOW_JS)
    page.screenshot(path=str(shots / f"widget-phone-closed-{scheme}.png"))

    launcher.tap()
    wait_connected(page)
    panel = page.locator(PANEL).bounding_box()
    assert panel == {"x": 0, "y": 0, "width": 390, "height": 844}
    expect(launcher).to_be_hidden()  # the frame's close button takes its place
    frame = chat(page)
    assert frame.locator("html").evaluate(NO_OVERFLOW_JS)
    frame.locator("#message").fill("Can I get a refund?")
    frame.locator("#message").press("Enter")
    expect(frame.locator("article.message.from-assistant .body").first).not_to_be_empty()
    page.screenshot(path=str(shots / f"widget-phone-open-{scheme}.png"))
    frame.get_by_role("button", name="Close chat").tap()
    expect(page.locator(PANEL)).to_be_hidden()
    expect(launcher).to_be_visible()


def test_the_frames_own_new_conversation_button_starts_over_and_the_host_remembers(
    sites, visit
) -> None:
    allowed, _, server = sites
    page = visit(allowed.origin + "/")
    page.locator(LAUNCHER).click()
    first = wait_connected(page)
    # Inside another site's frame there is no cookie and no CSRF token: the page's own button
    # goes through the widget's endpoint, which ends the old session.
    chat(page).get_by_role("button", name="New conversation").click()
    expect(chat(page).locator("body")).not_to_have_attribute("data-session-id", first)
    second = chat(page).locator("body").get_attribute("data-session-id")
    assert second and second.startswith("sess_")
    expect(chat(page).locator("#status")).to_have_text("Connected")
    page.wait_for_function(
        "([key, id]) => (JSON.parse(localStorage.getItem(key) || '{}')).session === id",
        arg=[f"supportbot:{server.base_url}", second],
    )
    assert session_status(server, first) == "ended"
    page.reload()
    assert wait_connected(page) == second


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_demo_page_shows_the_widget_and_its_api_on_the_embedded_default(
    sites, visit, shots: Path, scheme: str
) -> None:
    _, _, server = sites
    page = visit(server.base_url + "/widget-demo/", color_scheme=scheme)
    expect(page.get_by_role("heading", name="The chat widget on a host page")).to_be_visible()
    page.get_by_role("button", name="Supportbot.open()").click()
    wait_connected(page)
    # The demo signs its customer as a host would (DEBUG and a secret are set here).
    page.get_by_role("button", name="Supportbot.identify(…)").click()
    expect(page.locator("#events")).to_contain_text('identify → {"userId":"demo-customer-42"')
    page.screenshot(path=str(shots / f"widget-demo-{scheme}.png"))
    page.get_by_role("button", name="Supportbot.close()").click()
    expect(page.locator(PANEL)).to_be_hidden()
