"""Session services: create, look up and end sessions, and read their messages (their wire shapes
are ``chat.wire``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from chat import wire
from chat.events import inbox_changed_on_commit, session_ended_on_commit
from chat.guards import current_allowlist, redact_json
from chat.guards.validation import unstorable
from chat.models import ChatSession, Handoff, Message
from chat.tasks import archive_session_task
from supportbot import metrics, ratelimit
from supportbot.clients import client_label, ip_fingerprint
from supportbot.db import write_transaction
from supportbot.errors import ApiError
from supportbot.ids import is_session_id

log = structlog.get_logger("chat.sessions")

MAX_METADATA_BYTES = 8 * 1024


def validate_metadata(metadata: Any, *, field: str = "metadata") -> dict[str, Any]:
    """Metadata is a small JSON object of storable values."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ApiError(
            "INVALID_FIELD_VALUE", f"{field} must be an object.", details={"field": field}
        )
    problem = unstorable(metadata)
    if problem:
        raise ApiError("INVALID_FIELD_VALUE", f"{field} {problem}.", details={"field": field})
    if len(json.dumps(metadata, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"{field} is larger than {MAX_METADATA_BYTES} bytes.",
            details={"field": field, "maxBytes": MAX_METADATA_BYTES},
        )
    return metadata


def session_create(
    *, user_id: str | None = None, metadata: Any = None, client_ip: str = ""
) -> ChatSession:
    """Open a new session with a fresh, unguessable id, within the client's session limits."""
    user_id = user_id or ""
    problem = unstorable(user_id)
    if problem or len(user_id) > 128:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"userId {problem or 'is longer than 128 characters'}.",
            details={"field": "userId"},
        )
    metadata = validate_metadata(metadata)
    if metadata:
        metadata = redact_json(metadata, current_allowlist(), field="metadata")
    client_key = ip_fingerprint(client_ip) if client_ip else ""
    with write_transaction():
        if ratelimit.enabled():
            _check_session_capacity(client_key, client_ip)
            ratelimit.hit(("ip_session_creations", client_label(client_ip)), client_ip=client_ip)
        session = ChatSession.objects.create(
            user_id=user_id, metadata=metadata, client_key=client_key
        )
    metrics.incr("sessions", event="created")
    return session


# pg_advisory_xact_lock key serialising session creation (count, then insert) on PostgreSQL;
# SQLite's write transactions are serial already.
_SESSION_CREATE_LOCK = 0x5E55_C0DE


def live_sessions(*, now: datetime) -> QuerySet[ChatSession]:
    """The sessions the sessions-at-once limits count: not ended, not expired, and active within
    ``SESSION_IDLE_MINUTES`` (an idle session frees its slot; ending one frees it at once)."""
    idle = timedelta(minutes=settings.SESSION_IDLE_MINUTES)
    return ChatSession.objects.filter(last_activity__gt=now - idle, expires_at__gt=now).exclude(
        status=ChatSession.Status.ENDED
    )


def _check_session_capacity(client_key: str, client_ip: str) -> None:
    """Refuse a new session when the client, or the service, has too many live ones.

    Live as ``live_sessions`` says. Counted inside the creating transaction.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SESSION_CREATE_LOCK])
    now = timezone.now()
    idle = timedelta(minutes=settings.SESSION_IDLE_MINUTES)
    live = live_sessions(now=now)
    if client_key:
        mine = live.filter(client_key=client_key)
        oldest = mine.order_by("last_activity").values_list("last_activity", flat=True).first()
        ratelimit.check_capacity(
            "ip_concurrent_sessions",
            client_label(client_ip),
            mine.count() if oldest is not None else 0,
            oldest_frees_in=(oldest + idle - now).total_seconds() if oldest else 1.0,
        )
    ratelimit.check_capacity(
        "global_active_sessions", ratelimit.GLOBAL, live.count(), oldest_frees_in=60.0
    )


def session_get(*, session_id: Any, allow_ended: bool = True) -> ChatSession:
    """The live session with this id; malformed, unknown and expired ids are refused."""
    if not is_session_id(session_id):
        raise ApiError(
            "INVALID_SESSION", "The session id is malformed.", details={"field": "sessionId"}
        )
    session = ChatSession.objects.filter(pk=session_id).first()
    # A session restored from its archive is for staff: to a client it stays gone.
    if session is None or session.is_expired() or session.is_restored:
        raise ApiError("SESSION_NOT_FOUND", "No such session, or it has expired.")
    if not allow_ended and session.status == ChatSession.Status.ENDED:
        raise ApiError("INVALID_SESSION", "This session has ended.", status=409)
    return session


def session_end(*, session_id: str) -> ChatSession:
    """End a session (409 when it already ended)."""
    with write_transaction():
        session = session_get(session_id=session_id)
        session = ChatSession.objects.select_for_update().get(pk=session.pk)
        if session.status == ChatSession.Status.ENDED:
            raise ApiError("INVALID_SESSION", "This session has already ended.", status=409)
        now = timezone.now()
        session.status = ChatSession.Status.ENDED
        session.ended_at = now
        if _close_handoffs(session, now):
            session.handoff_status = Handoff.Status.RESOLVED
            session.bot_paused = False
        session.save(update_fields=["status", "ended_at", "handoff_status", "bot_paused"])
        session_ended_on_commit(session.id)
    metrics.incr("sessions", event="ended")
    # Archived by a task (retried with backoff), not inside this request: a slow or
    # unreachable archive store must not hold the client. Expiry archives what this missed.
    try:
        archive_session_task.delay(session.id, "ended")
    except Exception:
        log.exception("archive_failed", session_id=session.id)
    return session


def _close_handoffs(session: ChatSession, now: datetime) -> bool:
    """The customer ended the conversation: its open hand-off leaves the staff inbox."""
    closed = False
    for handoff in (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("assignee")
        .filter(session=session)
        .exclude(status=Handoff.Status.RESOLVED)
    ):
        handoff.status = Handoff.Status.RESOLVED
        handoff.resolved_at = handoff.updated_at = now
        handoff.resolved_by = "the customer (ended the conversation)"
        handoff.save(update_fields=["status", "resolved_at", "updated_at", "resolved_by"])
        handoff.session = session
        inbox_changed_on_commit(wire.inbox_item(handoff))
        closed = True
    return closed


def touch_expiry(session: ChatSession, now: datetime) -> None:
    """Activity moves the inactivity deadline (the caller saves)."""
    session.last_activity = now
    session.expires_at = now + timedelta(hours=settings.SESSION_TTL_HOURS)


def messages_after(session_id: str, last_seq: int, limit: int) -> list[Message]:
    """Up to ``limit`` stored messages after ``last_seq``, in order."""
    return list(
        Message.objects.filter(session_id=session_id, seq__gt=last_seq).order_by("seq")[:limit]
    )


def last_stored_seq(session_id: str) -> int:
    """The seq of the session's newest stored message (0 when there is none)."""
    last = Message.objects.filter(session_id=session_id).order_by("-seq").values_list("seq").first()
    return last[0] if last else 0


def recent_messages(session: ChatSession, *, limit: int = 20, offset: int = 0) -> list[Message]:
    """The session's most recent messages (skipping the ``offset`` newest), oldest first."""
    newest_first = list(session.messages.order_by("-seq")[offset : offset + limit])
    return newest_first[::-1]


CONVERSATION_ROLES = {"user": "Customer", "assistant": "Assistant", "staff": "Agent"}


def conversation_text(session_id: str, *, limit: int = 200) -> str:
    """The session's last ``limit`` messages as "Who: text" lines (for a summary or a ticket)."""
    session = session_get(session_id=session_id)
    rows = list(
        Message.objects.filter(session=session, role__in=list(CONVERSATION_ROLES))
        .order_by("-seq")
        .values_list("role", "content")[:limit]
    )
    return "\n".join(
        f"{CONVERSATION_ROLES[role]}: {' '.join(text.split())}" for role, text in reversed(rows)
    )
