"""Celery tasks of the chat app (they take ids, never model instances)."""

from __future__ import annotations

from celery import shared_task

from chat.memory import summarize_session


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
    from chat.lifecycle import expire_sessions

    return expire_sessions()
