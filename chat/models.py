"""Sessions and their messages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from supportbot.ids import new_message_id, new_session_id


def default_expiry() -> datetime:
    return timezone.now() + timedelta(hours=settings.SESSION_TTL_HOURS)


class ChatSession(models.Model):
    """One conversation. Knowing its id is what grants access to it (API.md "Access")."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        IDLE = "idle"
        ENDED = "ended"

    id = models.CharField(primary_key=True, max_length=72, default=new_session_id, editable=False)
    user_id = models.CharField(max_length=128, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(default=default_expiry)
    ended_at = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True, default="")
    # Every message with seq <= this is folded into ``summary``; later ones are sent verbatim.
    summarized_through_seq = models.PositiveIntegerField(default=0)
    # Handed to a human by the escalation workflow (with the ticket it opened).
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalation_ticket = models.CharField(max_length=32, blank=True, default="")
    active_topics = models.JSONField(default=list, blank=True)
    resolved_issues = models.JSONField(default=list, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    message_count = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    # Turn lease: one turn at a time per session, across processes, on either database.
    turn_token = models.CharField(max_length=32, blank=True, default="")
    turn_lease_until = models.DateTimeField(null=True, blank=True)
    # A keyed hash of the creating client's IP (never the address): per-IP session limits.
    client_key = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-last_activity"]
        indexes = [
            models.Index(fields=["client_key", "last_activity"], name="chat_session_client_idx"),
            models.Index(fields=["status", "last_activity"], name="chat_session_status_idx"),
            models.Index(fields=["expires_at"], name="chat_session_expiry_idx"),
            models.Index(fields=["user_id"], name="chat_session_user_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    def current_status(self, now: datetime | None = None) -> str:
        """active, idle (quiet for SESSION_IDLE_MINUTES) or ended."""
        if self.status == self.Status.ENDED:
            return self.Status.ENDED
        now = now or timezone.now()
        if now - self.last_activity > timedelta(minutes=settings.SESSION_IDLE_MINUTES):
            return self.Status.IDLE
        return self.Status.ACTIVE

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.status != self.Status.ENDED and (now or timezone.now()) >= self.expires_at


class Message(models.Model):
    """One message of a session, numbered by a per-session, gap-free ``seq``."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        STAFF = "staff"
        SYSTEM = "system"
        TOOL = "tool"

    class Status(models.TextChoices):
        COMPLETE = "complete"  # assistant/staff/system: delivered whole
        PENDING = "pending"  # user: stored, its turn is running
        ANSWERED = "answered"  # user: an assistant reply exists
        UNANSWERED = "unanswered"  # user: every model failed; kept, the client was told
        INCOMPLETE = "incomplete"  # assistant: the stream was cut; the partial text is kept

    id = models.CharField(primary_key=True, max_length=40, default=new_message_id, editable=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    # Exactly what was typed: escaping is the renderer's job, never the store's.
    content = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    # NULL, not "": the per-session uniqueness applies only to messages that carry one.
    request_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    tool_calls = models.JSONField(default=list, blank=True)
    model = models.CharField(max_length=128, blank=True, default="")
    fallback_used = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    processing_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="chat_message_seq_unique"),
            models.UniqueConstraint(
                fields=["session", "request_id"],
                condition=Q(request_id__isnull=False),
                name="chat_message_request_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.role}"


class SessionArchive(models.Model):
    """A conversation written to archive storage (gzipped JSON), with what proves it whole."""

    session_id = models.CharField(max_length=72, db_index=True)
    key = models.CharField(max_length=255, unique=True)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    message_count = models.PositiveIntegerField()
    reason = models.CharField(max_length=16)  # "ended" or "expired"
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key


class ReviewItem(models.Model):
    """Something a guard flagged, or a user reported, for staff to review (the ops queues).

    Holds no clear PII: ``excerpt`` is the redacted text, PII ``findings`` are kinds, positions
    and keyed fingerprints. The clear text exists only as ``encrypted_clear`` when
    ``PII_REVIEW_ENCRYPTION_KEY`` is set, and is deleted at ``purge_after``. ``session_id`` is a
    plain column (not a key) so an item outlives its session's archiving.
    """

    class Kind(models.TextChoices):
        PII = "pii", "PII detection"
        CONTENT = "content", "Content filter"
        REPORT = "report", "User report"

    class Status(models.TextChoices):
        OPEN = "open"
        CONFIRMED = "confirmed"
        DISMISSED = "dismissed", "Dismissed (false positive)"

    class Action(models.TextChoices):
        REDACTED = "redacted"
        FLAGGED = "flagged"
        BLOCKED = "blocked"
        REPORTED = "reported"

    class Direction(models.TextChoices):
        INPUT = "input", "From the user"
        OUTPUT = "output", "From the model"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    action = models.CharField(max_length=10, choices=Action.choices)
    direction = models.CharField(max_length=6, choices=Direction.choices, default=Direction.INPUT)
    session_id = models.CharField(max_length=72, blank=True, default="")
    message_id = models.CharField(max_length=40, blank=True, default="")
    request_id = models.CharField(max_length=128, blank=True, default="")
    client = models.CharField(max_length=64, blank=True, default="")
    # PII kinds or content categories that fired, sorted.
    categories = models.JSONField(default=list, blank=True)
    # PII: [{kind, start, end, fingerprint}]; content: {score, reasons}; report: {}.
    findings = models.JSONField(default=dict, blank=True)
    excerpt = models.TextField(blank=True, default="")
    reason = models.TextField(blank=True, default="")  # a user report's own words (redacted)
    encrypted_clear = models.BinaryField(null=True, blank=True, editable=False)
    purge_after = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")
    reviewed_by = models.CharField(max_length=150, blank=True, default="")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["kind", "status", "created_at"], name="chat_review_queue_idx"),
            models.Index(fields=["session_id"], name="chat_review_session_idx"),
            models.Index(fields=["purge_after"], name="chat_review_purge_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"


class PiiAllowlistEntry(models.Model):
    """A value or pattern that PII redaction lets through (fed by dismissed detections).

    A value is kept as its keyed fingerprint (``chat.guards.pii.value_fingerprint``), never in
    clear; a pattern is a regular expression matched against the whole detected value.
    """

    kind = models.CharField(max_length=8, blank=True, default="")  # "" = any kind
    fingerprint = models.CharField(max_length=64, blank=True, default="", db_index=True)
    pattern = models.CharField(max_length=300, blank=True, default="")
    note = models.TextField(blank=True, default="")
    source = models.ForeignKey(
        ReviewItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="allowlisted"
    )
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "PII allowlist entry"
        verbose_name_plural = "PII allowlist"

    def __str__(self) -> str:
        return self.pattern or f"{self.kind or 'any'} value {self.fingerprint[:12]}…"
