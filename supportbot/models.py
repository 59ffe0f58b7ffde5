"""The kernel's own tables: the shared metrics (``supportbot.metrics``) on the database store.

Only what the metrics need lives here; every other table belongs to an app (DESIGN.md).
"""

from __future__ import annotations

from django.db import models


class MetricPoint(models.Model):
    """One field of one bucket: ``m`` a minute or ``h`` an hour since the epoch, ``t`` the total
    (``start`` 0). Flushes add to ``value`` with an upsert; readers sum fields over buckets."""

    resolution = models.CharField(max_length=1)
    start = models.BigIntegerField()
    name = models.CharField(max_length=255)
    value = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["resolution", "start", "name"], name="metricpoint_bucket_field"
            )
        ]

    def __str__(self) -> str:
        return f"{self.resolution}{self.start} {self.name}={self.value:g}"


class UsageDay(models.Model):
    """What one customer (``userId``, or an API key) spent on one day: rows, never labels."""

    day = models.DateField()
    user_id = models.CharField(max_length=128, blank=True, default="")
    api_key = models.CharField(max_length=64, blank=True, default="")
    turns = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "user_id", "api_key"], name="usageday_customer")
        ]
        indexes = [models.Index(fields=["day"], name="usageday_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.user_id or '(anonymous)'}: {self.turns} turns"


class BreakerState(models.Model):
    """The last state a process reported for one of its circuit breakers (``kind|name|process``)."""

    name = models.CharField(max_length=255, unique=True)
    state = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.name}: {self.state.get('state', '?')}"
