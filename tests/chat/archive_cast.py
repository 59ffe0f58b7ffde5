"""Conversations for the archive tests, as the pipeline leaves them, and what to compare them by.

Created through the ORM (a factory for volume, not a path under test): alternating turns with tool
calls, metadata and token counts, timestamps with microseconds, a ticket opened during it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from chat.models import ChatSession, Message
from supportbot import metrics
from supportbot.errors import ms
from tools.models import Ticket

SESSION_FIELDS = (
    "user_id",
    "metadata",
    "status",
    "summary",
    "active_topics",
    "resolved_issues",
    "escalation_ticket",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "message_count",
    "last_seq",
)
SESSION_TIMES = ("created_at", "last_activity", "ended_at", "escalated_at")


def conversation(
    *,
    user_id: str = "cust-0042",
    messages: int = 6,
    ended_at: datetime | None = None,
    escalation: str = "",
    status: str = ChatSession.Status.ENDED,
) -> ChatSession:
    """A conversation as the pipeline leaves it: alternating turns with tool calls, metadata and
    token counts, timestamps with microseconds, and a ticket opened during it."""
    ended_at = ended_at or timezone.now().replace(microsecond=654321) - timedelta(minutes=5)
    started = ended_at - timedelta(minutes=30, microseconds=1234)
    session = ChatSession.objects.create(
        user_id=user_id,
        metadata={"page": "/billing", "locale": "fr-FR"},
        status=status,
        created_at=started,
        last_activity=ended_at,
        ended_at=ended_at if status == ChatSession.Status.ENDED else None,
        summary="Asked for a copy of the March invoice.",
        active_topics=["billing"],
        resolved_issues=["invoice copy"],
        escalated_at=started + timedelta(minutes=10) if escalation else None,
        escalation_ticket=escalation,
        prompt_tokens=900,
        completion_tokens=300,
        total_tokens=1200,
        message_count=messages,
        last_seq=messages,
    )
    for seq in range(1, messages + 1):
        assistant = seq % 2 == 0
        Message.objects.create(
            session=session,
            seq=seq,
            role=Message.Role.ASSISTANT if assistant else Message.Role.USER,
            content=(
                f"Voici la facture {seq} — 12 € TTC." if assistant else f"Où est ma facture {seq} ?"
            ),
            status=Message.Status.COMPLETE if assistant else Message.Status.ANSWERED,
            request_id=None if assistant else f"req-{seq}",
            tool_calls=(
                [{"id": f"call_{seq}", "name": "kb.search", "arguments": {"query": "facture"}}]
                if assistant
                else []
            ),
            model="fake-model" if assistant else "",
            prompt_tokens=150 if assistant else 0,
            completion_tokens=50 if assistant else 0,
            total_tokens=200 if assistant else 0,
            processing_ms=840 if assistant else None,
            metadata={"sources": ["kb-billing-3"]} if assistant else {"client": "widget"},
            created_at=started + timedelta(seconds=seq * 7, microseconds=seq * 111),
        )
    Ticket.objects.create(
        session_id=session.id,
        title="Copy of the March invoice",
        description="The customer needs the invoice for their accountant.",
        estimated_resolution=timezone.now() + timedelta(days=1),
    )
    return session


def message_rows(session_id: str) -> list[tuple[Any, ...]]:
    """Everything a message carries, its time to the millisecond (what an archive keeps)."""
    return [
        (
            m.id,
            m.seq,
            m.role,
            m.content,
            m.status,
            m.request_id,
            m.tool_calls,
            m.model,
            m.fallback_used,
            m.prompt_tokens,
            m.completion_tokens,
            m.total_tokens,
            m.processing_ms,
            m.error_code,
            m.metadata,
            ms(m.created_at),
        )
        for m in Message.objects.filter(session_id=session_id).order_by("seq")
    ]


def session_row(session: ChatSession) -> dict[str, Any]:
    row = {name: getattr(session, name) for name in SESSION_FIELDS}
    row.update({name: ms(getattr(session, name)) for name in SESSION_TIMES})
    return row


def expire_now(session: ChatSession) -> None:
    ChatSession.objects.filter(pk=session.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def counted_failures(settings: Any) -> Iterator[Callable[[], dict[str, int]]]:
    """For a fixture: ``archive_failures`` counted so far, by label, in the database store
    (empty at the start; no Redis, whatever the run uses)."""
    settings.REDIS_URL = ""
    metrics.reset()
    yield lambda: metrics.snapshot()["counters"].get("archive_failures", {})
    metrics.reset()
