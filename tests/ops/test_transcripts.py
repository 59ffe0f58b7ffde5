"""The staff transcript shows a conversation as the customer sees it (rendered Markdown, sources,
tool calls, the agent's name) with nothing executable, and its live rows come from the server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from chat.models import ChatSession, Message

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert('xss')</script>"
ANSWER = """Here is what to do:

1. Open **Settings**
2. Choose [Billing](https://example.com/billing)

| Plan | Price |
|------|-------|
| Pro  | 12 €  |
"""
CITATIONS = [
    {"id": "kb_1", "title": "Billing FAQ", "url": "https://help.example.com/billing"},
    {"id": "kb_2", "title": "Bad source", "url": "javascript:alert(1)"},
]
TOOL_CALLS = [
    {"id": "call_1", "tool": "kb.search", "arguments": {"query": "<b>billing</b>"}},
    {"id": "call_2", "tool": "create_ticket", "arguments": {}, "result": {"ticketId": "TKT-9"}},
]


def staff_client(*codenames: str) -> Client:
    user = User.objects.create_user("agent", "agent@example.com", "pw-agent-1234", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="chat", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    return staff_client("view_chatsession", "view_message")


def conversation(*messages: tuple[str, str, dict[str, Any]]) -> ChatSession:
    session = ChatSession.objects.create(user_id="customer-7")
    for seq, (role, content, extra) in enumerate(messages, start=1):
        Message.objects.create(session=session, seq=seq, role=role, content=content, **extra)
    return session


@pytest.fixture
def session() -> ChatSession:
    return conversation(
        (Message.Role.USER, f"How do I pay? {SCRIPT} <img src=x onerror=boom()>", {}),
        (
            Message.Role.ASSISTANT,
            ANSWER,
            {"tool_calls": TOOL_CALLS, "metadata": {"citations": CITATIONS}, "model": "m1"},
        ),
        (
            Message.Role.STAFF,
            "I'm **Alice**, I can help.",
            {"metadata": {"agent": {"name": "Alice"}}},
        ),
    )


def page(client: Client, session: ChatSession) -> str:
    response = client.get(reverse("admin:chat_chatsession_change", args=[quote(session.pk)]))
    assert response.status_code == 200
    return response.content.decode()


def row(html: str, seq: int) -> str:
    """The transcript's row ``seq`` (a message's own table ends its rows differently)."""
    found = re.search(rf'<tr [^>]*data-seq="{seq}".*?</td></tr>\n', html, re.S)
    assert found is not None, seq
    return found.group(0)


def rows_url(session: ChatSession, after: str | int | None = None) -> str:
    url = reverse("ops:transcript_rows", args=[session.pk])
    return url if after is None else f"{url}?after={after}"


# --- the session page ----------------------------------------------------------------------------


def test_an_answer_shows_its_markdown_rendered(viewer, session):
    answer = row(page(viewer, session), 2)
    assert '<div class="md"><p>Here is what to do:</p>' in answer
    assert "<ol>\n<li>Open <strong>Settings</strong></li>" in answer
    assert (
        '<a href="https://example.com/billing" target="_blank" '
        'rel="noopener noreferrer nofollow">Billing</a>'
    ) in answer
    assert "<th>Plan</th>" in answer and "<td>12 €</td>" in answer


def test_sources_are_links_under_the_answer(viewer, session):
    answer = row(page(viewer, session), 2)
    sources = re.search(r'<div class="transcript-sources">(.*?)</div>', answer, re.S)
    assert sources is not None
    assert "Sources" in sources.group(1)
    assert (
        '<a href="https://help.example.com/billing" rel="noopener noreferrer nofollow" '
        'target="_blank">Billing FAQ</a>'
    ) in sources.group(1)
    # A source whose URL is not a web address is named, never linked.
    assert "<li>Bad source</li>" in sources.group(1)
    assert "javascript:" not in answer


def test_tool_calls_are_folded_in_a_closed_details(viewer, session):
    answer = row(page(viewer, session), 2)
    details = re.search(
        r"<details([^>]*)><summary>(.*?)</summary><pre>(.*?)</pre></details>", answer, re.S
    )
    assert details is not None
    assert "open" not in details.group(1)
    assert details.group(2) == "Tool calls: kb.search, create_ticket"
    assert "&quot;ticketId&quot;: &quot;TKT-9&quot;" in details.group(3)
    assert "&lt;b&gt;billing&lt;/b&gt;" in details.group(3)


def test_a_staff_reply_shows_the_agents_name(viewer, session):
    reply = row(page(viewer, session), 3)
    assert re.match(
        r'<tr class="transcript-staff" data-seq="3"><td>3</td><td>Alice \(staff\)</td>', reply
    )
    assert "<p>I&#x27;m <strong>Alice</strong>, I can help.</p>" in reply


def test_a_staff_reply_without_an_agent_is_staff(viewer):
    session = conversation((Message.Role.STAFF, "Hello", {}))
    assert "<td>1</td><td>Staff</td>" in page(viewer, session)


def test_no_script_from_a_message_reaches_the_page(viewer, session):
    html = page(viewer, session)
    question = row(html, 1)
    assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in question
    assert "&lt;img src=x onerror=boom()&gt;" in question
    assert SCRIPT not in html
    assert "<img src=x" not in html
    assert "onerror=boom" not in html.replace("&lt;img src=x onerror=boom()&gt;", "")


def test_the_page_links_its_styles_and_tells_watch_js_where_rows_are(viewer, session):
    html = page(viewer, session)
    assert re.search(r'<link rel="stylesheet" href="[^"]*ops/transcript\.css">', html)
    assert (
        f'class="transcript-live" data-session-id="{session.pk}" '
        f'data-rows-url="{rows_url(session)}"'
    ) in html
    assert '<div class="transcript-scroll"><table class="transcript detail-transcript">' in html


# --- the live rows -------------------------------------------------------------------------------


def test_rows_view_returns_only_the_rows_after_a_seq(viewer, session):
    response = viewer.get(rows_url(session, 1))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["X-More-Rows"] == "0"
    body = response.content.decode()
    assert re.findall(r'<tr class="[^"]*" data-seq="(\d+)"', body) == ["2", "3"]
    assert body.lstrip().startswith("<tr ")
    assert "<th>#</th>" not in body and "transcript-live" not in body and "<link" not in body
    # The same row as the page's: the detail columns and the folded tool calls.
    assert row(body, 2) == row(page(viewer, session), 2)
    assert SCRIPT not in body


def test_rows_view_after_the_last_seq_is_empty(viewer, session):
    response = viewer.get(rows_url(session, 3))
    assert response.status_code == 200
    assert "<tr" not in response.content.decode()
    assert viewer.get(rows_url(session)).content.decode().count('data-seq="') == 3


def test_rows_view_pages_by_200(viewer):
    session = ChatSession.objects.create()
    Message.objects.bulk_create(
        Message(session=session, seq=seq, role=Message.Role.USER, content=f"m{seq}")
        for seq in range(1, 206)
    )
    first = viewer.get(rows_url(session, 0))
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', first.content.decode())]
    assert seqs == list(range(1, 201))
    assert first["X-More-Rows"] == "1"
    rest = viewer.get(rows_url(session, 200))
    assert re.findall(r'data-seq="(\d+)"', rest.content.decode()) == [
        str(s) for s in range(201, 206)
    ]
    assert rest["X-More-Rows"] == "0"


@pytest.mark.parametrize("after", ["abc", "-1", "", "1.5", "99999999999", "%EF%BC%91"])
def test_rows_view_refuses_a_bad_after(viewer, session, after):
    response = viewer.get(rows_url(session, after))
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")


def test_rows_view_needs_the_view_message_permission(session):
    client = staff_client("view_chatsession")
    response = client.get(rows_url(session, 0))
    assert response.status_code == 403
    assert "How do I pay" not in response.content.decode()


def test_rows_view_is_not_reachable_anonymously(session):
    response = Client().get(rows_url(session, 0))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_rows_view_of_an_unknown_session_is_404(viewer):
    response = viewer.get(reverse("ops:transcript_rows", args=["sess_missing"]) + "?after=0")
    assert response.status_code == 404


def test_rows_view_only_answers_get(viewer, session):
    assert viewer.post(rows_url(session, 0)).status_code == 405
