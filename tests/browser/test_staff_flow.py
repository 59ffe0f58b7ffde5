"""The staff side of a hand-off in Chromium against the real server, with the customer's page in
one browser context and support agents signed in to the admin in others: the inbox filling live,
taking a conversation over, replying from a drafted reply, handing back to the assistant, the
ticket offer when nobody is online, two agents racing for one conversation, and staff without
the inbox permission being kept out of the page and its socket.

The agents are real accounts in the "Support agents" group (made after ``migrate``); they act
through the staff pages' own buttons, never through ``/api/staff/`` directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import WAIT_MS, manage_shell, open_chat, send
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
# username → (first name, group); carl is staff with no group, so no inbox permission.
STAFF = {
    "alice": ("Alice", "Support agents"),
    "bob": ("Bob", "Support agents"),
    "carl": ("Carl", ""),
}
HELD_FRAMES = {"handoff_status", "inbox_item"}
TICKET = re.compile(r"^Ticket TKT-[A-Z2-9]{8} opened; we'll reply to your address\.$")

# The messages of a conversation in seq order as (seq, role, text), from either page.
CUSTOMER_THREAD_JS = """() => Array.from(
    document.querySelectorAll("#log > [data-seq]")).map((el) => [
    Number(el.dataset.seq),
    el.matches(".from-user") ? "user" : el.matches(".from-staff") ? "staff"
        : el.matches(".from-system") ? "system" : "assistant",
    (el.querySelector(".body") || el).textContent.replace(/\\s+/g, " ").trim(),
])"""
AGENT_THREAD_JS = """() => Array.from(
    document.querySelectorAll("table.transcript > tbody > tr[data-seq]")).map((tr) => [
    Number(tr.dataset.seq),
    tr.className.match(/transcript-(\\w+)/)[1],
    tr.querySelector(".md").textContent.replace(/\\s+/g, " ").trim(),
])"""


@pytest.fixture(scope="module")
def staff_accounts(app_server: LiveServer) -> None:
    """Alice and Bob (support agents) and Carl (staff, no inbox permission), in one shell run.
    Presence is cleared too: on Redis, a server stopped by an earlier run may have left its
    agents' marks to expire (user ids repeat from one run's database to the next)."""
    manage_shell(
        app_server,
        "from chat import presence\n"
        "presence.clear()\n"
        "from django.contrib.auth.models import Group, User\n"
        f"for username, (first, group) in {STAFF!r}.items():\n"
        f"    user = User.objects.create_user(username, password={PASSWORD!r}, "
        "is_staff=True, first_name=first)\n"
        "    if group: user.groups.add(Group.objects.get(name=group))\n",
    )


SignIn = Callable[[str], Page]


@pytest.fixture
def sign_in_staff(
    browser: Browser, app_server: LiveServer, staff_accounts: None
) -> Iterator[SignIn]:
    """``sign_in(username)`` → a page of a fresh context signed in to the admin as that user;
    every context closes (and its agent goes offline) when the test ends."""
    contexts: list[BrowserContext] = []

    def sign_in(username: str) -> Page:
        context = browser.new_context(base_url=app_server.base_url)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/admin/login/")
        page.locator("#id_username").fill(username)
        page.locator("#id_password").fill(PASSWORD)
        page.locator("#id_password").press("Enter")
        page.wait_for_url(re.compile(r"/admin/$"))
        return page

    try:
        yield sign_in
    finally:
        for context in contexts:
            context.close()


def wait_for_humans(page: Page, session_id: str, available: bool) -> None:
    """Until the server counts someone as able to answer (or nobody): a staff socket marks its
    agent online a moment after it opens, and offline a moment after it closes."""
    page.wait_for_function(
        """async ([id, wanted]) => {
            const response = await fetch(`/api/session/${id}/handoff`);
            return (await response.json()).availability.humansAvailable === wanted;
        }""",
        arg=[session_id, available],
        timeout=WAIT_MS,
        polling=100,
    )


def handoff_id_of(page: Page, session_id: str) -> str:
    response = page.request.get(f"/api/session/{session_id}/handoff")
    assert response.status == 200, response.text()
    handoff_id = response.json()["handoffId"]
    assert isinstance(handoff_id, str) and handoff_id.startswith("hof_")
    return handoff_id


def ask_for_a_person(page: Page) -> None:
    talk = page.get_by_role("button", name="Talk to a person")
    expect(talk).to_be_enabled()
    talk.click()
    expect(talk).to_be_disabled()


def hold_state_frames(route: WebSocketRoute) -> None:
    """Pass a page's socket through, minus the frames that tell it a hand-off changed."""
    server = route.connect_to_server()

    def forward(message: str | bytes) -> None:
        if isinstance(message, str) and json.loads(message).get("type") in HELD_FRAMES:
            return
        route.send(message)

    server.on_message(forward)


def open_inbox(page: Page) -> None:
    page.goto("/admin/ops/inbox/")
    expect(page.locator("#inbox-live")).to_have_text(re.compile(r"^Live"))


def test_an_agent_takes_over_from_the_live_inbox_replies_from_a_draft_and_hands_back(
    page: Page, fake_model: FakeOpenAIServer, sign_in_staff: SignIn
) -> None:
    alice = sign_in_staff("alice")
    open_inbox(alice)
    # Set once: still there at the end means the inbox was never reloaded.
    alice.evaluate("() => { window.inboxNotReloaded = true; }")

    fake_model.script(Reply("Could you tell me the invoice number?"))
    session_id = open_chat(page)
    send(page, "I was charged twice this month")
    expect(page.locator("article.from-assistant .body")).to_have_text(
        "Could you tell me the invoice number?"
    )
    wait_for_humans(page, session_id, True)
    ask_for_a_person(page)
    expect(page.locator("#handoff-status")).to_have_text(re.compile(r"in the queue"))
    handoff_id = handoff_id_of(page, session_id)

    row = alice.locator(f'tr.inbox-item[data-handoff-id="{handoff_id}"]')
    expect(row).to_have_attribute("data-status", "waiting")
    expect(row.locator(".inbox-message a")).to_have_text("I was charged twice this month")
    assert alice.evaluate("() => window.inboxNotReloaded") is True

    row.locator(".inbox-message a").click()
    alice.wait_for_url(re.compile(rf"/admin/ops/conversations/{session_id}/$"))
    expect(alice.locator("#handoff-state")).to_have_text("The customer is waiting for a person.")
    expect(alice.locator("#reply-text")).to_be_disabled()
    alice.get_by_role("button", name="Take over").click()
    expect(alice.locator("#handoff-state")).to_have_text(
        "You are answering; the assistant is paused."
    )
    expect(alice.locator("#reply-text")).to_be_enabled()
    expect(alice.get_by_role("button", name="Take over")).to_be_hidden()
    expect(page.locator("#handoff-status")).to_have_text("Alice is answering you.")

    # The draft is the only model call of a held turn: scripted before the customer writes.
    fake_model.script(Reply("Refunds take 5 business days to reach your card."))
    send(page, "It is invoice INV-1042")
    expect(alice.locator("table.transcript tr.transcript-user").last).to_contain_text(
        "It is invoice INV-1042"
    )
    expect(alice.locator("#draft-text")).to_have_text(
        "Refunds take 5 business days to reach your card."
    )

    alice.get_by_role("button", name="Insert into reply").click()
    reply = alice.locator("#reply-text")
    expect(reply).to_have_value("Refunds take 5 business days to reach your card.")
    expect(reply).to_be_focused()
    reply.fill("I've refunded the second charge. Refunds take 5 business days to reach your card.")
    alice.get_by_role("button", name="Send").click()
    expect(reply).to_have_value("")
    expect(alice.locator("#draft")).to_be_hidden()

    staff = page.locator("article.message.from-staff")
    expect(staff.locator(".role")).to_have_text("Alice")
    expect(staff.locator(".body")).to_have_text(
        "I've refunded the second charge. Refunds take 5 business days to reach your card."
    )
    expect(page.locator("article.from-assistant")).to_have_count(1)  # the first answer only

    alice.get_by_role("button", name="Hand back to the assistant").click()
    expect(page.locator("#log .notice").last).to_have_text(
        "Alice left the conversation; the assistant is answering again."
    )
    expect(alice.locator("#handoff-state")).to_have_text(
        "Assigned to you; the assistant answers until you take over."
    )
    expect(alice.locator("#reply-text")).to_be_disabled()

    fake_model.script(Reply("You're welcome! Anything else I can help with?"))
    send(page, "Thanks, that's all")
    expect(page.locator("article.from-assistant .body").last).to_have_text(
        "You're welcome! Anything else I can help with?"
    )
    expect(alice.locator("table.transcript tr.transcript-assistant").last).to_contain_text(
        "You're welcome!"
    )

    page.reload()
    expect(page.locator("#status")).to_have_text("Connected")
    expect(page.locator("#log > article.message")).to_have_count(6)
    alice.reload()
    expect(alice.locator("table.transcript > tbody > tr[data-seq]")).to_have_count(6)
    customer_thread = page.evaluate(CUSTOMER_THREAD_JS)
    agent_thread = alice.evaluate(AGENT_THREAD_JS)
    assert customer_thread == agent_thread
    seqs = [seq for seq, _, _ in customer_thread]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [(role, text) for _, role, text in customer_thread] == [
        ("user", "I was charged twice this month"),
        ("assistant", "Could you tell me the invoice number?"),
        ("user", "It is invoice INV-1042"),
        (
            "staff",
            "I've refunded the second charge. Refunds take 5 business days to reach your card.",
        ),
        ("user", "Thanks, that's all"),
        ("assistant", "You're welcome! Anything else I can help with?"),
    ]


def test_with_nobody_online_the_request_offers_a_ticket_by_email(
    page: Page, fake_model: FakeOpenAIServer
) -> None:
    session_id = open_chat(page)
    wait_for_humans(page, session_id, False)
    ask_for_a_person(page)
    email = page.get_by_label("Email address")
    expect(email).to_be_visible()
    email.fill("someone@example.com")
    page.get_by_role("button", name="Open a ticket").click()
    status = page.locator("#handoff-status")
    expect(status).to_have_text(TICKET)
    response = page.request.get(f"/api/session/{session_id}/handoff")
    ticket_id = response.json()["ticketId"]
    assert ticket_id and ticket_id in (status.text_content() or "")


def test_a_second_agent_is_told_who_holds_the_conversation(
    page: Page, fake_model: FakeOpenAIServer, sign_in_staff: SignIn
) -> None:
    alice = sign_in_staff("alice")
    bob = sign_in_staff("bob")
    open_inbox(alice)
    session_id = open_chat(page)
    wait_for_humans(page, session_id, True)
    ask_for_a_person(page)
    expect(page.locator("#handoff-status")).to_have_text(re.compile(r"in the queue"))

    # Bob clicks before his page has heard that Alice took it: the frames that would tell it
    # (handoff_status, inbox_item) are held back, as if still on their way.
    bob.route_web_socket(re.compile(r"/ws(/staff|\?)"), hold_state_frames)
    conversation = f"/admin/ops/conversations/{session_id}/"
    alice.goto(conversation)
    bob.goto(conversation)
    alice.get_by_role("button", name="Take over").click()
    expect(page.locator("#handoff-status")).to_have_text("Alice is answering you.")
    expect(bob.locator("#handoff-state")).to_have_text("The customer is waiting for a person.")

    bob.get_by_role("button", name="Take over").click()
    expect(bob.locator("#action-error")).to_have_text("Alice holds this conversation.")
    # The refusal said who holds it: Bob's page shows that now, without the buttons he may not use.
    expect(bob.locator("#handoff-state")).to_have_text(
        "Alice is answering; the assistant is paused."
    )
    expect(bob.get_by_role("button", name="Take over")).to_be_hidden()
    expect(bob.get_by_role("button", name="Resolve")).to_be_hidden()
    expect(bob.locator("#reply-text")).to_be_disabled()
    expect(bob.locator("#reply-hint")).to_have_text("Alice is answering; only they can reply.")
    expect(page.locator("#handoff-status")).to_have_text("Alice is answering you.")
    expect(alice.locator("#handoff-state")).to_have_text(
        "You are answering; the assistant is paused."
    )


def test_staff_without_the_inbox_permission_get_neither_the_page_nor_the_socket(
    sign_in_staff: SignIn,
) -> None:
    carl = sign_in_staff("carl")
    response = carl.goto("/admin/ops/inbox/")
    assert response is not None and response.status == 403
    refused = carl.evaluate(
        """() => new Promise((resolve) => {
            const frames = [];
            const socket = new WebSocket(`ws://${location.host}/ws/staff`);
            socket.onmessage = (event) => frames.push(JSON.parse(event.data));
            socket.onclose = (event) => resolve({ code: event.code, frames });
        })"""
    )
    assert refused["code"] == 4003
    assert [frame["type"] for frame in refused["frames"]] == ["error"]
    assert refused["frames"][0]["data"]["code"] == "ACCESS_DENIED"
