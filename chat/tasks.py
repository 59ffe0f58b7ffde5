"""Celery tasks of the chat app (they take ids, never model instances)."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.conf import settings

from chat.archives import verify_archives, write_archive
from chat.guards.review import purge_expired_clear_text
from chat.handoff_summary import summarise_handoff
from chat.lifecycle import expire_sessions
from chat.memory import summarize_session
from chat.models import ChatSession
from supportbot import metrics

log = structlog.get_logger("chat.tasks")


@shared_task(
    name="chat.summarize_session",
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def summarize_session_task(session_id: str) -> bool:
    """Fold the old part of a long conversation into its summary (idempotent)."""
    return summarize_session(session_id=session_id)


@shared_task(name="chat.expire_sessions")
def expire_sessions_task() -> int:
    """Archive then delete expired sessions (scheduled by Celery beat)."""
    return expire_sessions()


@shared_task(
    name="chat.archive_session",
    autoretry_for=(Exception,),
    retry_backoff=True,
    # The broker's visibility timeout is set from this: a longer countdown would run twice.
    retry_backoff_max=settings.CELERY_LONGEST_COUNTDOWN_SECONDS,
    max_retries=8,
)
def archive_session_task(session_id: str, reason: str) -> str:
    """Write a session's archive to storage and read it back (idempotent per session and reason).

    A session that does not exist (deleted, or an id that never was) stays missing: that is
    logged and the task ends, rather than being retried for an hour by a worker.
    """
    try:
        return write_archive(session_id=session_id, reason=reason).key
    except ChatSession.DoesNotExist:
        log.warning("archive_session_missing", session_id=session_id, reason=reason)
        return ""
    except Exception:
        # Retried with backoff (autoretry_for); each failed attempt is counted for the alerts.
        metrics.incr(
            "archive_failures", reason=reason if reason in ("ended", "expired") else "other"
        )
        raise


@shared_task(name="chat.verify_archives")
def verify_archives_task(limit: int | None = -1) -> dict[str, int]:
    """Re-read archives against their sha256: a sample (beat, hourly: ARCHIVE_VERIFY_SAMPLE, those
    checked longest ago first), or every one when ``limit`` is None (the archive browser)."""
    report = verify_archives(limit=settings.ARCHIVE_VERIFY_SAMPLE if limit == -1 else limit)
    return {
        "checked": report.checked,
        "ok": report.ok,
        "missing": report.missing,
        "altered": report.altered,
        "unreadable": report.unreadable,
    }


@shared_task(name="chat.purge_pii_clear_text")
def purge_pii_clear_text_task() -> int:
    """Delete encrypted clear copies of PII detections past their retention (beat, hourly)."""
    return purge_expired_clear_text()


@shared_task(name="chat.summarise_handoff")
def summarise_handoff_task(handoff_id: int) -> bool:
    """Replace a new hand-off's extractive summary by the model's, when a model answers."""
    return summarise_handoff(handoff_id=handoff_id)
