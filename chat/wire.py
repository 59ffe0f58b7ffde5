"""Every JSON shape that leaves ``chat`` (API.md): REST bodies, WebSocket frame data, SSE events.

Services return model objects and the plain values of ``chat.turn_events``; transports
(``chat.api``, ``chat.tools_api``, ``chat.turns``, ``chat.consumers``, ``chat.events``) call
these to speak the wire, so a field is named in one place. The frame envelope itself
(``{type, data, requestId?, timestamp}``) is ``chat.frames.encode``; the error shape is
``supportbot.errors``. The shapes of tools' own objects live with them
(``tools.workflows.wire``, ``ToolOutcome.wire``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings

from chat.handoff_state import HandoffView
from chat.hours import next_open_text
from chat.models import (
    AnswerFeedback,
    ChatSession,
    Handoff,
    HandoffNote,
    Message,
    Rating,
    ReplyDraft,
    ReviewItem,
)
from chat.turn_events import TokenDelta, ToolStarted, TurnDone, UserMessageStored
from supportbot.errors import ms, now_ms
from tools.tickets import RESOLUTION_HOURS


def message(message: Message) -> dict[str, Any]:
    """A stored message (REST ``recentMessages``, WebSocket ``message`` and resume)."""
    body: dict[str, Any] = {
        "messageId": message.id,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "timestamp": ms(message.created_at),
        "status": message.status,
    }
    if message.tool_calls:
        body["toolCalls"] = message.tool_calls
    if message.role == Message.Role.STAFF:
        body["metadata"] = {"agentName": agent_name(message)}
    if message.role == Message.Role.ASSISTANT:
        body["metadata"] = {
            "aiModel": message.model,
            "tokensUsed": message.total_tokens,
            "fallbackUsed": message.fallback_used,
            "citations": list(message.metadata.get("citations", [])),
        }
    return body


def agent_name(message: Message) -> str:
    """The name a staff message is signed with."""
    agent = message.metadata.get("agent") if isinstance(message.metadata, dict) else None
    name = agent.get("name") if isinstance(agent, dict) else None
    return name if isinstance(name, str) and name else "Support agent"


def session(
    session: ChatSession, recent: Iterable[Message], *, include_summary: bool = True
) -> dict[str, Any]:
    """GET /api/session/{id}: the session and ``recent`` (oldest first)."""
    return {
        "sessionId": session.id,
        "status": session.current_status(),
        "createdAt": ms(session.created_at),
        "lastActivity": ms(session.last_activity),
        "expiresAt": ms(session.expires_at),
        "messageCount": session.message_count,
        "summary": session.summary if include_summary else None,
        "recentMessages": [message(m) for m in recent],
        "activeTopics": session.active_topics,
        "resolvedIssues": session.resolved_issues,
        "userId": session.user_id or None,
        "metadata": session.metadata,
    }


def session_created(session: ChatSession) -> dict[str, Any]:
    """POST /api/session (201)."""
    return {
        "sessionId": session.id,
        "createdAt": ms(session.created_at),
        "expiresAt": ms(session.expires_at),
        "status": "active",
        "configuration": {
            "voiceEnabled": False,
            "toolsEnabled": False,
            "maxTokens": settings.LLM_MAX_TOKENS,
        },
    }


def session_ended(session: ChatSession) -> dict[str, Any]:
    """DELETE /api/session/{id}."""
    return {
        "sessionId": session.id,
        "status": "ended",
        "endedAt": ms(session.ended_at),
        "summary": session.summary,
        "messageCount": session.message_count,
        "duration": (ms(session.ended_at) or 0) - (ms(session.created_at) or 0),
    }


def report(item: ReviewItem) -> dict[str, Any]:
    """POST /api/session/{id}/report (201)."""
    return {
        "reportId": f"rpt_{item.pk}",
        "sessionId": item.session_id,
        "messageId": item.message_id,
        "status": item.status,
        "createdAt": ms(item.created_at),
    }


def message_received(event: UserMessageStored) -> dict[str, Any]:
    """``message_received`` (WebSocket and SSE): the user's message is stored."""
    return {"messageId": event.message_id, "seq": event.seq, "requestId": event.request_id}


def token(message_id: str, delta: str) -> dict[str, Any]:
    """``ai_token``: a piece of the answer (the WebSocket coalesces several into one)."""
    return {"messageId": message_id, "delta": delta}


def token_delta(event: TokenDelta) -> dict[str, Any]:
    return token(event.message_id, event.delta)


def typing(event: ToolStarted | None = None) -> dict[str, Any]:
    """``ai_typing``: thinking, or running a tool (the page shows ``status``)."""
    if event is None:
        return {"isTyping": True}
    return {"isTyping": True, "status": event.progress, "tool": event.tool}


def _answer_metadata(done: TurnDone) -> dict[str, Any]:
    body: dict[str, Any] = {
        "aiModel": done.model,
        "tokensUsed": done.tokens_used,
        "fallbackUsed": done.fallback_used,
        "citations": done.citations,
    }
    if done.held:
        # A person holds the conversation: the message went to them, the bot said nothing.
        body["heldByHuman"] = True
        body["agentName"] = done.held_by or None
    return body


def answer_rest(done: TurnDone) -> dict[str, Any]:
    """POST /api/chat's response and the SSE ``ai_response`` (plus ``seq`` and ``citations``)."""
    return {
        "response": done.content,
        "messageId": done.message_id,
        "sessionId": done.session_id,
        "seq": done.seq,
        "timestamp": done.timestamp,
        "processingTime": done.processing_ms,
        "toolCalls": done.tool_calls,
        "metadata": _answer_metadata(done),
    }


def answer_ws(done: TurnDone) -> dict[str, Any]:
    """The WebSocket ``ai_response`` data, plus tokens, fallback and citations."""
    return {
        "content": done.content,
        "messageId": done.message_id,
        "seq": done.seq,
        "sessionId": done.session_id,
        "timestamp": done.timestamp,
        "toolCalls": done.tool_calls,
        "metadata": {"processingTime": done.processing_ms, **_answer_metadata(done)},
    }


def connection_established(session_id: str, capabilities: list[str]) -> dict[str, Any]:
    """The first WebSocket frame of a socket."""
    return {"sessionId": session_id, "serverTime": now_ms(), "capabilities": capabilities}


def resume_complete(last_seq: int) -> dict[str, Any]:
    return {"lastSeq": last_seq}


def peer_typing(session_id: str, is_typing: bool) -> dict[str, Any]:
    """``typing``: the customer is typing (to staff watchers)."""
    return {"sessionId": session_id, "isTyping": is_typing}


def notification(level: str, text: str) -> dict[str, Any]:
    """``system_notification``: something the client should know (never needs an action)."""
    return {"level": level, "message": text, "actionRequired": False}


SESSION_ENDED_NOTICE = "This conversation has ended."


def expiry_warning(remaining_seconds: float, expires_at: datetime) -> dict[str, Any]:
    """The ``system_notification`` data of an expiry warning."""
    minutes = max(1, math.ceil(remaining_seconds / 60))
    return {
        "level": "warning",
        "message": (
            f"This conversation closes in about {minutes} minute{'s' if minutes != 1 else ''} "
            "because it has been quiet. Send a message to keep it open."
        ),
        "actionRequired": True,
        "expiresAt": ms(expires_at),
    }


def ticket(result: dict[str, Any], *, created: bool) -> dict[str, Any]:
    """POST /api/tools/ticket: the ticket tool's result as ``status``, and for a new ticket the
    sentence the customer is shown."""
    status = dict(result)
    ticket_id = status.pop("ticketId")
    body: dict[str, Any] = {"ticketId": ticket_id, "status": status}
    if created:
        hours = RESOLUTION_HOURS[status["priority"]]
        body["message"] = f"Ticket {ticket_id} created. Expected resolution within {hours} hours."
    return body


# --- hand-offs -----------------------------------------------------------------------------------


def handoff_id(handoff: Handoff) -> str:
    return f"hof_{handoff.pk}"


def display_name(user: Any) -> str:
    """How an agent is named to customers and colleagues ("" for nobody)."""
    if user is None:
        return ""
    return str(user.get_full_name() or user.get_username()).strip()


def agent_info(user: Any) -> dict[str, Any] | None:
    return None if user is None else {"name": display_name(user)}


def handoff_status(view: HandoffView) -> dict[str, Any]:
    """``handoff_status`` frames and GET/POST /api/session/{id}/handoff: what the customer is
    told about their hand-off, and whether a person can answer now."""
    handoff, availability = view.handoff, view.availability
    hours = availability.hours
    live = handoff is not None and handoff.status != Handoff.Status.RESOLVED
    return {
        "sessionId": view.session_id,
        "status": handoff.status if handoff is not None else "none",
        "handoffId": handoff_id(handoff) if handoff is not None else None,
        "reason": handoff.reason if handoff is not None else None,
        "requestedAt": ms(handoff.requested_at) if handoff is not None else None,
        "position": view.position,
        "typicalWaitSeconds": view.typical_wait_seconds,
        "agent": agent_info(handoff.assignee) if handoff is not None else None,
        "botPaused": view.bot_paused and live,
        "ticketId": (handoff.ticket_id or None) if handoff is not None else None,
        "contactGiven": bool(handoff is not None and handoff.contact_email),
        # Nobody can answer now: the customer is offered a ticket instead of a promise.
        "ticketOffered": live
        and handoff is not None
        and handoff.status == Handoff.Status.WAITING
        and not availability.humans_available,
        "ratingRequested": view.rating_requested,
        "availability": {
            "open": hours.open,
            "agentsOnline": len(availability.agents),
            "humansAvailable": availability.humans_available,
            "nextOpenAt": ms(hours.next_open_at),
            "nextOpenText": next_open_text(hours),
            "timezone": hours.timezone,
        },
    }


def inbox_item(handoff: Handoff) -> dict[str, Any]:
    """One item of the staff inbox (the inbox page and its ``inbox_item`` frames)."""
    session = handoff.session
    return {
        "handoffId": handoff_id(handoff),
        "id": handoff.pk,
        "sessionId": handoff.session_id,
        "userId": session.user_id or None,
        "status": handoff.status,
        "reason": handoff.reason,
        "reasonText": handoff.get_reason_display(),
        "priority": handoff.priority,
        "requestedAt": ms(handoff.requested_at),
        "takenAt": ms(handoff.taken_at),
        "resolvedAt": ms(handoff.resolved_at),
        "firstMessage": handoff.first_message[:500],
        "lastCustomerMessage": handoff.last_customer_message[:500],
        "lastCustomerAt": ms(handoff.last_customer_at),
        "topic": handoff.topic,
        "summary": handoff.summary,
        "ticketId": handoff.ticket_id or None,
        "assignee": (
            {"id": handoff.assignee.pk, **(agent_info(handoff.assignee) or {})}
            if handoff.assignee is not None
            else None
        ),
        "botPaused": session.bot_paused,
        "updatedAt": ms(handoff.updated_at),
    }


def staff_note(note: HandoffNote) -> dict[str, Any]:
    return {
        "noteId": note.pk,
        "sessionId": note.session_id,
        "author": note.author,
        "text": note.text,
        "createdAt": ms(note.created_at),
    }


def reply_draft(draft: ReplyDraft) -> dict[str, Any]:
    """A drafted reply, for staff only."""
    return {
        "draftId": draft.pk,
        "sessionId": draft.session_id,
        "forMessageId": draft.for_message_id,
        "content": draft.content,
        "citations": draft.citations,
        "model": draft.model,
        "outcome": draft.outcome,
        "createdAt": ms(draft.created_at),
    }


def rating(rating: Rating) -> dict[str, Any]:
    """POST /api/session/{id}/rating (201)."""
    return {
        "ratingId": f"rat_{rating.pk}",
        "sessionId": rating.session_id,
        "score": rating.score,
        "comment": rating.comment,
        "createdAt": ms(rating.created_at),
    }


def feedback(item: AnswerFeedback, handoff_status: dict[str, Any] | None) -> dict[str, Any]:
    """POST /api/session/{id}/feedback (200): the vote, and the hand-off it asked for if any."""
    return {"messageId": item.message_id, "vote": item.vote, "handoff": handoff_status}
