"""Persistence of one turn: start it (lease + user message), finish it, or record its failure.

One turn at a time per session, across processes and on either database: the session row carries
a lease (``turn_token``, ``turn_lease_until``) taken and released inside the same transactions
that write the turn's messages, so serialising costs no extra round trip. The row is locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's IMMEDIATE transactions take the write lock) while
``seq`` is assigned, so sequence numbers are strictly increasing and gap-free.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from chat import wire
from chat.events import inbox_changed_on_commit, publish_on_commit
from chat.memory import summary_due, track_topics
from chat.models import ChatSession, Handoff, Message
from chat.sessions import touch_expiry
from supportbot.db import write_transaction
from supportbot.errors import ApiError

log = structlog.get_logger("chat.pipeline")


@dataclass(frozen=True)
class TurnStarted:
    token: str
    user: Message
    retried: bool  # a repeated requestId whose first attempt got no answer
    session: ChatSession  # as this transaction left it (summary included): no need to re-read


@dataclass(frozen=True)
class TurnReplay:
    """The requestId was answered before: return that answer again, run nothing."""

    user: Message
    answer: Message


@dataclass(frozen=True)
class TurnBusy:
    """Another turn of this session holds the lease; try again shortly."""


@dataclass(frozen=True)
class TurnHeld:
    """A person holds the conversation (or the customer paused the bot while waiting for one):
    the user message is stored for them, marked forwarded, and the bot does not answer."""

    user: Message
    session: ChatSession
    replayed: bool  # the requestId was stored before: nothing new was written
    agent_name: str = ""  # the person holding the conversation ("" while the bot is paused)


OPEN_HANDOFF_STATES = (
    Handoff.Status.WAITING,
    Handoff.Status.ASSIGNED,
    Handoff.Status.WITH_AGENT,
)
# Hand-off states in which the bot stays silent: always while an agent holds the conversation,
# and while waiting for one when the customer asked the bot to stop.
HELD_STATES = frozenset({"with_agent"})
PAUSABLE_STATES = frozenset({"waiting", "assigned"})


def bot_is_held(session: ChatSession) -> bool:
    """Whether the bot must not answer this session's messages now."""
    return session.handoff_status in HELD_STATES or (
        session.bot_paused and session.handoff_status in PAUSABLE_STATES
    )


# The session columns a turn writes (a full save would rewrite the summary and metadata too).
TURN_FIELDS = (
    "last_seq",
    "message_count",
    "turn_token",
    "turn_lease_until",
    "last_activity",
    "expires_at",
)
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
TOPIC_FIELDS = ("active_topics", "resolved_issues")


def locked_session(session_id: str) -> ChatSession:
    session = ChatSession.objects.select_for_update().filter(pk=session_id).first()
    if session is None or session.is_expired():
        raise ApiError("SESSION_NOT_FOUND", "No such session, or it has expired.")
    if session.status == ChatSession.Status.ENDED:
        raise ApiError("INVALID_SESSION", "This session has ended.", status=409)
    return session


def _next_seq(session: ChatSession) -> int:
    session.last_seq += 1
    session.message_count += 1
    return session.last_seq


def begin_turn(
    *, session_id: str, content: str, request_id: str | None, metadata: dict[str, Any]
) -> TurnStarted | TurnReplay | TurnBusy | TurnHeld:
    """Take the session's lease and commit the user message, or say why not yet; while a person
    holds the conversation, commit the message for them instead (no lease, no answer)."""
    now = timezone.now()
    with write_transaction():
        session = locked_session(session_id)
        leased = session.turn_lease_until is not None and session.turn_lease_until > now
        existing = None
        if request_id:
            existing = Message.objects.filter(session=session, request_id=request_id).first()
            if existing is not None and existing.status == Message.Status.ANSWERED:
                answer = (
                    existing.replies.filter(role=Message.Role.ASSISTANT).order_by("-seq").first()
                )
                if answer is not None:
                    return TurnReplay(user=existing, answer=answer)
            if existing is not None and existing.status == Message.Status.FORWARDED:
                holder = _open_handoff(session)
                return TurnHeld(
                    user=existing, session=session, replayed=True, agent_name=_holder(holder)
                )
        if bot_is_held(session):
            return _forward(session, existing, content, request_id, metadata, now)
        if leased:
            return TurnBusy()
        if session.turn_token:
            # The lease lapsed with its turn unfinished (its process died): that turn's message
            # will never be answered by it; say so rather than leave it pending for ever.
            Message.objects.filter(session=session, status=Message.Status.PENDING).update(
                status=Message.Status.UNANSWERED, error_code="INTERNAL_ERROR"
            )
        token = secrets.token_hex(16)
        session.turn_token = token
        session.turn_lease_until = now + timedelta(seconds=settings.TURN_LEASE_SECONDS)
        if existing is not None:
            existing.status = Message.Status.PENDING
            existing.save(update_fields=["status"])
            session.save(update_fields=["turn_token", "turn_lease_until"])
            return TurnStarted(token=token, user=existing, retried=True, session=session)
        user = _new_user_message(
            session, content, Message.Status.PENDING, request_id, metadata, now
        )
        session.save(update_fields=[*TURN_FIELDS, "status"])
    return TurnStarted(token=token, user=user, retried=False, session=session)


def _new_user_message(
    session: ChatSession,
    content: str,
    status: str,
    request_id: str | None,
    metadata: dict[str, Any],
    now: datetime,
) -> Message:
    """Store the customer's message as the session's next ``seq`` and make the session active
    again (the caller saves the session, inside the transaction that locked it)."""
    user = Message.objects.create(
        session=session,
        seq=_next_seq(session),
        role=Message.Role.USER,
        content=content,
        status=status,
        request_id=request_id,
        metadata=metadata,
        created_at=now,
    )
    touch_expiry(session, now)
    if session.status == ChatSession.Status.IDLE:
        session.status = ChatSession.Status.ACTIVE
    return user


def _forward(
    session: ChatSession,
    existing: Message | None,
    content: str,
    request_id: str | None,
    metadata: dict[str, Any],
    now: datetime,
) -> TurnHeld:
    """Store the user message for the person holding the conversation, and show it in their
    inbox (inside begin_turn's transaction, with the session row locked: one trip to the
    database thread for both)."""
    if existing is not None:  # its first attempt was never answered: it goes to the person now
        existing.status = Message.Status.FORWARDED
        existing.error_code = ""
        existing.save(update_fields=["status", "error_code"])
        user = existing
    else:
        user = _new_user_message(
            session, content, Message.Status.FORWARDED, request_id, metadata, now
        )
        session.save(
            update_fields=["last_seq", "message_count", "last_activity", "expires_at", "status"]
        )
    handoff = _open_handoff(session, lock=True)
    if handoff is not None:
        handoff.last_customer_message = user.content[:2000]
        handoff.last_customer_at = user.created_at
        handoff.updated_at = now
        handoff.save(update_fields=["last_customer_message", "last_customer_at", "updated_at"])
        inbox_changed_on_commit(wire.inbox_item(handoff))
    return TurnHeld(user=user, session=session, replayed=False, agent_name=_holder(handoff))


def _open_handoff(session: ChatSession, *, lock: bool = False) -> Handoff | None:
    """The session's open hand-off (at most one), with its assignee."""
    handoffs = Handoff.objects.select_related("assignee")
    if lock:
        handoffs = handoffs.select_for_update(of=("self",))
    handoff = handoffs.filter(session=session, status__in=OPEN_HANDOFF_STATES).first()
    if handoff is not None:
        handoff.session = session  # the locked row: no second read of it
    return handoff


def _holder(handoff: Handoff | None) -> str:
    """The name of the agent holding the conversation ("" when nobody does)."""
    if handoff is None or handoff.status != Handoff.Status.WITH_AGENT:
        return ""
    return wire.display_name(handoff.assignee)


@dataclass(frozen=True)
class AnswerRecord:
    message_id: str
    content: str
    complete: bool
    model: str
    fallback_used: bool
    prompt_tokens: int
    completion_tokens: int
    processing_ms: int
    tool_calls: list[dict[str, Any]]
    citations: list[dict[str, str]]


def finish_turn(
    *, session_id: str, token: str, user: Message, answer: AnswerRecord, topic: str | None = None
) -> tuple[Message, bool]:
    """Store the assistant's answer (whole or cut off), mark the user message, free the lease.

    Returns the stored message and whether a summary is now due (the caller queues it).
    """
    now = timezone.now()
    with write_transaction():
        session = ChatSession.objects.select_for_update().get(pk=session_id)
        message = Message.objects.create(
            id=answer.message_id,
            session=session,
            seq=_next_seq(session),
            role=Message.Role.ASSISTANT,
            content=answer.content,
            status=Message.Status.COMPLETE if answer.complete else Message.Status.INCOMPLETE,
            reply_to_id=user.pk,
            tool_calls=answer.tool_calls,
            model=answer.model,
            fallback_used=answer.fallback_used,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            total_tokens=answer.prompt_tokens + answer.completion_tokens,
            processing_ms=answer.processing_ms,
            error_code="" if answer.complete else "AI_SERVICE_UNAVAILABLE",
            metadata={"citations": answer.citations} if answer.citations else {},
            created_at=now,
        )
        Message.objects.filter(pk=user.pk).update(
            status=Message.Status.ANSWERED if answer.complete else Message.Status.UNANSWERED,
            error_code="" if answer.complete else "AI_SERVICE_UNAVAILABLE",
        )
        session.prompt_tokens += answer.prompt_tokens
        session.completion_tokens += answer.completion_tokens
        session.total_tokens += answer.prompt_tokens + answer.completion_tokens
        touch_expiry(session, now)
        if answer.complete:
            track_topics(session=session, user_text=user.content, topic=topic)
        _release(session, token)
        session.save(
            update_fields=[*TURN_FIELDS, *USAGE_FIELDS, "active_topics", "resolved_issues"]
        )
        due = summary_due(session) is not None
    return message, due


def fail_turn(*, session_id: str, token: str, user_id: str, error_code: str) -> None:
    """No answer at all: the user message stays, marked unanswered; the lease is freed."""
    with write_transaction():
        Message.objects.filter(pk=user_id).update(
            status=Message.Status.UNANSWERED, error_code=error_code
        )
        session = ChatSession.objects.select_for_update().filter(pk=session_id).first()
        if session is not None:
            _release(session, token)
            session.save(update_fields=["turn_token", "turn_lease_until"])


def renew_lease(*, session_id: str, token: str) -> bool:
    """Extend a running turn's lease; False when it is no longer this turn's."""
    until = timezone.now() + timedelta(seconds=settings.TURN_LEASE_SECONDS)
    with write_transaction():
        updated = ChatSession.objects.filter(pk=session_id, turn_token=token).update(
            turn_lease_until=until
        )
    return updated == 1


async def keep_lease(session_id: str, token: str) -> None:
    """Renew a running turn's lease every third of its length until cancelled (the turn is over)
    or the lease is no longer the turn's."""
    while True:
        await asyncio.sleep(settings.TURN_LEASE_SECONDS / 3)
        try:
            if not await sync_to_async(renew_lease)(session_id=session_id, token=token):
                return
        except Exception:
            log.warning("lease_renewal_failed", session_id=session_id, exc_info=True)


def _release(session: ChatSession, token: str) -> None:
    # Only the holder frees the lease: a turn that outlived its lease must not free a successor's.
    if session.turn_token == token:
        session.turn_token = ""
        session.turn_lease_until = None


def post_system_message(*, session_id: str, content: str) -> Message:
    """Add a ``system`` message to the conversation (e.g. "an agent will take over"); it is
    delivered to every socket of the session once committed."""
    now = timezone.now()
    with write_transaction():
        session = locked_session(session_id)
        message = Message.objects.create(
            session=session,
            seq=_next_seq(session),
            role=Message.Role.SYSTEM,
            content=content,
            status=Message.Status.COMPLETE,
            created_at=now,
        )
        touch_expiry(session, now)
        session.save(update_fields=["last_seq", "message_count", "last_activity", "expires_at"])
        publish_on_commit(session_id, [message])
    return message


def post_staff_message(
    *, session_id: str, content: str, agent_name: str, agent_id: int, draft_id: int | None = None
) -> Message:
    """Add an agent's reply (role ``staff``) to the conversation, numbered like every message;
    delivered to every socket of the session once committed. Must run inside the caller's
    transaction with the session row locked (``chat.handoff.staff_reply``)."""
    now = timezone.now()
    session = locked_session(session_id)
    metadata: dict[str, Any] = {"agent": {"id": agent_id, "name": agent_name}}
    if draft_id is not None:
        metadata["draftId"] = draft_id
    message = Message.objects.create(
        session=session,
        seq=_next_seq(session),
        role=Message.Role.STAFF,
        content=content,
        status=Message.Status.COMPLETE,
        metadata=metadata,
        created_at=now,
    )
    touch_expiry(session, now)
    session.save(update_fields=["last_seq", "message_count", "last_activity", "expires_at"])
    publish_on_commit(session_id, [message])
    return message


def session_mark_escalated(*, session_id: str, ticket_id: str | None) -> None:
    """Mark the session as handed to a human with ``ticket_id`` (None: take the mark back)."""
    with write_transaction():
        session = locked_session(session_id)
        session.escalated_at = timezone.now() if ticket_id else None
        session.escalation_ticket = ticket_id or ""
        session.save(update_fields=["escalated_at", "escalation_ticket"])
