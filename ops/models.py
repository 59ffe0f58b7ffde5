"""The review queues of the ops admin: one proxy of ``chat.ReviewItem`` per kind.

Proxies, not tables: the guards record into ``chat.ReviewItem`` and know nothing of ops; the
proxies only give each queue its own admin page, permissions and open count.
"""

from __future__ import annotations

from typing import ClassVar, Self, TypeVar

from django.db import models
from django.utils import timezone

from chat.models import ReviewItem

_Item = TypeVar("_Item", bound=ReviewItem)


class ReviewQueueManager(models.Manager[_Item]):
    """The items of one kind."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def get_queryset(self) -> models.QuerySet[_Item]:
        return super().get_queryset().filter(kind=self.kind)


class PiiDetection(ReviewItem):
    """PII the redaction guard replaced, in a user's message or a model's answer."""

    queue_kind: ClassVar[str] = ReviewItem.Kind.PII
    objects: ClassVar[ReviewQueueManager[Self]] = ReviewQueueManager(ReviewItem.Kind.PII)

    class Meta:
        proxy = True
        verbose_name = "PII detection"
        verbose_name_plural = "PII detections"


class ContentFlag(ReviewItem):
    """A message the content filter flagged or blocked."""

    queue_kind: ClassVar[str] = ReviewItem.Kind.CONTENT
    objects: ClassVar[ReviewQueueManager[Self]] = ReviewQueueManager(ReviewItem.Kind.CONTENT)

    class Meta:
        proxy = True
        verbose_name = "content flag"
        verbose_name_plural = "content flags"


class UserReport(ReviewItem):
    """An answer a user reported."""

    queue_kind: ClassVar[str] = ReviewItem.Kind.REPORT
    objects: ClassVar[ReviewQueueManager[Self]] = ReviewQueueManager(ReviewItem.Kind.REPORT)

    class Meta:
        proxy = True
        verbose_name = "user report"
        verbose_name_plural = "user reports"


REVIEW_QUEUES: tuple[type[PiiDetection | ContentFlag | UserReport], ...] = (
    PiiDetection,
    ContentFlag,
    UserReport,
)


def open_counts() -> dict[str, int]:
    """Open items per review queue kind (one grouped query over the queue index)."""
    rows = (
        ReviewItem.objects.filter(status=ReviewItem.Status.OPEN)
        .order_by()
        .values("kind")
        .annotate(n=models.Count("pk"))
    )
    counts = {model.queue_kind: 0 for model in REVIEW_QUEUES}
    for row in rows:
        counts[row["kind"]] = row["n"]
    return counts


class SchedulerLease(models.Model):
    """Who runs a singleton job (Celery beat): held until ``expires_at``, renewed by its holder.

    Several beat processes may run (one per ``make worker``, a standby in production); the one
    holding the lease runs the schedule, the others wait to take over when it lapses. ``/health``
    reads ``renewed_at`` to report a missing or stale beat.
    """

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=200)
    acquired_at = models.DateTimeField()
    renewed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "scheduler lease"

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder} until {self.expires_at:%H:%M:%S}"


class Alert(models.Model):
    """One episode of an alert rule (``ops.alerts``): it fires once, is repeated at most every
    ALERT_REPEAT_MINUTES while it lasts, and resolves. At most one firing episode per rule."""

    class Status(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    rule = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FIRING)
    severity = models.CharField(max_length=10, default="warning")
    summary = models.TextField()  # the latest evaluation's sentence
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notifications = models.PositiveIntegerField(default=0)
    # The last delivery to each channel: {"log": {"ok": true, "at": ...}, "webhook": {...}}.
    deliveries = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"], condition=models.Q(status="firing"), name="ops_alert_one_firing"
            )
        ]
        indexes = [models.Index(fields=["status", "started_at"], name="ops_alert_status_idx")]

    def __str__(self) -> str:
        return f"{self.rule} ({self.status}) since {self.started_at:%Y-%m-%d %H:%M}"


class SubjectRequest(models.Model):
    """The receipt of a data subject's request (``ops.subjects``): who asked for what, when, and
    how much was exported or erased. It never holds the person's identifier or data: only
    whether they were looked up by ``userId`` or e-mail address, and counts per kind of data."""

    class Kind(models.TextChoices):
        EXPORT = "export"
        ERASE = "erase", "Erasure"

    class MatchedBy(models.TextChoices):
        USER_ID = "userId", "userId"
        EMAIL = "email", "E-mail address"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    matched_by = models.CharField(max_length=8, choices=MatchedBy.choices)
    requested_by = models.CharField(max_length=150)
    # The request's reference in the team's own records (a ticket number), never the person.
    reference = models.CharField(max_length=100, blank=True, default="")
    # {"sessions": 2, "messages": 31, "tickets": 1, "archives": 2, ...}
    counts = models.JSONField(default=dict, blank=True)
    completed = models.BooleanField(default=True)
    note = models.TextField(blank=True, default="")  # why an erasure stopped, if it did
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "subject request receipt"
        permissions = [
            ("export_subject", "Can export everything held about a person"),
            ("erase_subject", "Can erase everything held about a person"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.created_at:%Y-%m-%d %H:%M})"


class RetentionRun(models.Model):
    """One application of the retention policy (``ops.retention``): what went, per kind."""

    class Trigger(models.TextChoices):
        BEAT = "beat", "Scheduled"
        COMMAND = "command", "manage.py apply_retention"
        ADMIN = "admin", "From the admin"

    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # {"archives": 12, "tickets": 0, ...}: rows (or objects) deleted per kind of data.
    deleted = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["started_at"], name="ops_retention_started_idx")]

    def __str__(self) -> str:
        return f"Retention {self.started_at:%Y-%m-%d %H:%M} ({self.get_trigger_display()})"
