"""The staff pages of hand-offs in the admin: the inbox, a conversation, the links to them, and
the escalation state on every session list."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from chat.handoff import request_handoff
from chat.models import AnswerFeedback, ChatSession, Handoff, HandoffNote, Message, Rating
from chat.takeover import resolve, take_over

pytestmark = pytest.mark.django_db


def user_in(group: str | None, username: str) -> User:
    user = User.objects.create_user(
        username, password="pw", is_staff=True, first_name=username.title()
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def waiting() -> ChatSession:
    session = ChatSession.objects.create(user_id="cust-7")
    Message.objects.create(
        session=session, seq=1, role="user", content="My sync stopped <b>today</b>."
    )
    request_handoff(session_id=session.pk, reason=Handoff.Reason.CUSTOMER)
    return session


def test_the_inbox_lists_waiting_customers_for_an_agent(waiting) -> None:
    page = logged_in(user_in("Support agents", "alice")).get(reverse("ops:inbox"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "My sync stopped &lt;b&gt;today&lt;/b&gt;." in html  # escaped, never markup
    assert 'data-status="waiting"' in html
    assert reverse("ops:conversation", args=[waiting.pk]) in html


def test_an_agent_does_not_see_a_colleagues_item_but_a_supervisor_does(waiting) -> None:
    bob = user_in("Support agents", "bob")
    take_over(handoff_id=Handoff.objects.get().pk, agent=bob)
    alice_page = logged_in(user_in("Support agents", "alice")).get(reverse("ops:inbox"))
    assert 'data-status="with_agent"' not in alice_page.content.decode()
    boss_page = logged_in(user_in("Supervisors", "sue")).get(reverse("ops:inbox"))
    assert 'data-status="with_agent"' in boss_page.content.decode()
    mine = logged_in(bob).get(reverse("ops:inbox") + "?view=mine")
    assert 'data-status="with_agent"' in mine.content.decode()


def test_resolved_items_leave_the_queue_for_the_recent_list_with_their_rating(waiting) -> None:
    alice = user_in("Support agents", "alice")
    item = Handoff.objects.get()
    take_over(handoff_id=item.pk, agent=alice)
    resolve(handoff_id=item.pk, agent=alice)
    Rating.objects.create(session=waiting, handoff=item, score=4, comment="Quick", agent="Alice")
    html = logged_in(alice).get(reverse("ops:inbox")).content.decode()
    assert 'class="inbox-item' not in html  # no longer in the queue
    assert "Resolved in the last 24 hours (1)" in html
    assert f'class="inbox-resolved-item" data-handoff-id="hof_{item.pk}"' in html
    assert "4/5: Quick" in html


def test_staff_without_the_inbox_permission_are_refused(waiting) -> None:
    plain = logged_in(user_in(None, "carl"))
    assert plain.get(reverse("ops:inbox")).status_code == 403
    assert plain.get(reverse("ops:conversation", args=[waiting.pk])).status_code == 403
    anonymous = Client().get(reverse("ops:inbox"))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_the_conversation_page_shows_customer_tickets_notes_and_earlier_sessions(waiting) -> None:
    earlier = ChatSession.objects.create(user_id="cust-7", summary="Asked about invoices")
    alice = user_in("Support agents", "alice")
    HandoffNote.objects.create(session=waiting, author="Bob", text="VIP <script>x</script>")
    page = logged_in(alice).get(reverse("ops:conversation", args=[waiting.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "cust-7" in html and "claimed, not verified" in html
    assert reverse("ops:conversation", args=[earlier.pk]) in html
    assert "VIP &lt;script&gt;x&lt;/script&gt;" in html
    assert 'data-action="take"' in html and 'id="reply-text"' in html
    assert "<script>x</script>" not in html


def test_the_conversation_page_shows_the_customers_rating_and_answer_votes(waiting) -> None:
    answer = Message.objects.create(session=waiting, seq=2, role="assistant", content="Try again.")
    Rating.objects.create(session=waiting, score=2, comment="Slow <i>reply</i>", agent="Bob")
    AnswerFeedback.objects.create(session=waiting, message=answer, vote="down", had_source=False)
    page = logged_in(user_in("Support agents", "alice")).get(
        reverse("ops:conversation", args=[waiting.pk])
    )
    html = page.content.decode()
    assert "2/5 for Bob: Slow &lt;i&gt;reply&lt;/i&gt;" in html
    assert "Message #2: 👎 not helpful · answer had no source" in html


def test_an_unknown_conversation_is_a_404() -> None:
    alice = user_in("Support agents", "alice")
    response = logged_in(alice).get(reverse("ops:conversation", args=["sess_" + "Z" * 32]))
    assert response.status_code == 404


def test_the_index_and_the_sidebar_link_the_inbox(waiting) -> None:
    client = logged_in(user_in("Support agents", "alice"))
    index = client.get(reverse("admin:index")).content.decode()
    assert 'id="ops-inbox-link"' in index and "1 waiting, 1 open" in index
    sessions = client.get(reverse("admin:chat_chatsession_changelist")).content.decode()
    assert 'id="ops-pages"' in sessions and reverse("ops:inbox") in sessions


def test_session_lists_show_and_filter_the_escalation_state(waiting) -> None:
    other = ChatSession.objects.create()
    client = logged_in(user_in("Support agents", "alice"))
    url = reverse("admin:chat_chatsession_changelist")
    handed = client.get(url + "?escalated=handoff").content.decode()
    assert waiting.pk in handed and other.pk not in handed
    neither = client.get(url + "?escalated=none").content.decode()
    assert other.pk in neither and waiting.pk not in neither
    assert "Waiting" in handed


def test_agent_actions_are_in_the_admin_history(waiting) -> None:
    alice = user_in("Support agents", "alice")
    item = Handoff.objects.get()
    take_over(handoff_id=item.pk, agent=alice)
    entry = LogEntry.objects.get(object_id=str(item.pk))
    assert (entry.user_id, entry.change_message) == (alice.pk, "Took over the conversation.")
