"""The cast of the subject-request tests: a person with something of every kind held about them
(a live conversation with its hand-off, note, draft, rating and vote, archived once; an older
conversation that expired and exists only as its archive, with a ticket, a review item and a
workflow; a usage day; admin history), and another person who must come through untouched.

Everything the person wrote carries ``MARK``, so a test can search any document, receipt, log or
storage object for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.db.models import Model
from django.utils import timezone

from chat.archives import write_archive
from chat.models import (
    AnswerFeedback,
    ChatSession,
    Handoff,
    HandoffNote,
    Message,
    Rating,
    ReplyDraft,
    ReviewItem,
    SessionArchive,
)
from supportbot.models import UsageDay
from tools.models import Ticket, TicketUpdate, WorkflowExecution

USER_ID = "cust-4711"
EMAIL = "Jane.Doe@Example.com"
MARK = "Zanzibar-parcel-81"
OTHER_USER_ID = "cust-0042"
OTHER_EMAIL = "someone.else@example.org"
OTHER_MARK = "Reykjavik-kettle-17"

# What ``find_holdings`` counts for the person, by userId and by e-mail address.
BY_USER_ID = {
    "sessions": 1,
    "messages": 2,
    "handoffs": 1,
    "notes": 1,
    "drafts": 1,
    "ratings": 1,
    "answer_votes": 1,
    "archives": 2,
    "tickets": 2,
    "ticket_updates": 2,
    "review_items": 1,
    "workflow_executions": 1,
    "usage_days": 1,
    "admin_history": 3,
}
# By address: the live conversation (its hand-off and ticket give the address) and its archive;
# the expired one named no address anywhere, so it is not found this way.
BY_EMAIL = {
    **BY_USER_ID,
    "archives": 1,
    "tickets": 1,
    "ticket_updates": 1,
    "review_items": 0,
    "workflow_executions": 0,
    "usage_days": 0,
    "admin_history": 2,
}


@dataclass
class Person:
    live: ChatSession  # in the database, ended and archived (rows kept)
    expired_id: str  # only its archive (and what is keyed by its id) remains
    archives: list[SessionArchive]
    tickets: list[Ticket]


def agent() -> User:
    user, _ = User.objects.get_or_create(username="agent-ana", defaults={"is_staff": True})
    return user


def conversation(user_id: str, question: str, answer: str) -> tuple[ChatSession, Message]:
    """An ended two-message session; returns it and its answer."""
    now = timezone.now()
    session = ChatSession.objects.create(
        user_id=user_id,
        status=ChatSession.Status.ENDED,
        ended_at=now,
        message_count=2,
        last_seq=2,
        metadata={"plan": "pro"},
    )
    Message.objects.create(session=session, seq=1, role="user", content=question)
    reply = Message.objects.create(session=session, seq=2, role="assistant", content=answer)
    return session, reply


def ticket(session_id: str, title: str, email: str = "") -> Ticket:
    made = Ticket.objects.create(
        session_id=session_id,
        title=title,
        description=f"{title}: the customer's words.",
        user_email=email,
        estimated_resolution=timezone.now() + timedelta(days=1),
    )
    TicketUpdate.objects.create(ticket=made, kind=TicketUpdate.Kind.NOTE, message=f"Re {title}")
    return made


def log(obj: Model, message: str) -> None:
    LogEntry.objects.log_actions(
        user_id=agent().pk, queryset=[obj], action_flag=CHANGE, change_message=message
    )


def person(user_id: str = USER_ID, email: str = EMAIL, mark: str = MARK) -> Person:
    """The person: ``BY_USER_ID`` of everything, ``BY_EMAIL`` of it found by address."""
    live, reply = conversation(user_id, f"Where is my {mark}?", f"Your {mark} is on its way.")
    first = ticket(live.pk, f"Lost {mark}", email=email)
    handoff = Handoff.objects.create(
        session=live,
        status=Handoff.Status.RESOLVED,
        note=f"Please call about the {mark}",
        contact_email=email,
        ticket_id=first.pk,
        assignee=agent(),
        resolved_at=timezone.now(),
    )
    HandoffNote.objects.create(session=live, author="agent-ana", text=f"Asked twice: {mark}")
    ReplyDraft.objects.create(session=live, content=f"Draft about {mark}", outcome="sent")
    Rating.objects.create(session=live, handoff=handoff, score=4, comment=f"Thanks for {mark}")
    AnswerFeedback.objects.create(session=live, message=reply, vote="up")
    log(handoff, "Took over the conversation.")
    log(first, f"Status changed ({mark}).")
    archives = [write_archive(session_id=live.pk, reason="ended")]

    expired, _ = conversation(user_id, f"My {mark} again", "Let me check.")
    second = ticket(expired.pk, f"Second {mark}")
    log(second, "Priority raised.")
    ReviewItem.objects.create(
        session_id=expired.pk,
        kind=ReviewItem.Kind.PII,
        action=ReviewItem.Action.REDACTED,
        categories=["phone"],
        excerpt=f"My {mark}, call me on [PHONE]",
    )
    WorkflowExecution.objects.create(
        workflow_type="escalation",
        session_id=expired.pk,
        idempotency_key="k1",
        parameters={"query": f"escalate {mark}"},
    )
    archives.append(write_archive(session_id=expired.pk, reason="expired"))
    ChatSession.objects.filter(pk=expired.pk).delete()  # as expiry does, once archived
    UsageDay.objects.create(day=timezone.now().date(), user_id=user_id, turns=3)
    return Person(live=live, expired_id=expired.pk, archives=archives, tickets=[first, second])


def other_person() -> Person:
    """Someone else, with the same kinds of data, who must survive every erasure above."""
    return person(OTHER_USER_ID, OTHER_EMAIL, OTHER_MARK)
