"""Session archives: write a conversation to archive storage and prove it is there, read it back
checked against its sha256, re-check stored archives, and restore one for staff.

An archive is the whole conversation (session fields, summary, every message with its tool
calls and usage, hand-offs, notes, ratings and answer votes) as gzipped JSON in the ``archives``
storage (the filesystem by default, S3 or R2 in production). Its ``SessionArchive`` row is
written only after the object was read back from storage with the same sha256, so a row always
names an object that was whole when written; ``check_archive`` finds out whether it still is.

A restored session is the archive's conversation back in the hot tables for staff: ended,
``restored_at`` set, unknown to clients (``chat.sessions.session_get``) and left alone by
expiry until staff release it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import structlog
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import IntegrityError
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from chat.models import (
    AnswerFeedback,
    ArchiveTicket,
    ChatSession,
    Handoff,
    HandoffNote,
    Message,
    Rating,
    SessionArchive,
)
from supportbot import metrics
from supportbot.db import write_transaction
from supportbot.errors import ms
from supportbot.ids import is_session_id
from tools.models import Ticket

log = structlog.get_logger("chat.archives")

FORMAT = "supportbot.session.v2"
# v1 (before hand-offs, notes and ratings were kept) reads the same way, with those left empty.
FORMATS = ("supportbot.session.v1", FORMAT)
Integrity = SessionArchive.Integrity


class ArchiveError(Exception):
    """An archive that cannot be read as recorded: ``state`` is the ``Integrity`` it shows."""

    def __init__(self, state: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message


class RestoreRefused(Exception):
    """A restore that would change something it must not (the session is still live)."""


def archive_storage() -> Storage:
    return storages["archives"]


def backend_name(storage: Storage | None = None) -> str:
    """ "s3" (S3 or R2) or "filesystem": where this process writes archives."""
    storage = storage or archive_storage()
    return "s3" if type(storage).__name__ == "S3Storage" else "filesystem"


def _messages(session: ChatSession) -> list[dict[str, Any]]:
    return [
        {
            "messageId": m.id,
            "seq": m.seq,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "requestId": m.request_id,
            "replyTo": m.reply_to_id,
            "toolCalls": m.tool_calls,
            "model": m.model,
            "fallbackUsed": m.fallback_used,
            "tokens": {"prompt": m.prompt_tokens, "completion": m.completion_tokens},
            "processingMs": m.processing_ms,
            "errorCode": m.error_code,
            "metadata": m.metadata,
            "timestamp": ms(m.created_at),
        }
        for m in Message.objects.filter(session=session).order_by("seq")
    ]


def _staff_records(session: ChatSession) -> dict[str, list[dict[str, Any]]]:
    """Hand-offs, notes, ratings and answer votes: what a person did around the conversation."""
    return {
        "handoffs": [
            {
                "status": h.status,
                "reason": h.reason,
                "topic": h.topic,
                "note": h.note,
                "summary": h.summary,
                "ticketId": h.ticket_id,
                "contactEmail": h.contact_email,
                "assignee": h.assignee.get_username() if h.assignee else "",
                "requestedAt": ms(h.requested_at),
                "resolvedAt": ms(h.resolved_at),
                "resolvedBy": h.resolved_by,
            }
            for h in Handoff.objects.filter(session=session).select_related("assignee")
        ],
        "notes": [
            {"author": n.author, "text": n.text, "createdAt": ms(n.created_at)}
            for n in HandoffNote.objects.filter(session=session)
        ],
        "ratings": [
            {
                "score": r.score,
                "comment": r.comment,
                "agent": r.agent,
                "createdAt": ms(r.created_at),
            }
            for r in Rating.objects.filter(session=session)
        ],
        "answerVotes": [
            {"messageId": f.message_id, "vote": f.vote, "createdAt": ms(f.created_at)}
            for f in AnswerFeedback.objects.filter(session=session)
        ],
    }


def session_document(session: ChatSession) -> dict[str, Any]:
    """The archived form of a conversation (``FORMAT``)."""
    return {
        "format": FORMAT,
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
        "escalatedAt": ms(session.escalated_at),
        "escalationTicket": session.escalation_ticket,
        "tickets": session_tickets(session),
        "tokens": {
            "prompt": session.prompt_tokens,
            "completion": session.completion_tokens,
            "total": session.total_tokens,
        },
        "messages": _messages(session),
        **_staff_records(session),
    }


def session_tickets(session: ChatSession) -> list[str]:
    ids = set(Ticket.objects.filter(session_id=session.id).values_list("pk", flat=True))
    ids.update(
        Handoff.objects.filter(session=session)
        .exclude(ticket_id="")
        .values_list("ticket_id", flat=True)
    )
    if session.escalation_ticket:
        ids.add(session.escalation_ticket)
    return sorted(ids)


def encode(document: dict[str, Any]) -> bytes:
    return gzip.compress(
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), mtime=0
    )


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _is_missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    error = getattr(exc, "response", None)
    code = str(error.get("Error", {}).get("Code", "")) if isinstance(error, dict) else ""
    return code in ("404", "NoSuchKey", "NotFound")


def read_object(key: str, storage: Storage | None = None) -> bytes:
    """The stored bytes of an archive; ``ArchiveError`` "missing" or "unreadable"."""
    storage = storage or archive_storage()
    try:
        with storage.open(key, "rb") as handle:
            data = handle.read()
    except Exception as exc:
        if _is_missing(exc):
            raise ArchiveError(Integrity.MISSING, f"No object {key!r} in archive storage.") from exc
        raise ArchiveError(
            Integrity.UNREADABLE, f"Archive storage did not answer ({type(exc).__name__})."
        ) from exc
    return data if isinstance(data, bytes) else bytes(data)


def _delete_object(key: str, storage: Storage) -> None:
    try:
        storage.delete(key)
    except Exception:
        log.warning("archive_object_not_deleted", key=key, exc_info=True)


def write_archive(*, session_id: str, reason: str, fresh: bool = False) -> SessionArchive:
    """Write the conversation to archive storage, read it back, and record it once its sha256
    matches. Once per session and reason unless ``fresh`` (expiry replacing a bad archive).
    Raises whatever storage raised, or ``ArchiveError``; then nothing is recorded."""
    if not fresh:
        done = SessionArchive.objects.filter(session_id=session_id, reason=reason).first()
        if done is not None:
            return done
    session = ChatSession.objects.get(pk=session_id)
    document = session_document(session)
    payload = encode(document)
    digest = sha256(payload)
    storage = archive_storage()
    stamp = timezone.now().strftime("%Y/%m/%d")
    key = storage.save(f"{stamp}/{session.id}-{reason}.json.gz", ContentFile(payload))
    try:
        stored = read_object(key, storage)
        if sha256(stored) != digest:
            raise ArchiveError(Integrity.ALTERED, f"{key!r} read back with another sha256.")
        with write_transaction():
            archive = SessionArchive.objects.create(
                session_id=session.id,
                user_id=session.user_id,
                key=key,
                backend=backend_name(storage),
                size=len(payload),
                sha256=digest,
                message_count=len(document["messages"]),
                reason=reason,
                started_at=session.created_at,
                ended_at=session.ended_at or session.last_activity,
                integrity=Integrity.OK,
                checked_at=timezone.now(),
            )
            ArchiveTicket.objects.bulk_create(
                ArchiveTicket(archive=archive, ticket_id=t) for t in document["tickets"]
            )
    except BaseException:
        _delete_object(key, storage)  # never leave an object that no row names
        raise
    log.info("session_archived", session_id=session.id, key=key, size=archive.size, reason=reason)
    return archive


def load_document(archive: SessionArchive) -> dict[str, Any]:
    """The archived conversation, after checking the object against the recorded sha256."""
    payload = read_object(archive.key)
    actual = sha256(payload)
    if actual != archive.sha256:
        raise ArchiveError(
            Integrity.ALTERED,
            f"The stored object does not match its record: sha256 {actual[:16]}… of "
            f"{len(payload)} bytes, recorded {archive.sha256[:16]}… of {archive.size} bytes.",
        )
    try:
        document = json.loads(gzip.decompress(payload))
    except (OSError, EOFError, ValueError) as exc:
        raise ArchiveError(Integrity.ALTERED, "The object is not gzipped JSON.") from exc
    if (
        not isinstance(document, dict)
        or document.get("format") not in FORMATS
        or document.get("sessionId") != archive.session_id
        or not isinstance(document.get("messages"), list)
    ):
        raise ArchiveError(Integrity.ALTERED, "The object is not this session's archive.")
    return document


def check_archive(archive: SessionArchive) -> str:
    """Re-read one archive and record the verdict (``Integrity``); a bad one is counted."""
    try:
        intact = sha256(read_object(archive.key)) == archive.sha256
        state: str = Integrity.OK if intact else Integrity.ALTERED
    except ArchiveError as exc:
        state = exc.state
    return record_integrity(archive, state)


def record_integrity(archive: SessionArchive, state: str) -> str:
    """Record a check's verdict on ``archive`` (``integrity``, ``checked_at``); count a bad one."""
    now = timezone.now()
    SessionArchive.objects.filter(pk=archive.pk).update(integrity=state, checked_at=now)
    archive.integrity, archive.checked_at = state, now
    if state != Integrity.OK:
        log.warning("archive_integrity", key=archive.key, state=state)
        metrics.incr("archive_failures", reason=state)
    return str(state)


@dataclass
class IntegrityReport:
    checked: int = 0
    ok: int = 0
    missing: int = 0
    altered: int = 0
    unreadable: int = 0
    bad: list[str] | None = None  # keys of the archives that are not ok

    def add(self, archive: SessionArchive, state: str) -> None:
        self.checked += 1
        setattr(self, state, getattr(self, state) + 1)
        if state != Integrity.OK:
            self.bad = [*(self.bad or []), archive.key]


def verify_archives(*, limit: int | None = None) -> IntegrityReport:
    """Check ``limit`` archives, those never or longest ago checked first (every one if None)."""
    report = IntegrityReport()
    # Never checked (rows from before checks were recorded) first: PostgreSQL sorts NULL last.
    archives = SessionArchive.objects.order_by(F("checked_at").asc(nulls_first=True), "pk")
    if limit is not None:
        archives = archives[:limit]
    for archive in archives.iterator(chunk_size=200):
        report.add(archive, check_archive(archive))
    log.info("archives_verified", checked=report.checked, bad=len(report.bad or []))
    return report


def _when(value: Any) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def document_messages(document: dict[str, Any], session_id: str) -> list[Message]:
    """The archived messages as (unsaved) ``Message`` objects, for transcripts and restore."""
    messages = []
    for item in document.get("messages") or []:
        if not isinstance(item, dict):
            continue
        tokens = _dict(item.get("tokens"))
        prompt, completion = int(tokens.get("prompt") or 0), int(tokens.get("completion") or 0)
        messages.append(
            Message(
                id=str(item.get("messageId") or ""),
                session_id=session_id,
                seq=int(item.get("seq") or 0),
                role=str(item.get("role") or Message.Role.SYSTEM),
                content=str(item.get("content") or ""),
                status=str(item.get("status") or Message.Status.COMPLETE),
                request_id=item.get("requestId") or None,
                tool_calls=item.get("toolCalls") or [],
                model=str(item.get("model") or ""),
                fallback_used=bool(item.get("fallbackUsed")),
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
                processing_ms=item.get("processingMs"),
                error_code=str(item.get("errorCode") or ""),
                metadata=_dict(item.get("metadata")),
                created_at=_when(item.get("timestamp")) or timezone.now(),
            )
        )
    return messages


def _restored_session(document: dict[str, Any], *, by: str, now: datetime) -> ChatSession:
    tokens = _dict(document.get("tokens"))
    last = _when(document.get("lastActivity")) or now
    return ChatSession(
        id=document["sessionId"],
        user_id=str(document.get("userId") or ""),
        metadata=_dict(document.get("metadata")),
        status=ChatSession.Status.ENDED,
        created_at=_when(document.get("createdAt")) or last,
        last_activity=last,
        ended_at=_when(document.get("endedAt")) or last,
        expires_at=now,
        summary=str(document.get("summary") or ""),
        active_topics=document.get("activeTopics") or [],
        resolved_issues=document.get("resolvedIssues") or [],
        escalated_at=_when(document.get("escalatedAt")),
        escalation_ticket=str(document.get("escalationTicket") or ""),
        prompt_tokens=int(tokens.get("prompt") or 0),
        completion_tokens=int(tokens.get("completion") or 0),
        total_tokens=int(tokens.get("total") or 0),
        restored_at=now,
        restored_by=by[:150],
    )


def restore_archive(archive: SessionArchive, *, by: str) -> tuple[ChatSession, bool]:
    """Bring an archived conversation back as a read-only ended session for staff; returns it
    and whether this call restored it (False: it was already restored, nothing changed).

    Raises ``RestoreRefused`` while the session is still live in the database, and
    ``ArchiveError`` when the object is missing, altered or unreadable: nothing is written."""
    existing = ChatSession.objects.filter(pk=archive.session_id).first()
    if existing is not None:
        if existing.is_restored:
            return existing, False
        raise RestoreRefused(
            f"Session {archive.session_id} is still in the database ({existing.status}): "
            "it is shown in the session views already, and there is nothing to restore."
        )
    document = load_document(archive)
    now = timezone.now()
    session = _restored_session(document, by=by, now=now)
    messages = document_messages(document, session.id)
    session.message_count = len(messages)
    session.last_seq = max((m.seq for m in messages), default=0)
    session.summarized_through_seq = 0
    try:
        with write_transaction():
            session.save(force_insert=True)
            Message.objects.bulk_create(messages, batch_size=500)
    except IntegrityError:
        # Restored at the same moment by someone else (or the id came back): leave theirs.
        existing = ChatSession.objects.filter(pk=archive.session_id).first()
        if existing is not None and existing.is_restored:
            return existing, False
        raise
    log.info("archive_restored", session_id=session.id, key=archive.key, by=by)
    return session, True


def release_restored(session_id: str) -> bool:
    """Remove a restored session from the hot tables again (its archive stays)."""
    with write_transaction():
        deleted, _ = ChatSession.objects.filter(pk=session_id, restored_at__isnull=False).delete()
    return bool(deleted)


def delete_archive(archive: SessionArchive) -> None:
    """Delete an archive's object, then its record (retention, erasure). A missing object is
    already gone; a storage that does not answer raises ``ArchiveError`` and keeps the record."""
    delete_archive_object(archive)
    archive.delete()


def delete_archive_object(archive: SessionArchive) -> None:
    """Delete an archive's object and keep its record, for a caller that deletes the records
    itself in one transaction afterwards (subject erasure). Errors as ``delete_archive``."""
    storage = archive_storage()
    try:
        storage.delete(archive.key)
    except Exception as exc:
        if not _is_missing(exc):
            raise ArchiveError(
                Integrity.UNREADABLE, f"Archive storage did not answer ({type(exc).__name__})."
            ) from exc


def search_archives(
    query: str = "", *, since: date | None = None, until: date | None = None
) -> QuerySet[SessionArchive]:
    """Archives by session id, ``userId`` or ticket id (exact, each through its index), and by
    the day the conversation ended (``since`` and ``until`` inclusive), newest first."""
    archives = SessionArchive.objects.all()
    query = query.strip()
    if query:
        if is_session_id(query):
            archives = archives.filter(session_id=query)
        else:
            # The ticket's archive ids first (one or a few): "user_id = X OR id IN (ids)" is two
            # index scans, where "OR id IN (subquery)" reads every archive.
            tickets = ArchiveTicket.objects.filter(ticket_id=query.upper())
            ids = list(tickets.values_list("archive_id", flat=True))
            archives = archives.filter(Q(user_id=query) | Q(pk__in=ids))
    if since is not None:
        archives = archives.filter(ended_at__gte=_day_start(since))
    if until is not None:
        archives = archives.filter(ended_at__lt=_day_start(until + timedelta(days=1)))
    return archives.order_by("-ended_at", "-pk")


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))
