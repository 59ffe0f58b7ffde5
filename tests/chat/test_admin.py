"""The conversation admin: read-only lists and a transcript in seq order with nothing executable."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import ChatSession, Message

SCRIPT = "<script>alert('xss')</script>"


@pytest.fixture
def staff_client() -> Client:
    """A staff member who may view (not change) sessions and messages."""
    user = User.objects.create_user("agent", "agent@example.com", "pw-agent-1234", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="chat", codename__in=["view_chatsession", "view_message"]
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def conversation() -> ChatSession:
    session = ChatSession.objects.create(user_id="customer-42", message_count=4, total_tokens=57)
    # Created out of order: the page must order by seq, not by insertion or time.
    rows: list[tuple[int, str, str, dict[str, Any]]] = [
        (3, Message.Role.ASSISTANT, "Third: ticket TKT-1 is open.", {"model": "m1"}),
        (1, Message.Role.USER, "First: my order is late", {"status": Message.Status.ANSWERED}),
        (4, Message.Role.USER, SCRIPT, {"status": Message.Status.PENDING}),
        (
            2,
            Message.Role.ASSISTANT,
            "Second: let me check.",
            {
                "model": "m1",
                "total_tokens": 57,
                "processing_ms": 812,
                "tool_calls": [
                    {"name": "fetch_status", "arguments": {"q": '<img src=x onerror="boom()">'}}
                ],
            },
        ),
    ]
    for seq, role, content, extra in rows:
        Message.objects.create(session=session, seq=seq, role=role, content=content, **extra)
    return session


def _change_url(session: ChatSession) -> str:
    return reverse("admin:chat_chatsession_change", args=[quote(session.pk)])


@pytest.mark.django_db
def test_session_changelist_lists_sessions_for_staff(staff_client, conversation):
    response = staff_client.get(reverse("admin:chat_chatsession_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert conversation.pk in html
    assert "customer-42" in html
    assert _change_url(conversation) in html


@pytest.mark.django_db
def test_session_changelist_filters_and_searches(staff_client, conversation):
    ended = ChatSession.objects.create(user_id="someone-else", status=ChatSession.Status.ENDED)
    url = reverse("admin:chat_chatsession_changelist")

    by_status = staff_client.get(url, {"status__exact": "ended"}).content.decode()
    by_user = staff_client.get(url, {"q": "customer-42"}).content.decode()
    by_id = staff_client.get(url, {"q": ended.pk}).content.decode()

    assert ended.pk in by_status and conversation.pk not in by_status
    assert conversation.pk in by_user and ended.pk not in by_user
    assert ended.pk in by_id and conversation.pk not in by_id


@pytest.mark.django_db
def test_session_changelist_query_count_does_not_grow_with_sessions(staff_client, conversation):
    url = reverse("admin:chat_chatsession_changelist")
    staff_client.get(url)  # warm up (content types, permissions)
    with CaptureQueriesContext(connection) as one:
        staff_client.get(url)
    for n in range(5):
        ChatSession.objects.create(user_id=f"u{n}")
    with CaptureQueriesContext(connection) as six:
        staff_client.get(url)
    assert len(six) == len(one)


@pytest.mark.django_db
def test_transcript_is_in_seq_order_with_details_and_escaped(staff_client, conversation):
    response = staff_client.get(_change_url(conversation))

    assert response.status_code == 200
    html = response.content.decode()
    positions = [html.index(text) for text in ("First:", "Second:", "Third:", "&lt;script&gt;")]
    assert positions == sorted(positions)
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in html
    assert '<img src=x onerror="boom()">' not in html
    assert "&lt;img src=x onerror=" in html  # the tool call is shown, as text
    assert "fetch_status" in html
    assert "812 ms" in html
    assert "m1" in html
    assert "Answered" in html and "Pending" in html
    # Read-only: no form fields to edit and no save button.
    assert not re.search(r'<(input|textarea)[^>]+name="(content|summary|user_id)"', html)
    assert 'name="_save"' not in html


@pytest.mark.django_db
def test_staff_cannot_add_change_or_delete_sessions(staff_client, conversation):
    assert staff_client.get(reverse("admin:chat_chatsession_add")).status_code == 403
    response = staff_client.post(_change_url(conversation), {"user_id": "tampered"})
    assert response.status_code == 403
    delete_url = reverse("admin:chat_chatsession_delete", args=[quote(conversation.pk)])
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    conversation.refresh_from_db()
    assert conversation.user_id == "customer-42"


@pytest.mark.django_db
def test_superuser_also_gets_a_read_only_page(conversation):
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-root-1234")
    client = Client()
    client.force_login(admin_user)
    html = client.get(_change_url(conversation)).content.decode()
    assert 'name="_save"' not in html
    assert client.get(reverse("admin:chat_chatsession_add")).status_code == 403


@pytest.mark.django_db
def test_message_admin_lists_and_filters_by_role(staff_client, conversation):
    url = reverse("admin:chat_message_changelist")

    users_only = staff_client.get(url, {"role__exact": "user"})

    assert users_only.status_code == 200
    html = users_only.content.decode()
    assert "First: my order is late" not in html  # the list shows metadata, not content
    ids = set(Message.objects.filter(role="user").values_list("id", flat=True))
    other_ids = set(Message.objects.exclude(role="user").values_list("id", flat=True))
    assert all(message_id in html for message_id in ids)
    assert not any(message_id in html for message_id in other_ids)
    assert staff_client.get(url, {"model__exact": "m1"}).status_code == 200
    message = Message.objects.get(seq=4)
    page = staff_client.get(reverse("admin:chat_message_change", args=[quote(message.pk)]))
    assert page.status_code == 200
    assert SCRIPT not in page.content.decode()


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page(conversation):
    response = Client().get(_change_url(conversation))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.django_db
def test_a_live_session_page_follows_the_conversation(staff_client, conversation):
    html = staff_client.get(_change_url(conversation)).content.decode()
    assert re.search(r'<script src="[^"]*chat/watch\.js"[^>]*type="module"', html)
    assert f'class="transcript-live" data-session-id="{conversation.pk}"' in html
    assert 'data-seq="1"' in html and 'data-seq="4"' in html

    conversation.status = ChatSession.Status.ENDED
    conversation.save()
    html = staff_client.get(_change_url(conversation)).content.decode()
    assert "transcript-live" not in html  # nothing to follow
