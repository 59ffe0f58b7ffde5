"""The chat page's hand-off to a person in Chromium against the real server: availability, the
"Talk to a person" button, the queue and the ticket offer, an agent's replies and held turns,
the rating of a resolved conversation, thumbs on answers.

The agent is real too: a superuser signed in to the admin in a second browser context, online
while its staff socket (``/ws/staff``) is open, acting through ``/api/staff/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import WAIT_MS, manage_shell, open_chat, send
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply

pytestmark = pytest.mark.browser

AGENT_USERNAME = "alice"
AGENT_PASSWORD = "correct horse battery staple"
TICKET = re.compile(r"^Ticket TKT-[A-Z2-9]{8} opened; we'll reply to your address\.$")


@pytest.fixture(scope="module")
def agent_account(app_server: LiveServer) -> str:
    """A superuser named Alice (every hand-off permission); returns the name customers see."""
    manage_shell(
        app_server,
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({AGENT_USERNAME!r}, "
        f"'alice@example.com', {AGENT_PASSWORD!r}, first_name='Alice')",
    )
    return "Alice"


class Agent:
    """Alice in her own browser context: signed in, online while ``go_online``'s socket is open."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page = context.new_page()

    def sign_in(self) -> None:
        self.page.goto("/admin/login/")
        self.page.locator("#id_username").fill(AGENT_USERNAME)
        self.page.locator("#id_password").fill(AGENT_PASSWORD)
        self.page.locator("#id_password").press("Enter")
        self.page.wait_for_url(re.compile(r"/admin/$"))

    def go_online(self) -> None:
        """Open the staff socket and wait until the server has counted Alice as online."""
        online = self.page.evaluate(
            """() => new Promise((resolve) => {
                const socket = new WebSocket(`ws://${location.host}/ws/staff`);
                window.staffSocket = socket;
                socket.onmessage = (event) => {
                    const frame = JSON.parse(event.data);
                    if (frame.type === "presence") resolve(frame.data.agents.map((a) => a.name));
                };
                socket.onclose = () => resolve(null);
            })"""
        )
        assert online is not None and "Alice" in online, online

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        csrf = next(c["value"] for c in self.context.cookies() if c["name"] == "csrftoken")
        response = self.context.request.post(
            f"/api/staff/{path}", data=body or {}, headers={"X-CSRFToken": csrf}
        )
        assert response.ok, (response.status, response.text())
        return dict(response.json())

    def take(self, handoff_id: str) -> None:
        self.post(f"handoffs/{handoff_id}/take")

    def reply(self, handoff_id: str, text: str) -> None:
        self.post(f"handoffs/{handoff_id}/reply", {"text": text})

    def resolve(self, handoff_id: str) -> None:
        self.post(f"handoffs/{handoff_id}/resolve")


@pytest.fixture
def agent(browser: Browser, app_server: LiveServer, agent_account: str) -> Iterator[Agent]:
    """Alice, signed in and online; offline again when the test ends (her context closes)."""
    context = browser.new_context(base_url=app_server.base_url)
    context.set_default_timeout(WAIT_MS)
    try:
        alice = Agent(context)
        alice.sign_in()
        alice.go_online()
        yield alice
    finally:
        context.close()


def handoff_body(page: Page, session_id: str) -> dict[str, Any]:
    response = page.request.get(f"/api/session/{session_id}/handoff")
    assert response.status == 200, response.text()
    return dict(response.json())


def ask_for_a_person(page: Page) -> None:
    talk = page.get_by_role("button", name="Talk to a person")
    expect(talk).to_be_enabled()
    talk.click()
    expect(talk).to_be_disabled()


def test_nobody_online_the_page_says_so_and_opens_a_ticket_for_a_typed_address(
    page: Page, fake_model: FakeOpenAIServer
) -> None:
    session_id = open_chat(page)
    expect(page.locator("#availability")).to_have_text("No one from the team is online right now")
    panel = page.locator("#handoff")
    expect(panel).to_be_hidden()

    ask_for_a_person(page)
    status = page.locator("#handoff-status")
    expect(status).to_have_text(
        "No one from the team is available right now. Leave your email address and we'll "
        "reply by email (we'll open a ticket)."
    )
    expect(status).to_have_attribute("role", "status")
    email = page.get_by_label("Email address")
    expect(email).to_be_focused()  # the form the customer asked for is where they type
    expect(email).to_have_attribute("type", "email")
    expect(email).to_have_attribute("autocomplete", "email")
    expect(email).to_have_attribute("maxlength", "254")
    body = handoff_body(page, session_id)
    assert (body["status"], body["reason"], body["ticketOffered"]) == ("waiting", "customer", True)

    # The browser takes "someone@example"; the server does not. Its reason shows by the field,
    # and the address stays as typed.
    email.fill("someone@example")
    page.get_by_role("button", name="Open a ticket").click()
    error = page.locator("#handoff-email-error")
    expect(error).to_have_text("Enter a complete email address, like name@example.com.")
    expect(email).to_have_value("someone@example")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_be_focused()

    email.fill("someone@example.com")
    email.press("Enter")
    expect(status).to_have_text(TICKET)
    expect(page.get_by_label("Email address")).to_have_count(0)
    body = handoff_body(page, session_id)
    assert body["contactGiven"] is True
    assert body["ticketId"] and body["ticketId"] in (status.text_content() or "")
    expect(page.get_by_role("button", name="Talk to a person")).to_be_disabled()


def test_outside_support_hours_the_offer_says_when_the_team_is_back(
    page: Page, fake_model: FakeOpenAIServer, app_server: LiveServer
) -> None:
    # Open one hour a week, on a day that is not today (in the schedule's zone): closed now.
    manage_shell(
        app_server,
        "import datetime, zoneinfo; "
        "from chat.models import SupportSchedule, SupportHours; "
        "today = datetime.datetime.now(zoneinfo.ZoneInfo('Europe/Paris')).weekday(); "
        "s = SupportSchedule.objects.create(name='Test hours', timezone='Europe/Paris'); "
        "SupportHours.objects.create(schedule=s, weekday=(today + 3) % 7, "
        "opens=datetime.time(9), closes=datetime.time(10))",
    )
    try:
        session_id = open_chat(page)
        next_open = handoff_body(page, session_id)["availability"]["nextOpenText"]
        assert next_open and "Europe/Paris" in next_open
        expect(page.locator("#availability")).to_have_text(f"Our team is back {next_open}")
        ask_for_a_person(page)
        expect(page.locator("#handoff-status")).to_have_text(
            f"No one from the team is available right now; back {next_open}. Leave your email "
            "address and we'll reply by email (we'll open a ticket)."
        )
    finally:
        manage_shell(
            app_server,
            "from chat.models import SupportSchedule; "
            "SupportSchedule.objects.filter(name='Test hours').delete()",
        )


def test_with_an_agent_online_the_panel_shows_the_queue_and_pauses_the_assistant(
    page: Page, fake_model: FakeOpenAIServer, agent: Agent
) -> None:
    session_id = open_chat(page)
    expect(page.locator("#availability")).to_have_text("Support team online")
    ask_for_a_person(page)
    status = page.locator("#handoff-status")
    # Earlier tests of this module left customers waiting: the place is theirs plus one.
    position = handoff_body(page, session_id)["position"]
    assert isinstance(position, int) and position >= 1
    # Fewer than three hand-offs were ever taken: no typical wait is promised.
    expect(status).to_have_text(f"You're number {position} in the queue.")
    pause = page.get_by_label("Pause the assistant while I wait")
    expect(pause).not_to_be_checked()
    expect(pause).to_be_focused()

    page.keyboard.press("Space")
    expect(pause).to_be_checked()
    page.wait_for_function(
        """async (id) => {
            const response = await fetch(`/api/session/${id}/handoff`);
            return (await response.json()).botPaused === true;
        }""",
        arg=session_id,
        timeout=WAIT_MS,
        polling=200,
    )


def test_an_agent_takes_over_replies_by_name_and_holds_the_assistant_back(
    page: Page, fake_model: FakeOpenAIServer, agent: Agent
) -> None:
    session_id = open_chat(page)
    ask_for_a_person(page)
    expect(page.locator("#handoff-status")).to_have_text(re.compile(r"in the queue"))
    handoff_id = handoff_body(page, session_id)["handoffId"]

    agent.take(handoff_id)
    expect(page.locator("#handoff-status")).to_have_text("Alice is answering you.")
    expect(page.locator("#log .notice")).to_have_text(["Alice joined the conversation."])

    # A held turn: the question is stored and goes to Alice; no empty answer bubble appears.
    send(page, "My invoice is wrong")
    question = page.locator("article.from-user")
    expect(question.locator(".forwarded-note")).to_have_text("Sent to Alice")
    expect(page.locator("#typing")).to_be_hidden()
    expect(page.locator("article.from-assistant")).to_have_count(0)

    agent.reply(handoff_id, "Hello, **I'm looking** at your invoice now.")
    reply = page.locator("article.message.from-staff")
    expect(reply.locator(".role")).to_have_text("Alice")
    expect(reply.locator(".body")).to_have_text("Hello, I'm looking at your invoice now.")
    expect(reply.locator(".body strong")).to_have_text("I'm looking")
    expect(page.locator("#announcer")).to_have_text(
        "Alice: Hello, **I'm looking** at your invoice now."
    )
    expect(reply.get_by_role("button", name="This helped")).to_have_count(0)
    expect(page.locator("article.from-assistant")).to_have_count(0)

    # The same from history: the agent's bubble by name, the question marked as sent to the team.
    page.reload()
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("article.from-staff .role")).to_have_text("Alice")
    expect(page.locator("article.from-user .forwarded-note")).to_have_text(
        "Sent to the support team"
    )
    expect(page.locator("#handoff-status")).to_have_text("Alice is answering you.")
    expect(page.get_by_role("button", name="Talk to a person")).to_be_disabled()
    expect(page.locator("article.from-assistant")).to_have_count(0)


def hold_rated_frames(route: WebSocketRoute) -> None:
    """Pass a page's socket through, minus the handoff_status saying the rating was given."""
    server = route.connect_to_server()

    def forward(message: str | bytes) -> None:
        if isinstance(message, str):
            frame = json.loads(message)
            data = frame.get("data") or {}
            if (
                frame.get("type") == "handoff_status"
                and data.get("status") == "resolved"
                and not data.get("ratingRequested")
            ):
                return
        route.send(message)

    server.on_message(forward)


def test_a_resolved_conversation_asks_for_stars_once(
    page: Page, fake_model: FakeOpenAIServer, agent: Agent, app_server: LiveServer
) -> None:
    session_id = open_chat(page)
    ask_for_a_person(page)
    expect(page.locator("#handoff-status")).to_have_text(re.compile(r"in the queue"))
    handoff_id = handoff_body(page, session_id)["handoffId"]
    agent.take(handoff_id)
    expect(page.locator("#handoff-status")).to_have_text("Alice is answering you.")
    # A second tab of the same conversation (same cookie), to rate after the first did. Every
    # tab stops asking once one has rated; this one is kept from hearing so (the frame held
    # back, as if still on its way) so that it sends a second rating for the server to refuse.
    other = page.context.new_page()
    other.route_web_socket(re.compile(r"/ws\?"), hold_rated_frames)
    open_chat(other)

    agent.resolve(handoff_id)
    stars = page.get_by_role("group", name="How did we do?")
    expect(stars).to_be_visible()
    expect(stars.get_by_role("radio")).to_have_count(5)
    expect(page.locator("#log .notice").last).to_have_text(
        "Alice marked this conversation resolved."
    )
    expect(page.get_by_role("button", name="Talk to a person")).to_be_enabled()

    stars.get_by_role("radio", name="4 stars").check()
    page.get_by_label("Anything you'd like to add? (optional)").fill("Quick and kind.")
    page.get_by_role("button", name="Send rating").click()
    expect(page.locator("#handoff-status")).to_have_text("Thanks for your rating.")
    expect(page.get_by_role("group", name="How did we do?")).to_have_count(0)
    stored = manage_shell(
        app_server,
        "from chat.models import Rating; "
        f"r = Rating.objects.get(session_id={session_id!r}); print(r.score, r.comment)",
    )
    assert stored == "4 Quick and kind."

    # The other tab still shows the form; the server refuses a second rating and says why.
    expect(other.get_by_role("group", name="How did we do?")).to_be_visible()
    other_stars = other.get_by_role("group", name="How did we do?")
    other_stars.get_by_role("radio", name="2 stars").check()
    other.get_by_role("button", name="Send rating").click()
    expect(other.locator("#rating-error")).not_to_be_empty()
    expect(other.locator("#rating-error")).to_be_visible()
    expect(other.locator("#handoff-status")).not_to_have_text("Thanks for your rating.")


def test_thumbs_toggle_and_a_thumbs_down_without_sources_asks_for_a_person(
    page: Page, fake_model: FakeOpenAIServer, app_server: LiveServer
) -> None:
    fake_model.script(Reply("Restart the sync client."))
    session_id = open_chat(page)
    send(page, "Sync is stuck")
    answer = page.locator("article.message.from-assistant")
    expect(answer.locator(".body")).to_have_text("Restart the sync client.")
    up = answer.get_by_role("button", name="This helped")
    down = answer.get_by_role("button", name="This did not help")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")

    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#handoff")).to_be_hidden()

    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    # The answer cited nothing: a person has been asked, and the panel says what happens now.
    expect(page.locator("#handoff-status")).to_have_text(
        re.compile(r"^No one from the team is available right now")
    )
    expect(down).to_be_focused()  # the panel appearing does not take the focus away
    body = handoff_body(page, session_id)
    assert (body["status"], body["reason"]) == ("waiting", "not_helpful")
    message_id = answer.get_attribute("data-message-id")
    stored = manage_shell(
        app_server,
        f"from chat.models import AnswerFeedback; print(AnswerFeedback.objects.get("
        f"message_id={message_id!r}).vote)",
    )
    assert stored == "down"


def test_new_conversation_clears_the_panel_and_shows_availability_again(
    page: Page, fake_model: FakeOpenAIServer
) -> None:
    old_session = open_chat(page)
    ask_for_a_person(page)
    expect(page.get_by_label("Email address")).to_be_visible()

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("body")).not_to_have_attribute("data-session-id", old_session)
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("#handoff")).to_be_hidden()
    expect(page.get_by_label("Email address")).to_have_count(0)
    expect(page.get_by_role("button", name="Talk to a person")).to_be_enabled()
    expect(page.locator("#availability")).to_have_text("No one from the team is online right now")
