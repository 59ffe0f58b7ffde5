"""Transcripts as staff see them: the one partial ``ops/_transcript.html``, for every admin page
that shows a conversation, and the functions that build its context.

``session_transcript`` is a session's page: every message up to ``TRANSCRIPT_LIMIT`` with its
usage, and the placeholder ``static/chat/watch.js`` follows live. ``session_rows_after`` is the
rows of that page after a ``seq``, which watch.js fetches as messages arrive, so a live row is
rendered by the same code as the page. ``review_transcript`` is a review item's page: the
messages around the item, its own marked. ``archive_transcript`` is an archive's page: the
archived document's messages (checked against the archive's sha256 by the caller) in the same
rows as a session's page.

A message shows as the customer's page shows it: its Markdown rendered (``ops.markdown``, which
sanitises), an answer's sources as links, its tool calls (folded here), a staff reply under the
agent's name. The template escapes every other value.
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

from chat.archives import document_messages
from chat.models import ChatSession, Message, ReviewItem
from ops.markdown import render_markdown
from ops.review import transcript_context

TEMPLATE = "ops/_transcript.html"
# A session page renders its transcript whole up to this many messages; beyond it the page would
# grow unbounded, and the Message list (filtered by session) pages through the rest.
TRANSCRIPT_LIMIT = 1000
# Rows per fetch of a live page (``session_rows_after``); watch.js fetches again for the rest.
LIVE_ROWS_LIMIT = 200
# Citation links the customer's page shows (static/chat/app.js shows only these too).
_WEB_URL = ("http://", "https://")


@dataclass(frozen=True)
class Source:
    """A citation under an answer: a link when its URL is a web address, else its title."""

    title: str
    url: str = ""


@dataclass(frozen=True)
class TranscriptRow:
    """One message as a row of the transcript table."""

    seq: int
    role: str
    role_display: str
    time: str
    content: str  # as stored (Markdown)
    html: SafeString  # ``content`` rendered and sanitised
    sources: tuple[Source, ...] = ()
    anchor: bool = False  # the review item's own message
    # The session page's columns only:
    tool_calls: str = ""  # JSON text, shown in a <pre>
    tool_names: str = ""  # "kb.search, create_ticket": the folded tool calls' summary
    tokens: int | str = ""
    latency: str = ""
    model: str = ""
    status: str = ""


def staff_time(value: datetime | None) -> str:
    """A time as staff pages show it (local time, to the second); "" for none."""
    return formats.date_format(timezone.localtime(value), "Y-m-d H:i:s") if value else ""


def _role_display(message: Message) -> str:
    """The role, or for a staff reply the agent who wrote it (as the customer sees it)."""
    if message.role == Message.Role.STAFF:
        agent = message.metadata.get("agent") if isinstance(message.metadata, dict) else None
        name = agent.get("name") if isinstance(agent, dict) else None
        if isinstance(name, str) and name.strip():
            return f"{name.strip()} (staff)"
    return message.get_role_display()


def _sources(message: Message) -> tuple[Source, ...]:
    citations = message.metadata.get("citations") if isinstance(message.metadata, dict) else None
    found = []
    for citation in citations if isinstance(citations, list) else ():
        if not isinstance(citation, dict):
            continue
        url = str(citation.get("url") or "")
        title = str(citation.get("title") or url or citation.get("id") or "")
        if title:
            found.append(Source(title=title, url=url if url.lower().startswith(_WEB_URL) else ""))
    return tuple(found)


def _tool_names(calls: Any) -> str:
    names = []
    for call in calls if isinstance(calls, list) else ():
        name = (call.get("tool") or call.get("name")) if isinstance(call, dict) else None
        names.append(str(name or "tool"))
    return ", ".join(names)


def _row(message: Message, *, anchor: bool = False) -> TranscriptRow:
    return TranscriptRow(
        seq=message.seq,
        role=message.role,
        role_display=_role_display(message),
        time=staff_time(message.created_at),
        content=message.content,
        html=render_markdown(message.content),
        sources=_sources(message),
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
        tool_names=_tool_names(message.tool_calls),
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
    live = session.pk if session.status != ChatSession.Status.ENDED and not more else ""
    return {
        "detail": True,
        "rows": [_detail_row(m) for m in messages[:limit]],
        "empty": not messages,
        "limit": limit,
        "more_url": more_url,
        # A live conversation is followed by static/chat/watch.js (staff watcher socket); past the
        # limit the table is not the whole conversation, so it is not followed.
        "live_session_id": live,
        "rows_url": reverse("ops:transcript_rows", args=[live]) if live else "",
    }


def archive_transcript(
    document: dict[str, Any], session_id: str, *, limit: int = TRANSCRIPT_LIMIT
) -> dict[str, Any]:
    """An archive's transcript: the archived messages (``document_messages``) in ``seq`` order,
    up to ``limit``, as the session page shows them; never followed live."""
    messages = sorted(document_messages(document, session_id), key=lambda m: m.seq)
    return {
        "detail": True,
        "rows": [_detail_row(m) for m in messages[:limit]],
        "empty": not messages,
        "limit": limit,
        "more_url": "",
        "live_session_id": "",
        "rows_url": "",
        "total": len(messages),
        "truncated": len(messages) > limit,
    }


def session_rows_after(
    session_id: str, *, after: int, limit: int = LIVE_ROWS_LIMIT
) -> tuple[SafeString, bool]:
    """The session page's rows (``<tr>`` only) of the messages after ``after``, at most
    ``limit``, and whether more follow."""
    messages = list(
        Message.objects.filter(session_id=session_id, seq__gt=after).order_by("seq")[: limit + 1]
    )
    context = {
        "rows_only": True,
        "detail": True,
        "rows": [_detail_row(m) for m in messages[:limit]],
    }
    return render_transcript(context), len(messages) > limit


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
