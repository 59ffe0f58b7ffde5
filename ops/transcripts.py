"""Transcripts as staff see them: the one partial ``ops/_transcript.html``, for every admin page
that shows a conversation, and the functions that build its context.

``session_transcript`` is a session's page: every message up to ``TRANSCRIPT_LIMIT`` with its
usage, and the placeholder ``static/chat/watch.js`` follows live. ``review_transcript`` is a review
item's page: the messages around the item, its own marked. The template escapes every value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.safestring import SafeString

from chat.models import ChatSession, Message, ReviewItem
from ops.review import transcript_context

TEMPLATE = "ops/_transcript.html"
# A session page renders its transcript whole up to this many messages; beyond it the page would
# grow unbounded, and the Message list (filtered by session) pages through the rest.
TRANSCRIPT_LIMIT = 1000


@dataclass(frozen=True)
class TranscriptRow:
    """One message as a row of the transcript table."""

    seq: int
    role: str
    role_display: str
    time: str
    content: str
    anchor: bool = False  # the review item's own message
    # The session page's columns only:
    tool_calls: str = ""  # JSON text, shown in a <pre>
    tokens: int | str = ""
    latency: str = ""
    model: str = ""
    status: str = ""


def _when(value: datetime | None) -> str:
    return formats.date_format(timezone.localtime(value), "Y-m-d H:i:s") if value else ""


def _row(message: Message, *, anchor: bool = False) -> TranscriptRow:
    return TranscriptRow(
        seq=message.seq,
        role=message.role,
        role_display=message.get_role_display(),
        time=_when(message.created_at),
        content=message.content,
        anchor=anchor,
    )


def _detail_row(message: Message) -> TranscriptRow:
    """A row with the session page's extra columns (tool calls, tokens, latency, model)."""
    error = f" ({message.error_code})" if message.error_code else ""
    return replace(
        _row(message),
        tool_calls=(
            json.dumps(message.tool_calls, indent=2, ensure_ascii=False, default=str)
            if message.tool_calls
            else ""
        ),
        tokens=message.total_tokens or "",
        latency=f"{message.processing_ms} ms" if message.processing_ms is not None else "",
        model=message.model,
        status=message.get_status_display() + error,
    )


def session_transcript(session: ChatSession, *, limit: int = TRANSCRIPT_LIMIT) -> dict[str, Any]:
    """The session page's transcript: its messages in ``seq`` order, up to ``limit``."""
    messages = list(session.messages.order_by("seq")[: limit + 1])
    more = len(messages) > limit
    more_url = ""
    if more:
        more_url = reverse("admin:chat_message_changelist") + "?" + urlencode({"q": session.pk})
    return {
        "detail": True,
        "rows": [_detail_row(m) for m in messages[:limit]],
        "empty": not messages,
        "limit": limit,
        "more_url": more_url,
        # A live conversation is followed by static/chat/watch.js (staff watcher socket); past the
        # limit the table is not the whole conversation, so it is not followed.
        "live_session_id": session.pk
        if session.status != ChatSession.Status.ENDED and not more
        else "",
    }


def review_transcript(item: ReviewItem) -> dict[str, Any]:
    """A review item's page: the messages around its message, which is marked."""
    messages = transcript_context(item)
    return {
        "review": True,
        "missing": not messages,
        "unanchored": not any(m.pk == item.message_id for m in messages),
        "rows": [_row(m, anchor=m.pk == item.message_id) for m in messages],
    }


def render_transcript(context: dict[str, Any]) -> SafeString:
    """The transcript partial rendered with a context from the functions above."""
    return render_to_string(TEMPLATE, context)
