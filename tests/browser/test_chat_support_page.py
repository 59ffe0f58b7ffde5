"""The chat page as a support widget, in Chromium against the real server: the assistant's
greeting and suggested questions, its name and avatar, the typing indicator, "End conversation"
behind a confirmation, keyboard-only use, phone width and dark mode (with screenshots)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from chat.suggestions import COUNT, CURATED
from supportbot.branding import DEFAULT_GREETING, DEFAULT_NAME
from tests.browser.conftest import NO_OVERFLOW_JS, WAIT_MS, open_chat, send
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply

pytestmark = pytest.mark.browser

ANSWER = """Here is how to fix it:

1. Open **Settings**.
   - On a phone: *Profile*, then *Settings*.
2. Run `nimbus sync --reset`.

| Platform | Where the log is |
| --- | --- |
| Windows | `%APPDATA%\\Nimbus\\sync.log` |
| macOS | `~/Library/Logs/Nimbus/sync.log` |

```
nimbus sync --reset --verbose --log-file=/var/tmp/a-rather-long-path/for-the-phone/sync.log
```

See [Sync error codes](https://help.nimbus.example/articles/sync-error-codes)."""


def last_user_content(fake_model: FakeOpenAIServer) -> str:
    messages = fake_model.chat_requests[-1].body["messages"]
    return [m for m in messages if m["role"] == "user"][-1]["content"]


def focused(page: Page) -> str:
    """The focused element as "#id" or "tag.class" (enough to tell the page's controls apart)."""
    return str(
        page.evaluate(
            """() => { const el = document.activeElement;
                if (!el) return "";
                return el.id ? "#" + el.id : el.tagName.toLowerCase() + "." + el.className; }"""
        )
    )


def tab_until(page: Page, target: str, key: str = "Tab", limit: int = 20) -> None:
    for _ in range(limit):
        if focused(page) == target:
            return
        page.keyboard.press(key)
    assert focused(page) == target, f"{key} never reached {target}"


def test_greeting_and_suggested_questions_open_a_conversation(
    page: Page, fake_model: FakeOpenAIServer
) -> None:
    fake_model.script(Reply("You can get a refund within 30 days.", delay=0.02))
    open_chat(page)
    expect(page.locator(".bar h1")).to_have_text(DEFAULT_NAME)
    header_avatar = page.locator(".bar img.avatar")
    expect(header_avatar).to_be_visible()
    assert header_avatar.evaluate("img => img.complete && img.naturalWidth > 0")
    welcome = page.locator("#log #welcome")
    expect(welcome.locator(".greeting-name")).to_have_text(DEFAULT_NAME)
    expect(welcome.locator(".greeting-text")).to_have_text(DEFAULT_GREETING)
    # A fresh installation: the curated questions about the starter articles.
    suggestions = page.locator("#suggestions button.suggestion")
    expect(suggestions).to_have_text(list(CURATED.values())[:COUNT])
    assert 3 <= suggestions.count() <= 5
    # The greeting is the page's, not a stored message.
    expect(page.locator("article.message")).to_have_count(0)

    chosen = suggestions.nth(1).inner_text()
    suggestions.nth(1).click()
    user = page.locator("article.from-user .body")
    expect(user).to_have_text(chosen)
    expect(page.locator("#message")).to_be_focused()
    expect(page.locator("#suggestions")).to_be_hidden()
    expect(welcome.locator(".greeting")).to_be_visible()
    answer = page.locator("article.from-assistant:not(.streaming)")
    expect(answer.locator(".body")).to_have_text("You can get a refund within 30 days.")
    expect(answer.locator(".role")).to_have_text(DEFAULT_NAME)
    expect(answer.locator(".meta img.avatar")).to_have_count(1)
    assert last_user_content(fake_model) == chosen
    stored = page.request.get(
        f"/api/session/{page.locator('body').get_attribute('data-session-id')}"
    )
    assert [m["role"] for m in stored.json()["recentMessages"]] == ["user", "assistant"]

    # Reloaded, the conversation has messages: the greeting stays, the suggestions do not.
    page.reload()
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("article.message")).to_have_count(2)
    expect(page.locator("#welcome .greeting")).to_be_visible()
    expect(page.locator("#suggestions")).to_be_hidden()

    # A new conversation starts with the greeting and the suggestions again.
    page.locator("#new-conversation").click()
    expect(page.locator("article.message")).to_have_count(0)
    expect(page.locator("#log > #welcome")).to_have_count(1)
    expect(page.locator("#suggestions")).to_be_visible()


def test_end_conversation_asks_first_and_is_quieter_than_the_composer(page: Page) -> None:
    session_id = open_chat(page)
    end, dialog = page.locator("#end-conversation"), page.locator("#end-dialog")
    styles = page.evaluate(
        """() => ["end-conversation", "send"].map((id) => {
            const s = getComputedStyle(document.getElementById(id));
            return [s.backgroundColor, parseFloat(s.fontSize), s.fontWeight];
        })"""
    )
    (end_bg, end_size, _), (send_bg, send_size, send_weight) = styles
    assert end_bg == "rgba(0, 0, 0, 0)" and send_bg == "rgb(47, 95, 208)", styles
    assert end_size < send_size and int(send_weight) >= 600

    def status() -> str:
        return str(page.request.get(f"/api/session/{session_id}").json()["status"])

    expect(dialog).to_be_hidden()
    end.click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("End this conversation?")
    expect(page.locator("#end-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(end).to_be_focused()
    assert status() == "active"

    end.click()
    page.get_by_role("button", name="Keep chatting").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Connected")
    assert status() == "active"

    end.click()
    page.locator("#end-confirm").click()
    expect(page.locator("#status")).to_have_text("Conversation ended")
    expect(dialog).to_be_hidden()
    assert status() == "ended"
    expect(end).to_be_disabled()


def test_the_page_works_from_the_keyboard_alone(page: Page, fake_model: FakeOpenAIServer) -> None:
    fake_model.set_default(Reply("Done, step by step."))
    open_chat(page)
    # From the top of the page, Tab reaches the suggestions; Enter sends one.
    page.locator("body").focus()
    tab_until(page, "button.suggestion")
    first = page.locator("button.suggestion").first.inner_text()
    page.keyboard.press("Enter")
    expect(page.locator("article.from-user .body")).to_have_text(first)
    assert focused(page) == "#message"
    expect(page.locator("article.from-assistant:not(.streaming)")).to_have_count(1)

    # The composer: Enter sends.
    page.keyboard.type("And on my phone?")
    page.keyboard.press("Enter")
    expect(page.locator("article.from-user .body").nth(1)).to_have_text("And on my phone?")
    expect(page.locator("article.from-assistant:not(.streaming)")).to_have_count(2)

    # "End conversation" by keyboard; Escape closes its dialog and gives the focus back.
    tab_until(page, "#end-conversation", key="Shift+Tab", limit=30)
    page.keyboard.press("Enter")
    expect(page.locator("#end-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#end-dialog")).to_be_hidden()
    assert focused(page) == "#end-conversation"
    tab_until(page, "#message", limit=30)
    page.keyboard.type("Still here")
    page.keyboard.press("Enter")
    expect(page.locator("article.from-user .body").nth(2)).to_have_text("Still here")
    # Answered before the test ends (a turn still running would take the next test's reply).
    expect(page.locator("article.from-assistant:not(.streaming)")).to_have_count(3)


@pytest.mark.parametrize("motion", ["no-preference", "reduce"])
def test_typing_dots_while_waiting_for_the_first_word(
    browser: Browser,
    app_server: LiveServer,
    fake_model: FakeOpenAIServer,
    motion: Literal["no-preference", "reduce"],
) -> None:
    fake_model.script(Reply("Here you go.", first_delay=1.5))
    context = browser.new_context(base_url=app_server.base_url, reduced_motion=motion)
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        open_chat(page)
        send(page, "Hello?")
        typing = page.locator("#typing")
        expect(typing).to_be_visible()
        expect(typing).to_have_text(f"{DEFAULT_NAME} is typing…")
        dots = typing.locator(".dots > span")
        expect(dots).to_have_count(3)
        animation = dots.first.evaluate("d => getComputedStyle(d).animationName")
        assert animation == ("none" if motion == "reduce" else "dot")
        expect(page.locator("article.from-assistant .body")).to_have_text("Here you go.")
        expect(typing).to_be_hidden()
    finally:
        context.close()


SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 860},
    "phone": {"width": 390, "height": 844},
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_phone_and_desktop_light_and_dark_without_overflow(
    browser: Browser,
    app_server: LiveServer,
    fake_model: FakeOpenAIServer,
    shots: Path,
    size: str,
    scheme: Literal["light", "dark"],
) -> None:
    fake_model.script(Reply(ANSWER, delay=0.01))
    context = browser.new_context(
        base_url=app_server.base_url, viewport=SIZES[size], color_scheme=scheme
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        open_chat(page)
        page.screenshot(path=shots / f"chat-welcome-{size}-{scheme}.png")
        assert page.evaluate(NO_OVERFLOW_JS)
        background = page.evaluate(
            "getComputedStyle(document.querySelector('.log')).backgroundColor"
        )
        channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
        assert (sum(channels) / 3 < 60) if scheme == "dark" else (sum(channels) / 3 > 200)

        send(page, "My sync stopped with an error, what now?")
        answer = page.locator("article.from-assistant:not(.streaming)")
        expect(answer.locator("table")).to_have_count(1)
        expect(answer.locator(".thumb").first).to_be_in_viewport()
        assert page.evaluate(NO_OVERFLOW_JS)
        # Wide content scrolls inside its own box, never the page.
        widths = page.evaluate(
            """() => [document.documentElement, document.body, document.getElementById("log")]
                .map(n => n.scrollWidth - n.clientWidth)"""
        )
        assert widths == [0, 0, 0]
        for selector in ("#message", "#send", "#new-conversation", "#end-conversation"):
            expect(page.locator(selector)).to_be_in_viewport()
        page.screenshot(path=shots / f"chat-answer-{size}-{scheme}.png")

        page.locator("#end-conversation").click()
        expect(page.locator("#end-dialog")).to_be_visible()
        assert page.evaluate(NO_OVERFLOW_JS)
        page.screenshot(path=shots / f"chat-end-dialog-{size}-{scheme}.png")
    finally:
        context.close()
