"""The offline assistant's composed answers on the chat page, in Chromium against a server with
no model at all: the row that fits the question comes first, steps render as steps, the notice
that no model is answering comes once per conversation (a badge after that), and a source the
answer links is not listed twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import NO_OVERFLOW_JS, WAIT_MS, offline_server, open_chat, send
from tests.fakes.live_server import LiveServer

pytestmark = pytest.mark.browser
NOTICE = "without a language model"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with offline_server(tmp_path_factory.mktemp("offline-answers")) as server:
        yield server


def answer(page: Page, n: int) -> Locator:
    """The ``n``-th assistant answer (1-based), once it is stored (no longer streaming)."""
    located = page.locator("article.from-assistant:not(.streaming)[data-seq]").nth(n - 1)
    expect(located).to_be_visible()
    return located


@pytest.mark.parametrize("width", [1100, 390])
def test_composed_answers_read_as_answers(
    browser: Browser, server: LiveServer, shots: Path, width: int
) -> None:
    context = browser.new_context(
        base_url=server.base_url, viewport={"width": width, "height": 900}
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        open_chat(page)
        send(page, "I bought the annual plan yesterday and changed my mind. Can I get a refund?")
        first = answer(page, 1)
        body = first.locator(".body")
        expect(body.locator("p").first).to_contain_text("cancelled within 30 days")
        expect(body.locator("p").first).to_contain_text("Full refund")
        expect(body).not_to_contain_text("No refund for the current month")
        expect(body).to_contain_text(NOTICE)
        expect(body.locator("a[href$='/refunds-and-cancellation']")).to_have_count(1)
        # The source is linked in the answer: not listed again under it.
        expect(first.locator(".citations")).to_have_count(0)
        expect(first.locator(".model-badge")).to_have_text("Help centre")

        send(page, "How do I reset my password?")
        second = answer(page, 2)
        steps = second.locator(".body ol > li")
        expect(steps).to_have_count(3)
        expect(steps.first).to_contain_text("https://app.nimbus.example/forgot")
        expect(second.locator(".body")).not_to_contain_text(NOTICE)
        expect(second.locator(".model-badge")).to_have_text("Help centre")
        # Nothing shows Markdown or JSON as text.
        text = page.locator("#log").inner_text()
        assert "**" not in text and '{"' not in text and "](" not in text
        assert page.evaluate(NO_OVERFLOW_JS)
        page.screenshot(path=str(shots / f"offline-answers-{width}.png"), full_page=True)
    finally:
        context.close()
