"""A conversation between the bot and a person: hand-off requests, the queue, take-over, replies.

A conversation needs a person when the customer asks (page button, REST, WebSocket, or the model's
``request_human`` tool), when the escalation workflow runs, when a source-less answer did not
help, or when staff pick it up. Each becomes one ``Handoff`` (the inbox item); requests are
idempotent: a session has at most one open item, enforced by the database.

The item's state is mirrored on its session (``handoff_status``, ``bot_paused``) inside the same
transaction, so a turn, which locks the session row anyway, knows for free whether the bot may
answer (``chat.store.bot_is_held``). Taking a conversation over is an atomic claim on the item
row: of two agents, the second is refused and told who holds it.

The customer is told the truth: the queue position and a typical wait measured from recent
hand-offs when an agent is online within support hours (``chat.presence``, ``chat.hours``);
otherwise when agents are back and an offer to open a ticket for an address they give in a
structured field. Every change reaches the customer's sockets (``handoff_status``, notices) and
the staff inbox through ``chat.events`` once committed.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chat import events, wire
from chat.guards import current_allowlist, redact_text
from chat.guards.validation import unstorable
from chat.handoff_state import Availability, HandoffView
from chat.handoff_summary import handoff_summary
from chat.hours import support_hours
from chat.models import ChatSession, Handoff, Message
from chat.presence import agents_online
from chat.store import OPEN_HANDOFF_STATES, locked_session
from chat.tasks import summarise_handoff_task
from supportbot import metrics
from supportbot.db import write_transaction
from supportbot.errors import ApiError
from tools.models import Ticket
from tools.tickets import TicketData, ticket_create

log = structlog.get_logger("chat.handoff")

OPEN_STATES = OPEN_HANDOFF_STATES
PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2, "urgent": 3}
DEFAULT_PRIORITY: dict[str, str] = {
    Handoff.Reason.CUSTOMER: "medium",
    Handoff.Reason.ESCALATION: "high",
    Handoff.Reason.NOT_HELPFUL: "low",
    Handoff.Reason.STAFF: "medium",
}
MAX_NOTE_CHARS = 1000
MAX_CONTACT_CHARS = 254
# The typical wait is the median of the last hand-offs taken within this window; with fewer than
# WAIT_SAMPLE_MIN of them there is nothing honest to say.
WAIT_WINDOW = timedelta(days=14)
WAIT_SAMPLE = 50
WAIT_SAMPLE_MIN = 3
# Customers still waiting are told their new position after each change, up to this many.
REQUEUE_NOTIFY_LIMIT = 50


@dataclass(frozen=True)
class HandoffRequest:
    handoff: Handoff
    created: bool  # False: the open item existed (requests are idempotent)
    status: dict[str, Any]


def current_availability(*, now: datetime | None = None) -> Availability:
    return Availability(support_hours(now=now), agents_online())


def typical_wait_seconds(*, now: datetime | None = None) -> int | None:
    """The median wait (request to take-over) of recent hand-offs, or None without enough."""
    since = (now or timezone.now()) - WAIT_WINDOW
    pairs = list(
        Handoff.objects.filter(taken_at__gte=since, reason__in=_QUEUED_REASONS)
        .order_by("-taken_at")
        .values_list("requested_at", "taken_at")[:WAIT_SAMPLE]
    )
    if len(pairs) < WAIT_SAMPLE_MIN:
        return None
    return round(
        statistics.median((taken - asked).total_seconds() for asked, taken in pairs if taken)
    )


# Staff picking a conversation up never waited in the queue: it would bias the typical wait.
_QUEUED_REASONS = [r for r in Handoff.Reason.values if r != Handoff.Reason.STAFF]


def queue_position(handoff: Handoff) -> int | None:
    """1 for the next customer to be picked up; None when not waiting."""
    if handoff.status != Handoff.Status.WAITING:
        return None
    # Ordered as publish_handoff orders the queue: by request time, then by id.
    ahead = (
        Handoff.objects.filter(status=Handoff.Status.WAITING)
        .filter(
            Q(requested_at__lt=handoff.requested_at)
            | Q(requested_at=handoff.requested_at, pk__lt=handoff.pk)
        )
        .count()
    )
    return ahead + 1


def _latest(session_id: str) -> Handoff | None:
    return (
        Handoff.objects.filter(session_id=session_id)
        .select_related("assignee")
        .order_by("-requested_at", "-pk")
        .first()
    )


def handoff_view(*, session: ChatSession, availability: Availability | None = None) -> HandoffView:
    handoff = _latest(session.pk)
    rating_requested = False
    if handoff is not None and handoff.status == Handoff.Status.RESOLVED:
        rating_requested = not hasattr(handoff, "rating")
    return HandoffView(
        session_id=session.pk,
        handoff=handoff,
        availability=availability or current_availability(),
        position=queue_position(handoff) if handoff is not None else None,
        typical_wait_seconds=typical_wait_seconds()
        if handoff is not None and handoff.status == Handoff.Status.WAITING
        else None,
        rating_requested=rating_requested,
        bot_paused=session.bot_paused,
    )


def handoff_status(*, session_id: str) -> dict[str, Any]:
    """The customer's ``handoffStatus`` body (GET /api/session/{id}/handoff)."""
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None or session.is_restored:
        raise ApiError("SESSION_NOT_FOUND", "No such session, or it has expired.")
    return wire.handoff_status(handoff_view(session=session))


# --- the customer asks -------------------------------------------------------------------------


def clean_customer_text(value: Any, *, field: str, limit: int, session_id: str) -> str:
    """An optional text the customer adds (a hand-off's reason, a rating's comment) as it may be
    stored: a string within ``limit`` characters that can be stored, trimmed, PII redacted."""
    if not isinstance(value, str):
        raise ApiError(
            "INVALID_FIELD_VALUE", f"{field} must be a string.", details={"field": field}
        )
    if len(value) > limit:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"{field} is {len(value)} characters long; the limit is {limit}.",
            details={"field": field, "maxLength": limit, "length": len(value)},
        )
    problem = unstorable(value)
    if problem:
        raise ApiError("INVALID_FIELD_VALUE", f"{field} {problem}.", details={"field": field})
    value = value.strip()
    if not value:
        return ""
    return redact_text(value, current_allowlist(), session_id=session_id, field=field)


def clean_contact_email(value: Any) -> str:
    """A contact address given in the structured field, or INVALID_FIELD_VALUE."""
    if not isinstance(value, str) or len(value) > MAX_CONTACT_CHARS or unstorable(value):
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "contactEmail must be an email address.",
            details={"field": "contactEmail"},
        )
    value = value.strip()
    try:
        validate_email(value)
    except ValidationError:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "contactEmail must be an email address.",
            details={"field": "contactEmail"},
        ) from None
    return value


def _topic(session: ChatSession) -> str:
    """What the conversation is about, for the inbox: its current topic (a help-centre category)
    when memory found one, else the title of the article the assistant cited last."""
    if session.active_topics:
        return str(session.active_topics[0])
    cited = (
        Message.objects.filter(session=session, role=Message.Role.ASSISTANT)
        .filter(metadata__has_key="citations")
        .order_by("-seq")
        .values_list("metadata", flat=True)
        .first()
    )
    citations = (cited or {}).get("citations") or []
    if citations and isinstance(citations[0], dict):
        return str(citations[0].get("title") or "")
    return ""


def _new_item(
    session: ChatSession, reason: str, priority: str, note: str, now: datetime
) -> Handoff:
    first = (
        Message.objects.filter(session=session, role=Message.Role.USER)
        .order_by("seq")
        .values_list("content", flat=True)
        .first()
    )
    return Handoff.objects.create(
        session=session,
        reason=reason,
        priority=priority,
        note=note,
        first_message=(first or "")[:2000],
        topic=_topic(session)[:200],
        summary=handoff_summary(session_id=session.pk),
        requested_at=now,
        updated_at=now,
    )


def request_handoff(
    *,
    session_id: str,
    reason: str,
    priority: str | None = None,
    note: str = "",
    contact_email: str | None = None,
    stop_bot: bool | None = None,
    ticket_id: str = "",
) -> HandoffRequest:
    """Ask for a person (idempotent: the open item is updated, never duplicated). With a contact
    address and no ticket yet, a ticket is opened so the reply has somewhere to go."""
    if reason not in Handoff.Reason.values:
        raise ValueError(f"unknown hand-off reason {reason!r}")
    if priority is not None and priority not in PRIORITY_RANK:
        raise ApiError("INVALID_FIELD_VALUE", "Unknown priority.", details={"field": "priority"})
    note = (
        clean_customer_text(note, field="reason", limit=MAX_NOTE_CHARS, session_id=session_id)
        if note
        else ""
    )
    contact = clean_contact_email(contact_email) if contact_email is not None else None
    try:
        handoff, created = _record_request(
            session_id, reason, priority, note, contact, stop_bot, ticket_id
        )
    except IntegrityError:
        # Two first requests at once: the other one made the item; this one updates it.
        handoff, created = _record_request(
            session_id, reason, priority, note, contact, stop_bot, ticket_id
        )
    if contact and not handoff.ticket_id:
        handoff = _open_ticket(handoff, contact)
    elif contact:
        # A ticket opened before the address was given (the escalation workflow) replies to it.
        Ticket.objects.filter(pk=handoff.ticket_id, user_email="").update(user_email=contact)
    status = handoff_status(session_id=session_id)
    return HandoffRequest(handoff=handoff, created=created, status=status)


def _record_request(
    session_id: str,
    reason: str,
    priority: str | None,
    note: str,
    contact: str | None,
    stop_bot: bool | None,
    ticket_id: str,
) -> tuple[Handoff, bool]:
    now = timezone.now()
    with write_transaction():
        session = locked_session(session_id)
        handoff = Handoff.objects.filter(session=session, status__in=OPEN_STATES).first()
        created = handoff is None
        if handoff is None:
            handoff = _new_item(session, reason, priority or DEFAULT_PRIORITY[reason], note, now)
            session.handoff_status = handoff.status
            log.info("handoff_requested", session_id=session_id, reason=reason)
            metrics.incr("handoffs_requested", reason=reason)
            transaction.on_commit(functools.partial(_queue_summary, handoff.pk))
        else:
            if priority and PRIORITY_RANK[priority] > PRIORITY_RANK[handoff.priority]:
                handoff.priority = priority
            if note:
                handoff.note = note
        if ticket_id and not handoff.ticket_id:
            handoff.ticket_id = ticket_id
        if contact:
            handoff.contact_email = contact
        if stop_bot is not None:
            session.bot_paused = stop_bot
        handoff.updated_at = now
        handoff.save()
        session.save(update_fields=["handoff_status", "bot_paused"])
        publish_handoff(session, handoff)
    return handoff, created


def _queue_summary(handoff_id: int) -> None:
    if not settings.HANDOFF_MODEL_SUMMARY:
        return
    try:
        summarise_handoff_task.delay(handoff_id)
    except Exception:
        log.warning("handoff_summary_not_queued", handoff_id=handoff_id, exc_info=True)


def _open_ticket(handoff: Handoff, contact: str) -> Handoff:
    """A ticket for the hand-off, replying to ``contact`` (idempotent per hand-off)."""
    summary = handoff.summary or handoff.first_message or "The customer asked for a person."
    ticket, _ = ticket_create(
        session_id=handoff.session_id,
        data=TicketData(
            title=("Reply by email: " + (handoff.topic or summary))[:200],
            description=summary[:4000],
            priority=handoff.priority,
            category="general",
            user_email=contact,
        ),
        idempotency_key=f"handoff-{handoff.pk}",
    )
    with write_transaction():
        handoff = (
            Handoff.objects.select_for_update(of=("self",))
            .select_related("assignee")
            .get(pk=handoff.pk)
        )
        if not handoff.ticket_id:
            handoff.ticket_id = ticket.pk
            handoff.save(update_fields=["ticket_id"])
        publish_handoff(handoff.session, handoff)
    return handoff


# --- publishing ----------------------------------------------------------------------------------


def publish_handoff(session: ChatSession, handoff: Handoff, *, notice: str | None = None) -> None:
    """After commit: the customer's sockets get the new status (and ``notice``), the inbox the
    item, and customers still waiting their new place in the queue."""
    availability = current_availability()
    status = wire.handoff_status(handoff_view(session=session, availability=availability))
    events.handoff_changed_on_commit(session.pk, status=status, notice=notice)
    events.inbox_changed_on_commit(wire.inbox_item(handoff))
    if handoff.status == Handoff.Status.WAITING:
        return
    waiting = list(
        Handoff.objects.filter(status=Handoff.Status.WAITING)
        .select_related("session")
        .order_by("requested_at", "pk")[:REQUEUE_NOTIFY_LIMIT]
    )
    # One queue read for all of them: each one's place is its index, the typical wait the same.
    typical_wait = typical_wait_seconds() if waiting else None
    for position, other in enumerate(waiting, start=1):
        view = HandoffView(
            session_id=other.session_id,
            handoff=other,
            availability=availability,
            position=position,
            typical_wait_seconds=typical_wait,
            rating_requested=False,
            bot_paused=other.session.bot_paused,
        )
        events.handoff_changed_on_commit(other.session_id, status=wire.handoff_status(view))


def log_staff_action(*, agent: Any, obj: Any, message: str) -> None:
    """Every agent action goes into the admin history (who, what, when): ``obj`` is the
    hand-off, draft or note acted on."""
    LogEntry.objects.log_actions(
        user_id=agent.pk, queryset=[obj], action_flag=CHANGE, change_message=message
    )
