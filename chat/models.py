"""Sessions and their messages."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from supportbot.ids import new_message_id, new_session_id

# The states of a hand-off (``Handoff.Status``), also mirrored on its session.
HANDOFF_STATES = [
    ("waiting", "Waiting"),
    ("assigned", "Assigned"),
    ("with_agent", "With agent"),
    ("resolved", "Resolved"),
]


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
    # The state of the open hand-off to a person, if any (``chat.handoff``): "" for none. Kept on
    # the session so that a turn, which locks this row anyway, knows whether the bot may answer.
    handoff_status = models.CharField(
        max_length=12, blank=True, default="", choices=[("", "None"), *HANDOFF_STATES]
    )
    # The customer asked the bot to stop answering while they wait for a person.
    bot_paused = models.BooleanField(default=False)
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
    # Brought back from its archive for staff (``chat.archives.restore_archive``): read-only,
    # unknown to clients, left alone by expiry until staff release it.
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_by = models.CharField(max_length=150, blank=True, default="")
    # Expiry could not archive it: tried again at ``archive_retry_at`` (backoff), kept meanwhile.
    archive_attempts = models.PositiveSmallIntegerField(default=0)
    archive_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_activity"]
        indexes = [
            models.Index(fields=["client_key", "last_activity"], name="chat_session_client_idx"),
            models.Index(fields=["status", "last_activity"], name="chat_session_status_idx"),
            models.Index(fields=["expires_at"], name="chat_session_expiry_idx"),
            models.Index(fields=["user_id"], name="chat_session_user_idx"),
            models.Index(fields=["handoff_status"], name="chat_session_handoff_idx"),
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

    @property
    def is_restored(self) -> bool:
        return self.restored_at is not None


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
        FORWARDED = "forwarded"  # user: a person holds the conversation; it went to them

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
    """A conversation written to archive storage (gzipped JSON), with what proves it whole.

    ``user_id``, the dates and the tickets are copied from the document so that staff can find
    an archive without reading storage. ``integrity`` is the last check's verdict
    (``chat.archives.check_archive``): a row is written only after its object was read back with
    this ``sha256``, so "" means not checked since.
    """

    class Integrity(models.TextChoices):
        UNCHECKED = "", "Not checked since written"
        OK = "ok", "Intact"
        MISSING = "missing", "Missing from storage"
        ALTERED = "altered", "Altered (sha256 mismatch)"
        UNREADABLE = "unreadable", "Unreadable (storage error)"

    session_id = models.CharField(max_length=72, db_index=True)
    user_id = models.CharField(max_length=128, blank=True, default="")
    key = models.CharField(max_length=255, unique=True)
    backend = models.CharField(max_length=16, blank=True, default="")  # "filesystem" or "s3"
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    message_count = models.PositiveIntegerField()
    reason = models.CharField(max_length=16)  # "ended" or "expired"
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    integrity = models.CharField(max_length=10, blank=True, default="", choices=Integrity.choices)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user_id", "ended_at"], name="chat_archive_user_idx"),
            models.Index(fields=["created_at"], name="chat_archive_created_idx"),
            models.Index(fields=["ended_at"], name="chat_archive_ended_idx"),
            models.Index(fields=["checked_at"], name="chat_archive_checked_idx"),
            models.Index(fields=["integrity"], name="chat_archive_integrity_idx"),
        ]

    def __str__(self) -> str:
        return self.key


class ArchiveTicket(models.Model):
    """A ticket opened during an archived conversation: archives are searched by ticket id."""

    archive = models.ForeignKey(SessionArchive, on_delete=models.CASCADE, related_name="tickets")
    ticket_id = models.CharField(max_length=32, db_index=True)

    def __str__(self) -> str:
        return f"{self.ticket_id} in {self.archive_id}"


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


# --- people: hand-offs to staff, their notes, drafted replies, satisfaction, support hours ------


class Handoff(models.Model):
    """A conversation that needs a person: one item of the staff inbox (``chat.handoff``).

    At most one is open (not resolved) per session. ``assignee`` is the agent it is given to;
    status ``with_agent`` means that agent holds the conversation and the bot is silent.
    """

    class Status(models.TextChoices):
        WAITING = "waiting"
        ASSIGNED = "assigned"
        WITH_AGENT = "with_agent", "With agent"
        RESOLVED = "resolved"

    class Reason(models.TextChoices):
        CUSTOMER = "customer", "Customer asked for a person"
        ESCALATION = "escalation", "Escalation workflow"
        NOT_HELPFUL = "not_helpful", "Answer without a source did not help"
        STAFF = "staff", "Picked up by staff"

    class Priority(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        URGENT = "urgent"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="handoffs")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.WAITING)
    reason = models.CharField(max_length=12, choices=Reason.choices, default=Reason.CUSTOMER)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.MEDIUM)
    # The customer's own words when asking, if any (redacted like every stored text).
    note = models.TextField(blank=True, default="")
    first_message = models.TextField(blank=True, default="")
    topic = models.CharField(max_length=200, blank=True, default="")
    summary = models.TextField(blank=True, default="")
    ticket_id = models.CharField(max_length=32, blank=True, default="")
    # The structured contact field: the address a reply goes to (validated, never from chat text).
    contact_email = models.CharField(max_length=254, blank=True, default="")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="handoffs",
    )
    requested_at = models.DateTimeField(default=timezone.now)  # waiting since
    assigned_at = models.DateTimeField(null=True, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)  # first taken over by an agent
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    last_customer_message = models.TextField(blank=True, default="")
    last_customer_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["requested_at"]
        verbose_name = "hand-off"
        constraints = [
            models.UniqueConstraint(
                fields=["session"],
                condition=~Q(status="resolved"),
                name="chat_handoff_one_open",
            )
        ]
        indexes = [
            models.Index(fields=["status", "requested_at"], name="chat_handoff_queue_idx"),
            models.Index(fields=["assignee", "status"], name="chat_handoff_assignee_idx"),
        ]
        permissions = [
            ("take_over_handoff", "Can take over a conversation"),
            ("reply_handoff", "Can reply to a customer"),
            ("resolve_handoff", "Can resolve or hand back a conversation"),
            ("reassign_handoff", "Can assign a conversation to a colleague"),
            ("view_all_handoffs", "Can see every conversation of the inbox"),
        ]

    def __str__(self) -> str:
        return f"Hand-off #{self.pk} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED


class HandoffNote(models.Model):
    """An internal note on a conversation: staff only, never shown to the customer."""

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="notes")
    author = models.CharField(max_length=150)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"Note by {self.author} on {self.session_id}"


class ReplyDraft(models.Model):
    """A reply the model chain drafted for the agent holding a conversation. Never delivered by
    itself: an agent sends it (as is or edited) or discards it; the outcome is kept."""

    class Outcome(models.TextChoices):
        PENDING = "pending"
        SENT = "sent", "Sent as is"
        EDITED = "edited", "Sent edited"
        DISCARDED = "discarded"
        FAILED = "failed", "No draft (no model answered or nothing relevant)"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="drafts")
    for_message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts"
    )
    content = models.TextField(blank=True, default="")
    citations = models.JSONField(default=list, blank=True)
    model = models.CharField(max_length=128, blank=True, default="")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    sent_message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.CharField(max_length=150, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Draft #{self.pk} ({self.outcome})"


class Rating(models.Model):
    """The customer's rating of a resolved conversation (once per hand-off)."""

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="ratings")
    handoff = models.OneToOneField(
        Handoff, null=True, blank=True, on_delete=models.SET_NULL, related_name="rating"
    )
    score = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True, default="")
    agent = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.score}/5 for {self.session_id}"


class AnswerFeedback(models.Model):
    """Thumbs up or down on one answer (the latest vote counts)."""

    class Vote(models.TextChoices):
        UP = "up"
        DOWN = "down"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="feedback")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    vote = models.CharField(max_length=4, choices=Vote.choices)
    # The answer cited no source: a thumbs-down on it asks for a person.
    had_source = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "answer feedback"

    def __str__(self) -> str:
        return f"{self.vote} on {self.message_id}"


class SupportSchedule(models.Model):
    """When people answer: a weekly schedule in one time zone, with dated exceptions. With no
    active schedule, support is always open."""

    name = models.CharField(max_length=100, default="Support hours")
    timezone = models.CharField(max_length=64, default="UTC")
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=Q(active=True), name="chat_schedule_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.timezone})"


class SupportHours(models.Model):
    """One opening of the weekly schedule (a weekday may have several)."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0
        TUESDAY = 1
        WEDNESDAY = 2
        THURSDAY = 3
        FRIDAY = 4
        SATURDAY = 5
        SUNDAY = 6

    schedule = models.ForeignKey(SupportSchedule, on_delete=models.CASCADE, related_name="hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        ordering = ["weekday", "opens"]
        verbose_name_plural = "support hours"

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"


class SupportException(models.Model):
    """A dated exception: a holiday (closed all day) or different hours on that day."""

    schedule = models.ForeignKey(
        SupportSchedule, on_delete=models.CASCADE, related_name="exceptions"
    )
    date = models.DateField()
    closed = models.BooleanField(default=True)
    opens = models.TimeField(null=True, blank=True)
    closes = models.TimeField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "date"], name="chat_exception_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.date}: {'closed' if self.closed else 'special hours'}"
