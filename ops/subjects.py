"""Subject requests: find everything held about one person, export it as one JSON document
(``ops.subject_export``) or erase it, and keep a receipt that holds none of it.

A person is looked up by ``userId`` (sessions, archives, usage days) or by e-mail address, matched
without regard to case in the structured contact fields only: a ticket's ``user_email`` and a
hand-off's ``contact_email``. An address typed into the chat or put in metadata is redacted
before it is stored (``chat.guards``), so it can be neither matched nor found to erase. From the
sessions found — live or restored rows, and sessions known only through an archive or a ticket —
everything keyed by session id follows: tickets, archives, review items, workflow executions and
the admin history of those sessions, hand-offs, drafts, notes, ratings, tickets and items.

Erasure deletes the archive objects first, keeping their records. Should storage not answer, it
stops there: no row is touched, so a retry finds everything again (an object already deleted is
"already gone") and completes. Then every row goes in one transaction. The receipt
(``SubjectRequest``) records who asked, the kind of request, whether the person was matched by
``userId`` or e-mail address, and counts: never the identifier, never the data. Logs carry the
same counts. Every request answered records a receipt, also when nothing is held (zero counts,
noted "Nothing held."), because "we hold nothing" is an answer to keep proof of too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import structlog
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Model, Q, QuerySet

from chat.archives import ArchiveError, delete_archive, delete_archive_object
from chat.guards.pii import redact_pii
from chat.models import (
    AnswerFeedback,
    ArchiveTicket,
    ChatSession,
    Handoff,
    HandoffNote,
    Message,
    Rating,
    ReplyDraft,
    ReviewItem,
    SessionArchive,
)
from ops.models import REVIEW_QUEUES, SubjectRequest
from supportbot.db import write_transaction
from supportbot.models import UsageDay
from supportbot.storable import unstorable
from tools.models import Ticket, TicketUpdate, WorkflowExecution

log = structlog.get_logger("ops.subjects")

MatchedBy = SubjectRequest.MatchedBy
USER_ID_MAX = ChatSession._meta.get_field("user_id").max_length or 128
EMAIL_MAX = 254
REFERENCE_MAX = SubjectRequest._meta.get_field("reference").max_length or 100
REQUESTED_BY_MAX = SubjectRequest._meta.get_field("requested_by").max_length or 150
NOTHING_HELD = "Nothing held."

# What is held, per kind, in the order pages and receipts list it.
KIND_LABELS = {
    "sessions": "Sessions in the database (live, ended or restored)",
    "messages": "Messages",
    "handoffs": "Hand-offs",
    "notes": "Staff notes",
    "drafts": "Drafted replies",
    "ratings": "Ratings",
    "answer_votes": "Answer votes",
    "archives": "Archives",
    "archive_objects": "Archive objects deleted from storage",
    "archive_errors": "Archives that could not be read",
    "tickets": "Tickets",
    "ticket_updates": "Ticket updates",
    "review_items": "Review items",
    "workflow_executions": "Workflow executions",
    "usage_days": "Usage days",
    "admin_history": "Admin history entries",
}
HELD_KINDS = tuple(k for k in KIND_LABELS if k not in ("archive_objects", "archive_errors"))
ERASED_KINDS = (*HELD_KINDS, "archive_objects")
# ``QuerySet.delete()`` counts per model label -> the receipt's kinds (others are index rows).
_DELETED_KIND = {
    "chat.ChatSession": "sessions",
    "chat.Message": "messages",
    "chat.Handoff": "handoffs",
    "chat.HandoffNote": "notes",
    "chat.ReplyDraft": "drafts",
    "chat.Rating": "ratings",
    "chat.AnswerFeedback": "answer_votes",
    "chat.SessionArchive": "archives",
    "tools.Ticket": "tickets",
    "tools.TicketUpdate": "ticket_updates",
    "chat.ReviewItem": "review_items",
    "tools.WorkflowExecution": "workflow_executions",
    "supportbot.UsageDay": "usage_days",
    "admin.LogEntry": "admin_history",
}


class SubjectError(ValueError):
    """Input that names no person, or a reference that must not be stored; ``field`` is the
    input at fault ("user_id", "email", "reference"; "" for the request as a whole)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ErasureIncomplete(Exception):
    """Archive storage did not answer: nothing in the database was erased, ``receipt`` (not
    completed) says how far it got, and running the erasure again completes it."""

    def __init__(self, message: str, *, receipt: SubjectRequest) -> None:
        super().__init__(message)
        self.message = message
        self.receipt = receipt


@dataclass(frozen=True)
class Subject:
    """A person as staff named them: by ``userId`` or by e-mail address."""

    matched_by: str  # MatchedBy
    value: str = field(repr=False)  # kept out of reprs, tracebacks' locals and logs

    @property
    def label(self) -> str:
        """How staff call the identifier: "userId" or "e-mail address"."""
        return "userId" if self.matched_by == MatchedBy.USER_ID else "e-mail address"


def subject_from(*, user_id: str | None = None, email: str | None = None) -> Subject:
    """The person named by exactly one of ``user_id`` and ``email`` (surrounding spaces are
    ignored), or ``SubjectError`` saying what is wrong with the input."""
    user_id = (user_id or "").strip()
    email = (email or "").strip()
    if user_id and email:
        raise SubjectError("Give a userId or an e-mail address, not both.")
    if not user_id and not email:
        raise SubjectError("Give the person's userId or their e-mail address.")
    if user_id:
        problem = unstorable(user_id)
        if problem:
            raise SubjectError(f"The userId {problem}.", field="user_id")
        if len(user_id) > USER_ID_MAX:
            raise SubjectError(
                f"A userId has at most {USER_ID_MAX} characters (this one has {len(user_id)}).",
                field="user_id",
            )
        return Subject(MatchedBy.USER_ID.value, user_id)
    problem = unstorable(email)
    if problem or len(email) > EMAIL_MAX:
        raise SubjectError("Enter a valid e-mail address.", field="email")
    try:
        validate_email(email)
    except ValidationError:
        raise SubjectError("Enter a valid e-mail address.", field="email") from None
    return Subject(MatchedBy.EMAIL.value, email)


def clean_reference(reference: str | None, *, subject: Subject | None = None) -> str:
    """The staff's own reference for a request (their ticket number), which a receipt keeps:
    refused when it holds the person's identifier or looks like personal data."""
    reference = (reference or "").strip()
    if not reference:
        return ""
    problem = unstorable(reference)
    if problem:
        raise SubjectError(f"The reference {problem}.", field="reference")
    if len(reference) > REFERENCE_MAX:
        raise SubjectError(
            f"A reference has at most {REFERENCE_MAX} characters.", field="reference"
        )
    if subject is not None and subject.value.casefold() in reference.casefold():
        raise SubjectError(
            "The reference must not contain the person's userId or address: receipts keep no "
            "personal data. Enter your own reference, e.g. a ticket number.",
            field="reference",
        )
    kinds = sorted({match.kind for match in redact_pii(reference).matches})
    if kinds:
        raise SubjectError(
            f"The reference looks like it holds personal data ({', '.join(kinds)}): receipts "
            "keep none. Enter your own reference, e.g. a ticket number.",
            field="reference",
        )
    return reference


# --- what is held -------------------------------------------------------------------------------


@dataclass
class Holdings:
    """Everything held about one person, as querysets (counted or listed on demand)."""

    subject: Subject
    session_ids: frozenset[str]
    archives: QuerySet[SessionArchive]
    tickets: QuerySet[Ticket]
    usage_days: QuerySet[UsageDay]

    @property
    def sessions(self) -> QuerySet[ChatSession]:
        """The rows in the database: live, ended but not yet expired, or restored."""
        return ChatSession.objects.filter(pk__in=self.session_ids)

    @property
    def review_items(self) -> QuerySet[ReviewItem]:
        return ReviewItem.objects.filter(session_id__in=self.session_ids)

    @property
    def workflows(self) -> QuerySet[WorkflowExecution]:
        return WorkflowExecution.objects.filter(session_id__in=self.session_ids)

    def of_sessions(self, model: type[Model]) -> QuerySet[Any]:
        return model._default_manager.filter(session_id__in=self.session_ids)

    @cached_property
    def admin_history(self) -> QuerySet[LogEntry]:
        """Admin log entries about the sessions, their hand-offs, drafts, notes and ratings,
        the tickets, the review items (under every queue's proxy too) and the archives."""
        targets: list[tuple[list[type[Model]], Iterable[Any]]] = [
            ([ChatSession], self.session_ids),
            ([Ticket], self.tickets.values_list("pk", flat=True)),
            ([SessionArchive], self.archives.values_list("pk", flat=True)),
            ([ReviewItem, *REVIEW_QUEUES], self.review_items.values_list("pk", flat=True)),
            ([WorkflowExecution], self.workflows.values_list("pk", flat=True)),
        ]
        for model in (Handoff, HandoffNote, ReplyDraft, Rating):
            targets.append(([model], self.of_sessions(model).values_list("pk", flat=True)))
        about = Q(pk__in=[])
        for models, ids in targets:
            object_ids = [str(pk) for pk in ids]
            if object_ids:
                types = ContentType.objects.get_for_models(*models, for_concrete_models=False)
                about |= Q(content_type__in=list(types.values()), object_id__in=object_ids)
        return LogEntry.objects.filter(about)

    def counts(self) -> dict[str, int]:
        """How much is held, per kind (``HELD_KINDS``)."""
        return {
            "sessions": self.sessions.count(),
            "messages": self.of_sessions(Message).count(),
            "handoffs": self.of_sessions(Handoff).count(),
            "notes": self.of_sessions(HandoffNote).count(),
            "drafts": self.of_sessions(ReplyDraft).count(),
            "ratings": self.of_sessions(Rating).count(),
            "answer_votes": self.of_sessions(AnswerFeedback).count(),
            "archives": self.archives.count(),
            "tickets": self.tickets.count(),
            "ticket_updates": TicketUpdate.objects.filter(ticket__in=self.tickets).count(),
            "review_items": self.review_items.count(),
            "workflow_executions": self.workflows.count(),
            "usage_days": self.usage_days.count(),
            "admin_history": self.admin_history.count(),
        }


def find_holdings(subject: Subject, *, known_sessions: Iterable[str] = ()) -> Holdings:
    """What is held about ``subject`` (plus whatever is keyed by ``known_sessions``: the
    sessions an erasure found before it deleted the archives that named them)."""
    value = subject.value
    ids = set(known_sessions)
    if subject.matched_by == MatchedBy.USER_ID:
        ids.update(ChatSession.objects.filter(user_id=value).values_list("pk", flat=True))
        ids.update(
            SessionArchive.objects.filter(user_id=value).values_list("session_id", flat=True)
        )
        by_identifier = Q(pk__in=[])
        archives_by_identifier = Q(user_id=value)
        usage_days = UsageDay.objects.filter(user_id=value)
    else:
        by_identifier = Q(user_email__iexact=value)
        ids.update(Ticket.objects.filter(by_identifier).values_list("session_id", flat=True))
        ids.update(
            Handoff.objects.filter(contact_email__iexact=value).values_list("session_id", flat=True)
        )
        archives_by_identifier = Q(pk__in=[])
        usage_days = UsageDay.objects.none()
    ids.discard("")
    archives = SessionArchive.objects.filter(archives_by_identifier | Q(session_id__in=ids))
    ticket_ids = _named_tickets(ids, archives)
    tickets = Ticket.objects.filter(by_identifier | Q(session_id__in=ids) | Q(pk__in=ticket_ids))
    return Holdings(
        subject=subject,
        session_ids=frozenset(ids),
        archives=archives.order_by("-ended_at", "pk"),
        tickets=tickets.order_by("created_at", "pk"),
        usage_days=usage_days.order_by("day", "pk"),
    )


def _named_tickets(session_ids: set[str], archives: QuerySet[SessionArchive]) -> set[str]:
    """Tickets a conversation names (its hand-off's, its escalation's, its archive's) beyond
    those opened with its session id."""
    named = set(
        ArchiveTicket.objects.filter(archive__in=archives).values_list("ticket_id", flat=True)
    )
    named.update(
        Handoff.objects.filter(session_id__in=session_ids).values_list("ticket_id", flat=True)
    )
    named.update(
        ChatSession.objects.filter(pk__in=session_ids).values_list("escalation_ticket", flat=True)
    )
    named.discard("")
    return named


# --- receipts -----------------------------------------------------------------------------------


def record_receipt(
    *,
    kind: str,
    subject: Subject,
    requested_by: str,
    reference: str = "",
    counts: dict[str, int],
    completed: bool = True,
    note: str = "",
) -> SubjectRequest:
    """Keep the receipt of a request: the kind of identifier, never its value."""
    return SubjectRequest.objects.create(
        kind=kind,
        matched_by=subject.matched_by,
        requested_by=requested_by[:REQUESTED_BY_MAX],
        reference=reference[:REFERENCE_MAX],
        counts=counts,
        completed=completed,
        note=note,
    )


# --- erasure ------------------------------------------------------------------------------------


def erase_subject(*, subject: Subject, requested_by: str, reference: str = "") -> SubjectRequest:
    """Erase everything held about ``subject``: archive objects first, then every row in one
    transaction; returns the receipt. Raises ``ErasureIncomplete`` (with its receipt, and no row
    touched) when archive storage does not answer."""
    held = find_holdings(subject)
    archives = list(held.archives)
    known = set(held.session_ids)
    deleted_objects = _delete_objects(archives, subject, requested_by, reference)
    with write_transaction():
        counts = _delete_rows(find_holdings(subject, known_sessions=known), archives)
    counts["archive_objects"] = deleted_objects
    # An archive written while this ran (expiry of a session found above) goes too.
    late = find_holdings(subject, known_sessions=known).archives
    try:
        for archive in late:
            delete_archive(archive)
            counts["archives"] += 1
            counts["archive_objects"] += 1
    except ArchiveError as exc:
        note = (
            f"An archive written during the erasure was left: {exc.message} Run the erasure "
            "again to delete it."
        )
        receipt = record_receipt(
            kind=SubjectRequest.Kind.ERASE,
            subject=subject,
            requested_by=requested_by,
            reference=reference,
            counts=counts,
            completed=False,
            note=note,
        )
        log.warning("subject_erasure_incomplete", receipt=receipt.pk, **counts)
        raise ErasureIncomplete(note, receipt=receipt) from exc
    receipt = record_receipt(
        kind=SubjectRequest.Kind.ERASE,
        subject=subject,
        requested_by=requested_by,
        reference=reference,
        counts=counts,
        note="" if any(counts.values()) else NOTHING_HELD,
    )
    log.info("subject_erased", receipt=receipt.pk, matched_by=subject.matched_by, **counts)
    return receipt


def _delete_objects(
    archives: list[SessionArchive], subject: Subject, requested_by: str, reference: str
) -> int:
    """Delete every archive's object (records kept); on a storage that does not answer,
    record the incomplete receipt and raise ``ErasureIncomplete``."""
    for deleted, archive in enumerate(archives):
        try:
            delete_archive_object(archive)
        except ArchiveError as exc:
            note = (
                f"{exc.message} {deleted} of {len(archives)} archive objects were deleted and "
                "nothing in the database was erased. Run the erasure again when storage "
                "answers: it completes what is left."
            )
            counts = dict.fromkeys(ERASED_KINDS, 0)
            counts["archive_objects"] = deleted
            receipt = record_receipt(
                kind=SubjectRequest.Kind.ERASE,
                subject=subject,
                requested_by=requested_by,
                reference=reference,
                counts=counts,
                completed=False,
                note=note,
            )
            log.warning(
                "subject_erasure_incomplete",
                receipt=receipt.pk,
                archive_objects=deleted,
                archives=len(archives),
            )
            raise ErasureIncomplete(note, receipt=receipt) from exc
    return len(archives)


def _delete_rows(held: Holdings, archives: list[SessionArchive]) -> dict[str, int]:
    """Every row held (inside the caller's transaction), counted per kind. Archive records go
    only for the objects deleted before; a later one is the caller's to delete whole."""
    counts = dict.fromkeys(ERASED_KINDS, 0)
    # The history first: it is found through the rows deleted below.
    querysets: list[QuerySet[Any]] = [
        LogEntry.objects.filter(pk__in=list(held.admin_history.values_list("pk", flat=True))),
        held.sessions,  # messages, hand-offs, notes, drafts, ratings and votes cascade
        held.tickets,  # their updates cascade
        held.review_items,
        held.workflows,  # their steps cascade
        held.usage_days,
        SessionArchive.objects.filter(pk__in=[archive.pk for archive in archives]),
    ]
    for queryset in querysets:
        _, per_model = queryset.order_by().delete()
        for label, deleted in per_model.items():
            kind = _DELETED_KIND.get(label)
            if kind is not None:
                counts[kind] += deleted
    return counts
