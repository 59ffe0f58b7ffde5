"""What support agents do with a conversation: take it over, reply, assign, hand back, resolve,
pick one up, write internal notes.

Each action is one transaction on the hand-off row (locked) and its session row, so two agents
racing for a conversation get one winner and one clear refusal naming who holds it. Every action
goes into the admin history, and reaches the customer (``handoff_status``, a notice) and the
staff inbox once committed (``chat.handoff``). Permissions are checked by the callers (the staff
API), which know the user; these functions check the state.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.utils import timezone

from chat import events, wire
from chat.guards import current_allowlist, redact_text
from chat.guards.validation import unstorable
from chat.handoff import (
    log_staff_action,
    publish_handoff,
    request_handoff,
)
from chat.models import ChatSession, Handoff, HandoffNote, Message, ReplyDraft
from chat.store import locked_session, post_staff_message
from chat.wire import display_name
from supportbot import metrics
from supportbot.db import write_transaction
from supportbot.errors import ApiError

log = structlog.get_logger("chat.takeover")

MAX_NOTE_CHARS = 4000


def _locked_item(handoff_id: Any) -> Handoff:
    if not isinstance(handoff_id, int) or isinstance(handoff_id, bool):
        raise ApiError("NOT_FOUND", "No such hand-off.")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("assignee")
        .filter(pk=handoff_id)
        .first()
    )
    if handoff is None:
        raise ApiError("NOT_FOUND", "No such hand-off.")
    if handoff.status == Handoff.Status.RESOLVED:
        raise ApiError(
            "INVALID_REQUEST_FORMAT",
            "This hand-off is resolved.",
            status=409,
            details={"status": handoff.status},
        )
    return handoff


def _held_by_other(handoff: Handoff, agent: Any) -> ApiError:
    name = display_name(handoff.assignee)
    verb = "holds" if handoff.status == Handoff.Status.WITH_AGENT else "is assigned"
    return ApiError(
        "ACCESS_DENIED",
        f"{name} {verb} this conversation." if verb == "holds" else f"It is assigned to {name}.",
        status=409,
        details={"heldBy": name, "status": handoff.status},
    )


def _mirror(session: ChatSession, handoff: Handoff, **extra: Any) -> None:
    session.handoff_status = handoff.status
    for name, value in extra.items():
        setattr(session, name, value)
    session.save(update_fields=["handoff_status", *extra])


def take_over(*, handoff_id: Any, agent: Any, may_reassign: bool = False) -> Handoff:
    """The agent holds the conversation: the bot stops answering, messages go to the agent."""
    now = timezone.now()
    with write_transaction():
        handoff = _locked_item(handoff_id)
        session = locked_session(handoff.session_id)
        holder = handoff.assignee_id
        if handoff.status == Handoff.Status.WITH_AGENT and holder == agent.pk:
            return handoff  # already theirs: taking it again changes nothing
        if holder not in (None, agent.pk) and (
            handoff.status == Handoff.Status.WITH_AGENT or not may_reassign
        ):
            raise _held_by_other(handoff, agent)
        handoff.status = Handoff.Status.WITH_AGENT
        handoff.assignee = agent
        handoff.assigned_at = handoff.assigned_at or now
        first_take = handoff.taken_at is None
        handoff.taken_at = handoff.taken_at or now
        handoff.updated_at = now
        handoff.save()
        if first_take:
            waited = (now - handoff.requested_at).total_seconds() * 1000
            metrics.record_timing("handoff_wait", handoff.reason, latency_ms=waited)
        _mirror(session, handoff)
        name = display_name(agent)
        publish_handoff(session, handoff, notice=f"{name} joined the conversation.")
        log_staff_action(agent=agent, obj=handoff, message="Took over the conversation.")
    log.info("handoff_taken", handoff_id=handoff.pk, agent=agent.pk)
    metrics.incr("handoffs_taken", reason=handoff.reason)
    return handoff


def assign(*, handoff_id: Any, agent: Any, to: Any) -> Handoff:
    """Give the item to a colleague (``to``); a held conversation passes to them at once."""
    now = timezone.now()
    with write_transaction():
        handoff = _locked_item(handoff_id)
        session = locked_session(handoff.session_id)
        held = handoff.status == Handoff.Status.WITH_AGENT
        handoff.assignee = to
        handoff.assigned_at = now
        if not held:
            handoff.status = Handoff.Status.ASSIGNED
        handoff.updated_at = now
        handoff.save()
        _mirror(session, handoff)
        notice = f"{display_name(to)} joined the conversation." if held else None
        publish_handoff(session, handoff, notice=notice)
        log_staff_action(agent=agent, obj=handoff, message=f"Assigned to {display_name(to)}.")
    return handoff


def _require_holder(handoff: Handoff, agent: Any, *, supervisor: bool) -> None:
    if handoff.assignee_id not in (None, agent.pk) and not supervisor:
        raise _held_by_other(handoff, agent)


def hand_back(*, handoff_id: Any, agent: Any, supervisor: bool = False) -> Handoff:
    """The bot answers again; the item stays open and assigned until resolved."""
    with write_transaction():
        handoff = _locked_item(handoff_id)
        session = locked_session(handoff.session_id)
        _require_holder(handoff, agent, supervisor=supervisor)
        if handoff.status != Handoff.Status.WITH_AGENT:
            raise ApiError(
                "INVALID_REQUEST_FORMAT",
                "Nobody holds this conversation.",
                status=409,
                details={"status": handoff.status},
            )
        holder = handoff.assignee or agent
        handoff.status = Handoff.Status.ASSIGNED
        handoff.assignee = holder
        handoff.updated_at = timezone.now()
        handoff.save()
        _mirror(session, handoff, bot_paused=False)
        notice = f"{display_name(holder)} left the conversation; the assistant is answering again."
        publish_handoff(session, handoff, notice=notice)
        log_staff_action(agent=agent, obj=handoff, message="Handed back to the assistant.")
    return handoff


def resolve(*, handoff_id: Any, agent: Any, supervisor: bool = False) -> Handoff:
    """Close the item; the customer is asked to rate the conversation."""
    now = timezone.now()
    with write_transaction():
        handoff = _locked_item(handoff_id)
        session = locked_session(handoff.session_id)
        _require_holder(handoff, agent, supervisor=supervisor)
        handoff.status = Handoff.Status.RESOLVED
        handoff.resolved_at = now
        handoff.resolved_by = display_name(agent)
        handoff.updated_at = now
        handoff.save()
        _mirror(session, handoff, bot_paused=False)
        publish_handoff(
            session, handoff, notice=f"{display_name(agent)} marked this conversation resolved."
        )
        log_staff_action(agent=agent, obj=handoff, message="Resolved.")
    metrics.incr("handoffs_resolved", reason=handoff.reason)
    return handoff


def pick_up(*, session_id: str, agent: Any) -> Handoff:
    """Staff take a conversation nobody asked them for (or the open one): it joins the inbox
    and the agent holds it."""
    request = request_handoff(session_id=session_id, reason=Handoff.Reason.STAFF)
    return take_over(handoff_id=request.handoff.pk, agent=agent)


# --- replies and notes ---------------------------------------------------------------------------


def clean_reply(text: Any, *, field: str = "text") -> str:
    """An agent's reply: a non-empty string within the message limit."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ApiError("MISSING_REQUIRED_FIELD", f"{field} is required.", details={"field": field})
    if not isinstance(text, str):
        raise ApiError(
            "INVALID_FIELD_VALUE", f"{field} must be a string.", details={"field": field}
        )
    limit = settings.MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ApiError(
            "MESSAGE_TOO_LONG",
            f"A reply is limited to {limit} characters.",
            details={"field": field, "maxLength": limit},
        )
    problem = unstorable(text)
    if problem:
        raise ApiError("INVALID_FIELD_VALUE", f"{field} {problem}.", details={"field": field})
    return text.strip()


def staff_reply(*, handoff_id: Any, agent: Any, text: Any, draft_id: Any = None) -> Message:
    """The agent's message to the customer, in the same thread, with the agent's name. PII is
    redacted on the way out like the bot's answers. Only the agent holding the conversation
    replies."""
    content = clean_reply(text)
    with write_transaction():
        handoff = _locked_item(handoff_id)
        if handoff.status != Handoff.Status.WITH_AGENT or handoff.assignee_id != agent.pk:
            if handoff.assignee_id not in (None, agent.pk):
                raise _held_by_other(handoff, agent)
            raise ApiError(
                "INVALID_REQUEST_FORMAT",
                "Take the conversation over before replying.",
                status=409,
                details={"status": handoff.status},
            )
        draft = _draft_for(handoff, draft_id)
        redacted = redact_text(
            content, current_allowlist(), session_id=handoff.session_id, field="staff_reply"
        )
        message = post_staff_message(
            session_id=handoff.session_id,
            content=redacted,
            agent_name=display_name(agent),
            agent_id=agent.pk,
            draft_id=draft.pk if draft else None,
        )
        if draft is not None:
            same = " ".join(draft.content.split()) == " ".join(content.split())
            draft.outcome = ReplyDraft.Outcome.SENT if same else ReplyDraft.Outcome.EDITED
            draft.sent_message = message
            draft.decided_by = display_name(agent)
            draft.decided_at = message.created_at
            draft.save(update_fields=["outcome", "sent_message", "decided_by", "decided_at"])
        handoff.updated_at = message.created_at
        handoff.save(update_fields=["updated_at"])
        events.inbox_changed_on_commit(wire.inbox_item(handoff))
    return message


def _draft_for(handoff: Handoff, draft_id: Any) -> ReplyDraft | None:
    if draft_id is None:
        return None
    draft = (
        ReplyDraft.objects.select_for_update()
        .filter(pk=draft_id, session_id=handoff.session_id)
        .first()
        if isinstance(draft_id, int) and not isinstance(draft_id, bool)
        else None
    )
    if draft is None or draft.outcome != ReplyDraft.Outcome.PENDING:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "draftId is not a pending draft of this conversation.",
            details={"field": "draftId"},
        )
    return draft


def discard_draft(*, draft_id: Any, agent: Any) -> ReplyDraft:
    with write_transaction():
        draft = (
            ReplyDraft.objects.select_for_update().filter(pk=draft_id).first()
            if isinstance(draft_id, int) and not isinstance(draft_id, bool)
            else None
        )
        if draft is None:
            raise ApiError("NOT_FOUND", "No such draft.")
        if draft.outcome == ReplyDraft.Outcome.PENDING:
            draft.outcome = ReplyDraft.Outcome.DISCARDED
            draft.decided_by = display_name(agent)
            draft.decided_at = timezone.now()
            draft.save(update_fields=["outcome", "decided_by", "decided_at"])
            log_staff_action(agent=agent, obj=draft, message="Discarded a drafted reply.")
    return draft


def add_note(*, session_id: str, agent: Any, text: Any) -> HandoffNote:
    """An internal note: staff only, never sent to the customer's sockets."""
    content = clean_reply(text)
    if len(content) > MAX_NOTE_CHARS:
        raise ApiError("MESSAGE_TOO_LONG", "A note is limited to 4000 characters.")
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        raise ApiError("SESSION_NOT_FOUND", "No such session, or it has expired.")
    if session.is_restored:
        raise ApiError("INVALID_SESSION", "A restored archive is read-only.", status=409)
    with write_transaction():
        note = HandoffNote.objects.create(session=session, author=display_name(agent), text=content)
        log_staff_action(agent=agent, obj=note, message="Added an internal note.")
        events.staff_note_on_commit(session.pk, wire.staff_note(note))
    return note
