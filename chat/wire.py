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

from chat.models import ChatSession, Message, ReviewItem
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
    if message.role == Message.Role.ASSISTANT:
        body["metadata"] = {
            "aiModel": message.model,
            "tokensUsed": message.total_tokens,
            "fallbackUsed": message.fallback_used,
            "citations": list(message.metadata.get("citations", [])),
        }
    return body


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
    return {
        "aiModel": done.model,
        "tokensUsed": done.tokens_used,
        "fallbackUsed": done.fallback_used,
        "citations": done.citations,
    }


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
