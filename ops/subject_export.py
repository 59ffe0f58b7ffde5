"""A subject request's export: everything held about one person as one JSON document.

The document (``FORMAT``) holds the sessions in the database with their messages, hand-offs,
notes, drafts, ratings and answer votes (the archive's own shape, ``chat.archives``), each
archive's contents read back and checked against its sha256 (an archive that is missing, altered
or unreadable is listed with its error instead of failing the export), the tickets with their
updates, the review items (redacted, as stored), workflow executions, usage days and the admin
history about them. Times are epoch milliseconds, as everywhere on the wire (``API.md``).
"""

from __future__ import annotations

from typing import Any

import structlog
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from chat.archives import ArchiveError, load_document, session_document
from chat.models import ChatSession, ReplyDraft, ReviewItem, SessionArchive
from ops.models import SubjectRequest
from ops.subjects import Holdings, Subject, find_holdings, record_receipt
from supportbot.errors import ms
from supportbot.models import UsageDay
from tools.models import Ticket, WorkflowExecution
from tools.workflows.wire import execution_wire

log = structlog.get_logger("ops.subjects")

FORMAT = "supportbot.subject-export.v1"
# The document's lists of what is held: all empty means nothing is held.
HELD_LISTS = (
    "sessions",
    "archives",
    "tickets",
    "reviewItems",
    "workflowExecutions",
    "usageDays",
    "adminHistory",
)


def export_subject(*, subject: Subject, requested_by: str, reference: str = "") -> dict[str, Any]:
    """Everything held about ``subject`` as one document; records the receipt (its number is
    the document's ``receipt``)."""
    document = subject_document(subject)
    counts = export_counts(document)
    receipt = record_receipt(
        kind=SubjectRequest.Kind.EXPORT,
        subject=subject,
        requested_by=requested_by,
        reference=reference,
        counts=counts,
        note="" if document["held"] else "Nothing held.",
    )
    document["receipt"] = receipt.pk
    log.info("subject_exported", receipt=receipt.pk, matched_by=subject.matched_by, **counts)
    return document


def subject_document(subject: Subject) -> dict[str, Any]:
    """The export document of ``subject`` (no receipt recorded)."""
    held = find_holdings(subject)
    document: dict[str, Any] = {
        "format": FORMAT,
        "generatedAt": ms(timezone.now()),
        "subject": {"matchedBy": subject.matched_by, "value": subject.value},
        "sessions": [_session(s) for s in held.sessions.order_by("created_at", "pk")],
        "archives": [_archive(a) for a in held.archives],
        "tickets": [_ticket(t) for t in held.tickets.prefetch_related("updates")],
        "reviewItems": [_review_item(i) for i in held.review_items.order_by("created_at", "pk")],
        "workflowExecutions": [
            _workflow(w) for w in held.workflows.prefetch_related("steps").order_by("created_at")
        ],
        "usageDays": [_usage_day(day) for day in held.usage_days],
        "adminHistory": _history(held),
    }
    document["held"] = any(document[key] for key in HELD_LISTS)
    return document


def export_counts(document: dict[str, Any]) -> dict[str, int]:
    """What an export document holds, per kind (a receipt's counts)."""
    sessions = document["sessions"]
    archives = document["archives"]
    return {
        "sessions": len(sessions),
        "messages": sum(len(s["messages"]) for s in sessions),
        "handoffs": sum(len(s["handoffs"]) for s in sessions),
        "notes": sum(len(s["notes"]) for s in sessions),
        "drafts": sum(len(s["drafts"]) for s in sessions),
        "ratings": sum(len(s["ratings"]) for s in sessions),
        "answer_votes": sum(len(s["answerVotes"]) for s in sessions),
        "archives": len(archives),
        "archive_errors": sum(1 for a in archives if "error" in a),
        "tickets": len(document["tickets"]),
        "ticket_updates": sum(len(t["updates"]) for t in document["tickets"]),
        "review_items": len(document["reviewItems"]),
        "workflow_executions": len(document["workflowExecutions"]),
        "usage_days": len(document["usageDays"]),
        "admin_history": len(document["adminHistory"]),
    }


def _session(session: ChatSession) -> dict[str, Any]:
    entry = session_document(session)
    entry.pop("format", None)
    entry["restored"] = session.is_restored
    entry["drafts"] = [
        {
            "content": d.content,
            "outcome": d.outcome,
            "model": d.model,
            "decidedBy": d.decided_by,
            "createdAt": ms(d.created_at),
            "decidedAt": ms(d.decided_at),
        }
        for d in ReplyDraft.objects.filter(session=session).order_by("created_at", "pk")
    ]
    return entry


def _archive(archive: SessionArchive) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "sessionId": archive.session_id,
        "reason": archive.reason,
        "archivedAt": ms(archive.created_at),
        "endedAt": ms(archive.ended_at),
        "messageCount": archive.message_count,
    }
    try:
        entry["document"] = load_document(archive)
    except ArchiveError as exc:
        entry["error"] = {"state": exc.state, "message": exc.message}
    return entry


def _ticket(ticket: Ticket) -> dict[str, Any]:
    return {
        "ticketId": ticket.pk,
        "sessionId": ticket.session_id,
        "title": ticket.title,
        "description": ticket.description,
        "priority": ticket.priority,
        "category": ticket.category,
        "userEmail": ticket.user_email,
        "status": ticket.status,
        "metadata": ticket.metadata,
        "createdAt": ms(ticket.created_at),
        "updatedAt": ms(ticket.updated_at),
        "estimatedResolution": ms(ticket.estimated_resolution),
        "updates": [
            {
                "kind": u.kind,
                "message": u.message,
                "status": u.status,
                "author": u.author,
                "public": u.public,
                "createdAt": ms(u.created_at),
            }
            for u in ticket.updates.all()
        ],
    }


def _review_item(item: ReviewItem) -> dict[str, Any]:
    """As stored: the excerpt is redacted; the encrypted clear copy and fingerprints stay out."""
    return {
        "kind": item.kind,
        "action": item.action,
        "direction": item.direction,
        "status": item.status,
        "sessionId": item.session_id,
        "messageId": item.message_id,
        "categories": item.categories,
        "excerpt": item.excerpt,
        "reason": item.reason,
        "createdAt": ms(item.created_at),
        "reviewedAt": ms(item.reviewed_at),
    }


def _workflow(execution: WorkflowExecution) -> dict[str, Any]:
    """The execution as ``/api/workflow/*`` shows it, with its session and parameters."""
    return {
        **execution_wire(execution),
        "sessionId": execution.session_id,
        "parameters": execution.parameters,
    }


def _usage_day(day: UsageDay) -> dict[str, Any]:
    return {
        "day": day.day.isoformat(),
        "turns": day.turns,
        "promptTokens": day.prompt_tokens,
        "completionTokens": day.completion_tokens,
        "costUsd": day.cost_usd,
    }


def _history(held: Holdings) -> list[dict[str, Any]]:
    entries = held.admin_history.select_related("content_type", "user").order_by("action_time")
    return [_history_entry(entry) for entry in entries]


def _history_entry(entry: LogEntry) -> dict[str, Any]:
    action = {1: "added", 2: "changed", 3: "deleted"}.get(entry.action_flag, "changed")
    return {
        "at": ms(entry.action_time),
        "action": action,
        "object": f"{entry.content_type.app_label}.{entry.content_type.model}"
        if entry.content_type
        else "",
        "objectId": entry.object_id,
        "by": entry.user.get_username(),
        "message": entry.get_change_message(),
    }
