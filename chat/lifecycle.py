"""Session lifecycle: archive a conversation to storage; expire idle sessions; warn a connected
client before its session expires.

An archive is the whole conversation (session fields, summary, every message with its tool
calls and usage) as gzipped JSON in the ``archives`` storage (filesystem by default, S3/R2 in
production), recorded with its key, size, sha256 and message count. Expiry archives first and
deletes the hot rows only once the archive is recorded.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from chat.models import ChatSession, Message, SessionArchive
from supportbot import metrics
from supportbot.db import write_transaction
from supportbot.errors import ms

log = structlog.get_logger("chat.lifecycle")


def _document(session: ChatSession) -> dict[str, Any]:
    messages = Message.objects.filter(session=session).order_by("seq")
    return {
        "format": "supportbot.session.v1",
        "sessionId": session.id,
        "userId": session.user_id,
        "metadata": session.metadata,
        "status": session.status,
        "createdAt": ms(session.created_at),
        "lastActivity": ms(session.last_activity),
        "endedAt": ms(session.ended_at),
        "summary": session.summary,
        "activeTopics": session.active_topics,
        "resolvedIssues": session.resolved_issues,
        "tokens": {
            "prompt": session.prompt_tokens,
            "completion": session.completion_tokens,
            "total": session.total_tokens,
        },
        "messages": [
            {
                "messageId": m.id,
                "seq": m.seq,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "requestId": m.request_id,
                "toolCalls": m.tool_calls,
                "model": m.model,
                "fallbackUsed": m.fallback_used,
                "tokens": {"prompt": m.prompt_tokens, "completion": m.completion_tokens},
                "processingMs": m.processing_ms,
                "metadata": m.metadata,
                "timestamp": ms(m.created_at),
            }
            for m in messages
        ],
    }


def archive_session(*, session_id: str, reason: str) -> SessionArchive:
    """Write the conversation to archive storage and record it (once per session and reason)."""
    done = SessionArchive.objects.filter(session_id=session_id, reason=reason).first()
    if done is not None:
        return done
    session = ChatSession.objects.get(pk=session_id)
    document = _document(session)
    payload = gzip.compress(
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), mtime=0
    )
    stamp = timezone.now().strftime("%Y/%m/%d")
    storage = storages["archives"]
    key = storage.save(f"{stamp}/{session.id}-{reason}.json.gz", ContentFile(payload))
    archive = SessionArchive.objects.create(
        session_id=session.id,
        key=key,
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        message_count=len(document["messages"]),
        reason=reason,
    )
    log.info("session_archived", session_id=session.id, key=key, size=archive.size, reason=reason)
    return archive


def expire_sessions(*, now: datetime | None = None, batch: int = 100) -> int:
    """Archive and delete sessions past their inactivity deadline; returns how many."""
    now = now or timezone.now()
    expired = list(
        ChatSession.objects.filter(expires_at__lte=now).values_list("pk", "status")[:batch]
    )
    done = 0
    for session_id, status in expired:
        # An ended session cannot change any more: its "ended" archive, if written, is complete.
        archived_at_end = (
            status == ChatSession.Status.ENDED
            and SessionArchive.objects.filter(session_id=session_id, reason="ended").exists()
        )
        try:
            if not archived_at_end:
                archive_session(session_id=session_id, reason="expired")
        except Exception:
            log.exception("archive_failed", session_id=session_id)
            metrics.incr("archive_failures", reason="expired")
            continue
        with write_transaction():
            deleted, _ = ChatSession.objects.filter(pk=session_id, expires_at__lte=now).delete()
        if deleted and status != ChatSession.Status.ENDED:
            metrics.incr("sessions", event="expired")
        done += 1
    return done


def _expiry_state(session_id: str) -> tuple[str, datetime] | None:
    row = ChatSession.objects.filter(pk=session_id).values_list("status", "expires_at").first()
    return None if row is None else (row[0], row[1])


async def watch_expiry(
    session_id: str,
    known: tuple[str, datetime] | None,
    *,
    warn: Callable[[float, datetime], Awaitable[None]],
    gone: Callable[[], Awaitable[None]],
) -> None:
    """For one connected socket: ``warn(remaining_seconds, expires_at)``
    SESSION_EXPIRY_WARNING_SECONDS before the session
    expires (again if activity moved the deadline and it comes close again), and call ``gone``
    once it has expired or ended. ``known`` is the (status, expires_at) already read, if any."""
    try:
        await _watch_expiry(session_id, known, warn=warn, gone=gone)
    except Exception:  # the socket is closing, or the database is away: stop watching
        log.warning("expiry_watch_failed", session_id=session_id, exc_info=True)


async def _watch_expiry(
    session_id: str,
    known: tuple[str, datetime] | None,
    *,
    warn: Callable[[float, datetime], Awaitable[None]],
    gone: Callable[[], Awaitable[None]],
) -> None:
    warned_for: datetime | None = None
    while True:
        state = known or await sync_to_async(_expiry_state)(session_id)
        known = None
        now = timezone.now()
        if state is None or state[0] == ChatSession.Status.ENDED or now >= state[1]:
            await gone()
            return
        expires_at = state[1]
        remaining = (expires_at - now).total_seconds()
        lead = settings.SESSION_EXPIRY_WARNING_SECONDS
        if remaining <= lead:
            if warned_for != expires_at:
                warned_for = expires_at
                await warn(remaining, expires_at)
            wait = remaining
        else:
            wait = remaining - lead
        # Activity moves the deadline: look again when this one would be reached.
        await asyncio.sleep(min(max(wait, 0.5), 3600.0))
