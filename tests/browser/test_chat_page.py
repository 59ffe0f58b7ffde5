"""The chat page in Chromium against the real server: streaming, reconnect and resume, safe
rendering, keyboard use, new/end conversation, phone layout."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from supportbot.branding import DEFAULT_NAME
from tests.browser.conftest import WAIT_MS, open_chat, send
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import Custom, FakeOpenAIServer, Reply

pytestmark = pytest.mark.browser

TIME = re.compile(r"^\d{1,2}:\d{2}(\s?[AP]M)?$")
# Reconnecting waits out the backoff (0.5-1 s, 1-2 s, 2-4 s, ... with jitter) of the attempts
# made while the server was down.
RECONNECT_MS = 15000


def seqs(page: Page) -> list[str | None]:
    """data-seq of every message bubble, in page order (None for one without a seq)."""
    return page.locator("article.message").evaluate_all(
        "nodes => nodes.map(n => n.dataset.seq || null)"
    )


def bodies(page: Page) -> list[str]:
    return page.locator("article.message .body").evaluate_all(
        "nodes => nodes.map(n => n.textContent)"
    )


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body["messages"] if m.get("role") == "user"]
    content = users[-1]["content"] if users else ""
    return content if isinstance(content, str) else ""


def echo_model(fake_model: FakeOpenAIServer) -> None:
    """Every answer names its question, so each answer can be told apart whatever the order."""
    fake_model.set_default(Custom(lambda body: f"Answer to: {last_user_text(body)}"))


def test_a_sent_message_gets_an_answer_that_streams_in(page: Page, fake_model) -> None:
    final = "Alpha beta gamma delta epsilon zeta eta theta iota kappa."
    fake_model.script(Reply(final, delay=0.1))
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    open_chat(page)
    send(page, "How do I reset my password?")

    user = page.locator("article.message.from-user")
    expect(user.locator(".body")).to_have_text("How do I reset my password?")
    expect(user.locator(".role")).to_have_text("You")
    expect(user.locator("time")).to_have_text(TIME)
    assert user.locator("time").get_attribute("datetime")
    expect(page.locator("#message")).to_have_value("")

    # Part of the answer is on the page before all of it is.
    page.wait_for_function(
        """final => {
            const body = document.querySelector("article.from-assistant .body");
            if (!body) return false;
            const text = body.textContent.trim();
            return text.length > 0 && text.length < final.length && final.startsWith(text);
        }""",
        arg=final,
        timeout=WAIT_MS,
        polling="raf",
    )
    expect(page.locator("article.from-assistant.streaming")).to_have_count(1)

    assistant = page.locator("article.message.from-assistant")
    expect(assistant.locator(".body")).to_have_text(final)
    expect(assistant).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(assistant.locator(".role")).to_have_text(DEFAULT_NAME)
    expect(assistant.locator("time")).to_have_text(TIME)
    expect(user).to_have_attribute("data-seq", "1")
    expect(user).not_to_have_class(re.compile(r"\bpending\b"))
    expect(assistant).to_have_attribute("data-seq", "2")
    expect(page.locator("#typing")).to_be_hidden()
    assert problems == []  # no failed load (the icon included), no script error


def test_server_restart_mid_conversation_reconnects_resumes_and_loses_nothing(
    page: Page, fake_model, app_server: LiveServer
) -> None:
    echo_model(fake_model)
    session_id = open_chat(page)
    send(page, "First question")
    expect(page.locator("article.from-assistant .body")).to_have_text("Answer to: First question")

    app_server.stop()
    status = page.locator("#status")
    expect(status).to_have_text(re.compile(r"Offline|Reconnecting"))
    expect(status).not_to_have_attribute("data-state", "online")
    # Typed while offline: shown at once, sent when a socket is open again.
    send(page, "Second question, typed offline")
    expect(page.locator("article.from-user.pending .body")).to_have_text(
        "Second question, typed offline"
    )

    app_server.start()
    # Another client adds to the conversation while the page is still reconnecting: the page
    # gets it by resume or by fan-out, whichever comes first, but only once.
    post_chat(app_server, session_id, "Third question, over REST")
    expect(status).to_have_text("Connected", timeout=RECONNECT_MS)

    expected = [
        "First question",
        "Answer to: First question",
        "Second question, typed offline",
        "Answer to: Second question, typed offline",
        "Third question, over REST",
        "Answer to: Third question, over REST",
    ]
    expect(page.locator("article.message")).to_have_count(6)
    expect(page.locator("article.message.pending")).to_have_count(0)
    assert seqs(page) == ["1", "2", "3", "4", "5", "6"]
    assert sorted(bodies(page)) == sorted(expected)
    # Each answer follows its question.
    texts = bodies(page)
    for question in ("First question", "Second question, typed offline"):
        assert texts[texts.index(question) + 1] == f"Answer to: {question}"

    page.reload()
    expect(status).to_have_text("Connected")
    expect(page.locator("article.message")).to_have_count(6)
    assert seqs(page) == ["1", "2", "3", "4", "5", "6"]
    assert bodies(page) == texts


def post_chat(server: LiveServer, session_id: str, message: str) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/api/chat",
        data=json.dumps({"message": message, "sessionId": session_id}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


HOSTILE_USER = '<img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script>'
HOSTILE_ANSWER = (
    'Try <img src=x onerror="window.__xss=3"> or <script>window.__xss=4</script> '
    "or [click me](javascript:alert(1)) or [the help page](https://example.com/help)."
)


def assert_nothing_ran(page: Page, dialogs: list[str]) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []
    # The assistant's avatar is the only image: nothing a message says becomes one.
    expect(page.locator("#log .body img, #log img:not(.avatar)")).to_have_count(0)
    expect(page.locator("#log script")).to_have_count(0)
    hrefs = page.locator("#log a").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["https://example.com/help"]


def test_html_in_messages_and_answers_is_shown_as_text_and_never_runs(
    page: Page, fake_model
) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    fake_model.script(Reply(HOSTILE_ANSWER))
    open_chat(page)
    send(page, HOSTILE_USER)

    expect(page.locator("article.from-user .body")).to_have_text(HOSTILE_USER)
    answer = page.locator("article.from-assistant .body")
    expect(answer).to_have_text(
        'Try <img src=x onerror="window.__xss=3"> or <script>window.__xss=4</script> '
        "or [click me](javascript:alert(1)) or the help page."
    )
    link = answer.locator("a")
    expect(link).to_have_text("the help page")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert_nothing_ran(page, dialogs)

    # The same text from the history endpoint, after a reload.
    page.reload()
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("article.from-user .body")).to_have_text(HOSTILE_USER)
    expect(page.locator("article.from-assistant .body")).to_contain_text("[click me](javascript:")
    assert_nothing_ran(page, dialogs)


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def tab_to(page: Page, element_id: str, key: str = "Tab", limit: int = 12) -> None:
    for _ in range(limit):
        if focused_id(page) == element_id:
            return
        page.keyboard.press(key)
    assert focused_id(page) == element_id, f"{key} never reached #{element_id}"


def test_the_page_works_from_the_keyboard_alone(page: Page, fake_model) -> None:
    fake_model.script(Reply("Here is how, step by step."))
    old_session = open_chat(page)
    textbox = page.get_by_role("textbox", name="Your message")
    expect(textbox).to_have_id("message")

    tab_to(page, "message")
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(textbox).to_have_value("First line\nsecond line")
    page.keyboard.press("Enter")
    expect(textbox).to_have_value("")
    user_body = page.locator("article.from-user .body")
    expect(user_body).to_have_count(1)
    assert user_body.evaluate("n => n.textContent") == "First line\nsecond line"
    # The answer reaches screen readers through a live region.
    live = page.locator('[aria-live="polite"], [aria-live="assertive"]')
    expect(live).to_have_count(1)
    expect(live).to_contain_text("Here is how, step by step.")

    tab_to(page, "end-conversation", key="Shift+Tab")
    page.keyboard.press("Space")
    # Behind a confirmation whose safe answer has the focus.
    expect(page.locator("#end-dialog")).to_be_visible()
    assert focused_id(page) == "end-cancel"
    page.keyboard.press("Tab")
    assert focused_id(page) == "end-confirm"
    page.keyboard.press("Enter")
    expect(page.locator("#end-dialog")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Conversation ended")
    expect(textbox).to_be_disabled()
    ended = page.request.get(f"/api/session/{old_session}").json()
    assert ended["status"] == "ended"
    # The server's line and the page's own notice say it once between them.
    page.wait_for_timeout(500)
    expect(page.locator("#log .notice", has_text="This conversation has ended")).to_have_count(1)

    tab_to(page, "new-conversation", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("body")).not_to_have_attribute("data-session-id", old_session)
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("article.message")).to_have_count(0)
    expect(textbox).to_be_enabled()
    expect(textbox).to_be_focused()


def test_new_conversation_survives_a_reload(page: Page, fake_model) -> None:
    old_session = open_chat(page)
    send(page, "Something to leave behind")
    expect(page.locator("article.from-assistant")).to_have_count(1)

    page.get_by_role("button", name="New conversation").click()
    body = page.locator("body")
    expect(body).not_to_have_attribute("data-session-id", old_session)
    new_session = body.get_attribute("data-session-id")
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("article.message")).to_have_count(0)

    page.reload()
    expect(page.locator("#status")).to_have_text("Connected")
    expect(body).to_have_attribute("data-session-id", str(new_session))
    expect(page.locator("article.message")).to_have_count(0)


def test_after_end_conversation_a_reload_starts_a_fresh_one(page: Page, fake_model) -> None:
    old_session = open_chat(page)
    send(page, "One question before I go")
    expect(page.locator("article.from-assistant")).to_have_count(1)

    page.locator("#end-conversation").click()
    page.locator("#end-confirm").click()
    expect(page.locator("#status")).to_have_text("Conversation ended")
    expect(page.locator("#message")).to_be_disabled()
    expect(page.locator("#send")).to_be_disabled()

    page.reload()
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("body")).not_to_have_attribute("data-session-id", old_session)
    expect(page.locator("article.message")).to_have_count(0)
    expect(page.locator("#message")).to_be_enabled()


def test_phone_width_has_no_horizontal_scroll_and_the_composer_is_visible(
    browser: Browser, app_server: LiveServer, fake_model
) -> None:
    fake_model.script(
        Reply("A long token: " + "x" * 300 + "\n\n```\n" + "code " * 60 + "\n```", chunks=4)
    )
    context = browser.new_context(
        base_url=app_server.base_url, viewport={"width": 375, "height": 700}
    )
    try:
        page = context.new_page()
        open_chat(page)
        send(page, "https://example.com/" + "long-path-segment/" * 20)
        expect(page.locator("article.from-assistant:not(.streaming) pre")).to_have_count(1)

        widths = page.evaluate(
            """() => [document.documentElement, document.body, document.getElementById("log")]
                .map(n => [n.scrollWidth, n.clientWidth])"""
        )
        for scroll_width, client_width in widths:
            assert scroll_width <= client_width, widths
        for selector in ("#composer", "#message", "#send", "#new-conversation"):
            expect(page.locator(selector)).to_be_in_viewport()
    finally:
        context.close()


def test_a_running_tool_shows_its_progress_then_a_chip(page: Page, fake_model) -> None:
    """While the model's create_ticket call runs the page says so; the answer carries a chip."""
    from tests.fakes.openai_server import tool_call

    fake_model.script(
        tool_call(
            "create_ticket",
            {"title": "Share button greyed out", "description": "Cannot share any folder."},
        ),
        # Slow enough for the progress line to be seen before the answer replaces it.
        Reply("Your ticket is open; an agent will follow up.", first_delay=1.5),
    )
    open_chat(page)
    send(page, "Please open a ticket, sharing is broken")
    expect(page.locator("#typing")).to_have_text("Creating a ticket…")
    assistant = page.locator("article.message.from-assistant")
    expect(assistant.locator(".body")).to_have_text("Your ticket is open; an agent will follow up.")
    chip = assistant.locator(".chips .chip")
    expect(chip).to_have_count(1)
    expect(chip).to_have_text(re.compile(r"^Opened ticket TKT-[A-Z2-9]{8}$"))
    expect(page.locator("#typing")).to_be_hidden()


def test_a_late_end_answer_does_not_end_the_next_conversation(page: Page, fake_model) -> None:
    """The socket says the conversation ended before DELETE's response arrives; the user starts
    a new one meanwhile. When the response finally comes, the new conversation stays open."""
    held: list[Any] = []

    def hold_deletes(route: Any) -> None:
        if route.request.method == "DELETE":
            held.append(route)
        else:
            route.continue_()

    old_session = open_chat(page)
    page.route(re.compile(r".*/api/session/sess_[^/?]+$"), hold_deletes)
    page.locator("#end-conversation").click()
    page.locator("#end-confirm").click()
    page.wait_for_function("() => true")
    assert len(held) == 1
    # The session really ends (another client's DELETE), so the socket reports it first.
    request = urllib.request.Request(
        f"{page.url.rstrip('/')}/api/session/{old_session}", method="DELETE"
    )
    urllib.request.urlopen(request, timeout=10).read()
    expect(page.locator("#status")).to_have_text("Conversation ended")
    page.locator("#new-conversation").click()
    expect(page.locator("body")).not_to_have_attribute("data-session-id", old_session)
    expect(page.locator("#status")).to_have_text("Connected")
    held[0].continue_()  # the first DELETE's answer (409 now) arrives late
    page.wait_for_timeout(500)
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("#message")).to_be_enabled()


def test_an_answer_can_be_reported_to_staff(page: Page, fake_model, app_server) -> None:
    """ "Report this answer" opens a small form; the report reaches the staff review queue."""
    import subprocess
    import sys

    fake_model.script(Reply("The moon is made of cheese."))
    session_id = open_chat(page)
    send(page, "Is the moon made of cheese?")
    assistant = page.locator("article.message.from-assistant")
    expect(assistant.locator(".body")).to_have_text("The moon is made of cheese.")
    assistant.get_by_role("button", name="Report this answer").click()
    reason = assistant.get_by_label("What is wrong with this answer? (optional)")
    expect(reason).to_be_focused()
    reason.fill("This is <b>wrong</b>")
    assistant.get_by_role("button", name="Send report").click()
    expect(assistant.locator(".reported")).to_have_text(re.compile(r"^Reported\."))
    expect(assistant.get_by_role("button", name="Report this answer")).to_have_count(0)

    check = (
        "from chat.models import ReviewItem; "
        f"item = ReviewItem.objects.get(kind='report', session_id='{session_id}'); "
        "print(item.reason, '|', item.excerpt)"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", check],
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
        env=app_server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "This is <b>wrong</b> | The moon is made of cheese."
