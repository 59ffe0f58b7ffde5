"""Tickets: open one for a session, look one up (only the session's own), cancel, record staff
changes. Every change leaves a ``TicketUpdate``, which is what the customer sees as history.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from django.db import IntegrityError
from django.utils import timezone

from supportbot.db import write_transaction
from supportbot.errors import ms
from tools import ticketing
from tools.models import Ticket, TicketUpdate
from tools.registry import ToolFailure

log = structlog.get_logger("tools.tickets")

# How long a ticket of each priority is expected to take (the customer is told).
RESOLUTION_HOURS = {"urgent": 4, "high": 24, "medium": 72, "low": 168}
FINAL_STATUSES = (Ticket.Status.RESOLVED, Ticket.Status.CLOSED, Ticket.Status.CANCELLED)


class TicketNotFound(Exception):
    """No ticket with that id belongs to this session (whether or not it exists elsewhere)."""


@dataclass(frozen=True)
class TicketData:
    title: str
    description: str
    priority: str = "medium"
    category: str = "general"
    user_email: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def estimated_resolution(priority: str, *, opened: Any = None) -> Any:
    return (opened or timezone.now()) + timedelta(hours=RESOLUTION_HOURS[priority])


def ticket_create(
    *, session_id: str, data: TicketData, idempotency_key: str | None = None, author: str = ""
) -> tuple[Ticket, bool]:
    """Open a ticket; returns it and whether it is new (a known idempotency key returns the
    ticket that key opened, if it is this session's)."""
    if idempotency_key:
        existing = Ticket.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_session(existing, session_id), False
    external = None
    if ticketing.configured():
        # Opened there first; its Idempotency-Key makes a retry after a lost answer safe.
        external = ticketing.external_create(
            reference=session_id,
            fields={
                "title": data.title,
                "description": data.description,
                "priority": data.priority,
                "category": data.category or "general",
                "userEmail": data.user_email,
                "metadata": data.metadata,
            },
            idempotency_key=idempotency_key or "tkt-" + secrets.token_hex(12),
        )
    now = timezone.now()
    try:
        with write_transaction():
            ticket = Ticket.objects.create(
                session_id=session_id,
                title=data.title,
                description=data.description,
                priority=data.priority,
                category=data.category or "general",
                user_email=data.user_email,
                metadata=data.metadata,
                estimated_resolution=estimated_resolution(data.priority, opened=now),
                idempotency_key=idempotency_key or None,
                external_id=external.id if external else "",
                status=external.status if external else Ticket.Status.OPEN,
                created_at=now,
                updated_at=now,
            )
            TicketUpdate.objects.create(
                ticket=ticket,
                kind=TicketUpdate.Kind.CREATED,
                status=ticket.status,
                message="Ticket opened.",
                author=author,
                created_at=now,
            )
    except IntegrityError:
        # Two submits with one key at once: the other one opened it.
        if not idempotency_key:
            raise
        existing = Ticket.objects.get(idempotency_key=idempotency_key)
        return _same_session(existing, session_id), False
    return ticket, True


def _same_session(ticket: Ticket, session_id: str) -> Ticket:
    if ticket.session_id != session_id:
        raise TicketNotFound(ticket.id)
    return ticket


def ticket_for_session(*, session_id: str, ticket_id: str) -> Ticket:
    """The session's own ticket; ``TicketNotFound`` for any other, existing or not."""
    ticket = (
        Ticket.objects.filter(pk=ticket_id.strip().upper(), session_id=session_id)
        .select_related("assignee")
        .first()
    )
    if ticket is None:
        raise TicketNotFound(ticket_id)
    if ticket.external_id and ticketing.configured():
        _refresh(ticket)
    return ticket


def _refresh(ticket: Ticket) -> None:
    """Bring the mirror up to date with the external system; if it cannot be reached the
    customer still gets what we last knew."""
    try:
        external = ticketing.external_get(ticket.external_id)
    except ToolFailure as exc:
        log.warning("ticket.refresh_failed", ticket_id=ticket.pk, reason=exc.message)
        return
    known = set(ticket.updates.exclude(external_id="").values_list("external_id", flat=True))
    now = timezone.now()
    with write_transaction():
        for update in external.updates:
            if update.id not in known:
                TicketUpdate.objects.create(
                    ticket=ticket,
                    kind=TicketUpdate.Kind.NOTE,
                    status=update.status or external.status,
                    message=update.message,
                    author="ticketing",
                    external_id=update.id,
                    created_at=now,
                )
        if external.status != ticket.status:
            _change(
                ticket,
                status=external.status,
                message=_status_text(external.status),
                author="ticketing",
            )


def ticket_cancel(*, ticket_id: str, reason: str, author: str = "") -> Ticket:
    """Cancel a ticket (a workflow compensating a step); a final ticket is left as it is."""
    ticket = Ticket.objects.get(pk=ticket_id)
    if ticket.status in FINAL_STATUSES:
        return ticket
    if ticket.external_id and ticketing.configured():
        ticketing.external_cancel(ticket.external_id, reason=reason)  # raises if it cannot
    with write_transaction():
        ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
        if ticket.status not in FINAL_STATUSES:
            _change(ticket, status=Ticket.Status.CANCELLED, message=reason, author=author)
    return ticket


def ticket_record_changes(
    *, ticket: Ticket, previous: Ticket | None, author: str, note: str = "", public: bool = True
) -> None:
    """After staff saved ``ticket`` in the admin: the history entries its changes call for."""
    now = timezone.now()
    entries = []
    if previous is not None and previous.status != ticket.status:
        entries.append(
            TicketUpdate(
                ticket=ticket,
                kind=TicketUpdate.Kind.STATUS,
                status=ticket.status,
                message=_status_text(ticket.status),
                author=author,
                created_at=now,
            )
        )
    if previous is not None and previous.assignee_id != ticket.assignee_id:
        entries.append(
            TicketUpdate(
                ticket=ticket,
                kind=TicketUpdate.Kind.ASSIGNMENT,
                status=ticket.status,
                message="An agent is now handling this ticket."
                if ticket.assignee_id
                else "The ticket is waiting for an agent.",
                author=author,
                created_at=now,
            )
        )
    if note.strip():
        entries.append(
            TicketUpdate(
                ticket=ticket,
                kind=TicketUpdate.Kind.NOTE,
                status=ticket.status,
                message=note.strip(),
                author=author,
                public=public,
                created_at=now,
            )
        )
    if entries:
        TicketUpdate.objects.bulk_create(entries)
        Ticket.objects.filter(pk=ticket.pk).update(updated_at=now)


def _status_text(status: str) -> str:
    return f"Status changed to {Ticket.Status(status).label.lower()}."


def _change(ticket: Ticket, *, status: str, message: str, author: str) -> None:
    now = timezone.now()
    ticket.status = status
    ticket.updated_at = now
    ticket.save(update_fields=["status", "updated_at"])
    TicketUpdate.objects.create(
        ticket=ticket,
        kind=TicketUpdate.Kind.STATUS,
        status=status,
        message=message,
        author=author,
        created_at=now,
    )


def ticket_wire(ticket: Ticket, *, updates: bool = False) -> dict[str, Any]:
    """The ticket's ``status`` object on the wire (API.md ``/api/tools/ticket``)."""
    body: dict[str, Any] = {
        "status": ticket.status,
        "title": ticket.title,
        "priority": ticket.priority,
        "category": ticket.category,
        "createdAt": ms(ticket.created_at),
        "updatedAt": ms(ticket.updated_at),
        "estimatedResolution": ms(ticket.estimated_resolution),
        "assigned": ticket.assignee_id is not None,
    }
    if updates:
        body["updates"] = [
            {
                "kind": update.kind,
                "status": update.status,
                "message": update.message,
                "timestamp": ms(update.created_at),
            }
            for update in ticket.updates.filter(public=True)
        ]
    return body
