"""The knowledge base: help-centre articles the assistant searches and cites.

The full-text index is not a Django field. It is maintained by the database itself, so every
write path (admin, ``loadkb``, ORM ``save``/``update``/``delete``, raw SQL) keeps it in sync:
on SQLite an FTS5 table fed by triggers, on PostgreSQL a generated ``tsvector`` column. Both are
created in ``tools/migrations/0002_search_index.py``; ``tools/kb/`` queries them.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

ARTICLE_ID_MAX = 64


def new_article_id() -> str:
    """A fresh ``kb_`` id for an article created without one (80 random bits)."""
    return "kb_" + secrets.token_hex(10)


def today() -> dt.date:
    return timezone.now().date()


class Article(models.Model):
    """One knowledge-base article (Markdown body, metadata from its front matter)."""

    id = models.CharField(primary_key=True, max_length=ARTICLE_ID_MAX, default=new_article_id)
    title = models.CharField(max_length=300)
    content = models.TextField(help_text="Markdown body.")
    url = models.URLField(max_length=500, blank=True, default="")
    category = models.CharField(max_length=64, db_index=True)
    tags = models.JSONField(default=list, blank=True, help_text='A list, e.g. ["sso", "saml"].')
    language = models.CharField(max_length=16, default="en", db_index=True)
    updated = models.DateField(default=today, help_text="When the article's content last changed.")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id}: {self.title}"

    def clean(self) -> None:
        if not self.id.startswith("kb_"):
            raise ValidationError({"id": "Article ids start with kb_."})
        if not isinstance(self.tags, list) or not all(
            isinstance(tag, str) and tag.strip() for tag in self.tags
        ):
            raise ValidationError({"tags": "Tags must be a list of non-empty strings."})
        self.tags = [tag.strip().lower() for tag in self.tags]
        self.category = self.category.strip().lower()


TICKET_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and retyped


def new_ticket_id() -> str:
    """``TKT-`` and 8 characters (40 random bits): short enough to read out, never guessable
    in a useful way, and a session sees only its own tickets anyway."""
    return "TKT-" + "".join(secrets.choice(TICKET_ID_ALPHABET) for _ in range(8))


class Ticket(models.Model):
    """A support ticket opened for a chat session (by the assistant, a workflow or the REST API)."""

    class Priority(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        URGENT = "urgent"

    class Status(models.TextChoices):
        OPEN = "open"
        IN_PROGRESS = "in_progress"
        WAITING_ON_CUSTOMER = "waiting_on_customer"
        RESOLVED = "resolved"
        CLOSED = "closed"
        CANCELLED = "cancelled"

    id = models.CharField(primary_key=True, max_length=32, default=new_ticket_id, editable=False)
    # Only the id: tools know nothing of chat sessions (DESIGN.md), and a ticket outlives the
    # session's hot rows (those are archived and deleted at expiry).
    session_id = models.CharField(max_length=64, db_index=True)
    title = models.CharField(max_length=200)
    description = models.TextField()
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.MEDIUM)
    category = models.CharField(max_length=64, default="general")
    user_email = models.EmailField(blank=True, default="")
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tickets",
    )
    estimated_resolution = models.DateTimeField()
    metadata = models.JSONField(default=dict, blank=True)
    # The same key never opens two tickets (a retried workflow step, a resent request).
    idempotency_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    external_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="tools_ticket_status_idx")]

    def __str__(self) -> str:
        return f"{self.id}: {self.title}"


class TicketUpdate(models.Model):
    """One entry of a ticket's history: a status change, an assignment or a note."""

    class Kind(models.TextChoices):
        CREATED = "created"
        STATUS = "status"
        ASSIGNMENT = "assignment"
        NOTE = "note"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="updates")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.NOTE)
    message = models.TextField(blank=True, default="")
    status = models.CharField(max_length=32, blank=True, default="", help_text="Status after.")
    author = models.CharField(max_length=150, blank=True, default="")
    # Internal notes stay with staff; the customer sees the rest through fetch_status.
    public = models.BooleanField(default=True, help_text="Shown to the customer.")
    # The entry's id in the external ticketing system (TICKETING_API_URL), when it came from there.
    external_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.ticket_id} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"


def new_execution_id() -> str:
    return "wf_exec_" + secrets.token_hex(16)  # 128 bits: the id alone reads the execution


class WorkflowExecution(models.Model):
    """One run of a workflow (``tools.workflows``); its steps are ``WorkflowStep`` rows."""

    class Status(models.TextChoices):
        PENDING = "pending"  # stored, waiting for a worker
        RUNNING = "running"
        COMPLETED = "completed"
        COMPENSATED = "compensated"  # a step failed for good; earlier steps were undone
        FAILED = "failed"  # a step failed for good and something could not be undone

    id = models.CharField(primary_key=True, max_length=40, default=new_execution_id, editable=False)
    workflow_type = models.CharField(max_length=32)
    session_id = models.CharField(max_length=64, db_index=True)
    parameters = models.JSONField(default=dict)
    # Given by the client, or derived from session + type + parameters: one execution per key
    # and session. Scoped to the session, so another session's key is just another execution
    # (and a client learns nothing about which keys others used).
    idempotency_key = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    deliveries = models.PositiveIntegerField(default=0, help_text="Times a worker picked it up.")
    # The worker running it holds a lease, renewed at every step: a second delivery of the same
    # task waits it out, and a dead worker's execution is picked up again once it lapses.
    lease_token = models.CharField(max_length=32, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="tools_wf_status_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["session_id", "idempotency_key"], name="tools_wf_session_key_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.workflow_type}, {self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (
            self.Status.COMPLETED,
            self.Status.COMPENSATED,
            self.Status.FAILED,
        )


class WorkflowStep(models.Model):
    """One step of an execution, with what it produced and, once undone, that it was."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        COMPENSATED = "compensated"
        COMPENSATION_FAILED = "compensation_failed"

    execution = models.ForeignKey(WorkflowExecution, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    execution_ms = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["execution", "index"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "index"], name="tools_wf_step_unique")
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} #{self.index} {self.name} ({self.status})"


class ArticleChunk(models.Model):
    """One section of an article with its embedding under one model (``tools.embeddings``)."""

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="chunks")
    model = models.CharField(max_length=100, help_text="The embedder that made the vector.")
    index = models.PositiveSmallIntegerField()
    heading = models.CharField(max_length=200, blank=True, default="")
    text = models.TextField()
    digest = models.CharField(max_length=32, help_text="Of the article text it was cut from.")
    vector = models.BinaryField(help_text="float32, L2-normalised.")

    class Meta:
        ordering = ["article", "model", "index"]
        constraints = [
            models.UniqueConstraint(fields=["article", "model", "index"], name="tools_chunk_unique")
        ]
        indexes = [models.Index(fields=["model", "article"], name="tools_chunk_model_idx")]

    def __str__(self) -> str:
        return f"{self.article_id} #{self.index} ({self.model})"
