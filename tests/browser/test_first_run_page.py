"""A newcomer's first run, in Chromium, with the limits of API.md on (the other browser tests
switch them off): "New conversation" pressed more often than the per-IP limit of live sessions
is never refused, a full address gets an HTML page that says how long to wait (never JSON), and
a refused "New conversation" says the real wait in words."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import NO_OVERFLOW_JS, WAIT_MS
from tests.fakes.live_server import LiveServer

pytestmark = pytest.mark.browser

LIVE_PER_IP = 5
# Creations per hour: the story below makes exactly this many, so its last press is refused.
CREATIONS = 13
WAIT_IN_WORDS = re.compile(r"try again in (about \d+ minutes?|about [\d.]+ hours?|\d+ seconds?)")


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "RATE_LIMITS_ENABLED": "true",
        "RATE_LIMIT_IP_CONCURRENT_SESSIONS": str(LIVE_PER_IP),
        "RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR": str(CREATIONS),
    }
    server = LiveServer(tmp_path_factory.mktemp("first-run"), env=env).prepare()
    try:
        server.start()
        yield server
    finally:
        server.close()


def create_by_api(server: LiveServer) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{server.base_url}/api/session",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_a_newcomer_never_trips_the_live_session_limit_and_refusals_are_pages(
    browser: Browser, limited_server: LiveServer, shots: Path
):
    context = browser.new_context(base_url=limited_server.base_url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto("/")  # creation 1
    expect(page.locator("#status")).to_have_text("Connected")

    # Seven presses, more than the five live sessions an address may hold (creations 2-8).
    for press in range(7):
        with page.expect_response(lambda r: r.url.endswith("/conversation/new")) as answer:
            page.locator("#new-conversation").click()
        assert answer.value.status == 201, press
        expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator(".notice.error")).to_have_count(0)
    page.screenshot(path=str(shots / "first-run-after-seven-new-conversations.png"))

    # Scripts from the same address fill it (creations 9-12: live are the page's + 4 = 5; the
    # refused fifth takes no creation).
    answers = [create_by_api(limited_server) for _ in range(LIVE_PER_IP)]
    assert [status for status, _ in answers] == [201] * (LIVE_PER_IP - 1) + [429]
    assert answers[-1][1]["error"]["code"] == "CONCURRENT_LIMIT_EXCEEDED"

    # A second browser: an HTML page with the wait in words, Retry-After and the logged code.
    schemes: tuple[tuple[int, Literal["light", "dark"]], ...] = ((1280, "light"), (390, "dark"))
    for width, scheme in schemes:
        other = browser.new_context(
            base_url=limited_server.base_url,
            viewport={"width": width, "height": 844},
            color_scheme=scheme,
        )
        refused_page = other.new_page()
        response = refused_page.goto("/")
        assert response is not None and response.status == 429
        assert response.headers["content-type"].startswith("text/html")
        assert int(response.headers["retry-after"]) > 60
        text = refused_page.locator("main").inner_text()
        assert WAIT_IN_WORDS.search(text), text
        assert "CONCURRENT_LIMIT_EXCEEDED" in text
        assert not text.lstrip().startswith("{")
        assert refused_page.evaluate(NO_OVERFLOW_JS)
        refused_page.screenshot(path=str(shots / f"first-run-limited-{width}-{scheme}.png"))
        other.close()

    # The page at a full address: its press ends its own session first, so it is not refused
    # (creation 13, the last of the hour).
    with page.expect_response(lambda r: r.url.endswith("/conversation/new")) as answer:
        page.locator("#new-conversation").click()
    assert answer.value.status == 201
    expect(page.locator("#status")).to_have_text("Connected")

    # The next press meets the creations-per-hour limit: the notice says the real wait.
    with page.expect_response(lambda r: r.url.endswith("/conversation/new")) as answer:
        page.locator("#new-conversation").click()
    assert answer.value.status == 429
    notice = page.locator(".notice.error").last
    expect(notice).to_contain_text("Could not start a new conversation.")
    assert WAIT_IN_WORDS.search(notice.inner_text()), notice.inner_text()
    assert "moment" not in notice.inner_text()
    page.screenshot(path=str(shots / "first-run-new-conversation-refused.png"))
    context.close()
