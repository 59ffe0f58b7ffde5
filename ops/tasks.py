"""Celery tasks of the ops app (periodic ones are declared in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from ops.alerts import evaluate_alerts, sample_gauges
from ops.models import RetentionRun
from ops.retention import apply_retention


@shared_task(name="ops.evaluate_alerts", ignore_result=True)
def evaluate_alerts_task() -> dict[str, str]:
    """Every minute: sample the gauges, then evaluate the alert rules."""
    sample_gauges()
    return evaluate_alerts()


@shared_task(name="ops.apply_retention", ignore_result=True)
def apply_retention_task() -> dict[str, int]:
    """Every hour: delete what the retention policy says has been kept long enough."""
    return apply_retention(RetentionRun.Trigger.BEAT).deleted
