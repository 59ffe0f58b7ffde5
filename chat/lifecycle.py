"""Session lifecycle: expire idle sessions (archived first, ``chat.archives``); warn a connected
client before its session expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat.archives import check_archive, write_archive
from chat.models import ChatSession, SessionArchive
from supportbot import metrics
from supportbot.db import write_transaction

log = structlog.get_logger("chat.lifecycle")

# Expiry stops its batch after this many sessions in a row could not be archived.
STOP_AFTER_FAILURES = 3


def _verified_archive(session_id: str) -> SessionArchive:
    """An archive of the session that reads back intact now: an existing one if it does (an
    ended session cannot change any more), else a fresh one, written and read back. Raises when
    storage fails, and then the session must stay."""
    for archive in SessionArchive.objects.filter(session_id=session_id):
        if check_archive(archive) == SessionArchive.Integrity.OK:
            return archive
    return write_archive(session_id=session_id, reason="expired", fresh=True)


def _postpone(session_id: str, run_at: datetime) -> None:
    """Keep a session that could not be archived; try it again after 1, 2, 4, … minutes, counted
    from when it failed (not from the start of a long run; ``run_at`` when that is later)."""
    now = max(run_at, timezone.now())
    with write_transaction():
        session = ChatSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            return
        session.archive_attempts += 1
        delay = min(60.0 * 2 ** (session.archive_attempts - 1), settings.ARCHIVE_RETRY_MAX_SECONDS)
        session.archive_retry_at = now + timedelta(seconds=delay)
        session.save(update_fields=["archive_attempts", "archive_retry_at"])


def expire_sessions(*, now: datetime | None = None, batch: int = 100) -> int:
    """Archive and delete sessions past their inactivity deadline; returns how many.

    A session's rows are deleted only once an archive of it has been read back with its
    sha256. One that cannot be archived is kept, counted (``archive_failures``) and retried
    with backoff. Restored sessions stay until staff release them."""
    now = now or timezone.now()
    expired = list(
        ChatSession.objects.filter(expires_at__lte=now, restored_at__isnull=True)
        .filter(Q(archive_retry_at__isnull=True) | Q(archive_retry_at__lte=now))
        .order_by("expires_at")
        .values_list("pk", "status")[:batch]
    )
    done = failed_in_a_row = 0
    for session_id, status in expired:
        try:
            _verified_archive(session_id)
        except Exception:
            log.exception("archive_failed", session_id=session_id)
            metrics.incr("archive_failures", reason="expired")
            _postpone(session_id, now)
            failed_in_a_row += 1
            if failed_in_a_row >= STOP_AFTER_FAILURES:
                # Storage is down, not one object bad: the rest wait for the next run rather
                # than each paying the storage client's timeouts and retries.
                log.warning("expiry_stopped_storage_failing", failures=failed_in_a_row)
                break
            continue
        failed_in_a_row = 0
        with write_transaction():
            deleted, _ = ChatSession.objects.filter(
                pk=session_id, expires_at__lte=now, restored_at__isnull=True
            ).delete()
        if deleted and status != ChatSession.Status.ENDED:
            metrics.incr("sessions", event="expired")
        done += 1
    return done


def _expiry_state(session_id: str) -> tuple[str, datetime] | None:
    row = ChatSession.objects.filter(pk=session_id).values_list("status", "expires_at").first()
    return None if row is None else (row[0], row[1])


async def watch_expiry(
    session_id: str,
    known: tuple[str, datetime] | None,
    *,
    warn: Callable[[float, datetime], Awaitable[None]],
    gone: Callable[[], Awaitable[None]],
) -> None:
    """For one connected socket: ``warn(remaining_seconds, expires_at)``
    SESSION_EXPIRY_WARNING_SECONDS before the session
    expires (again if activity moved the deadline and it comes close again), and call ``gone``
    once it has expired or ended. ``known`` is the (status, expires_at) already read, if any."""
    try:
        await _watch_expiry(session_id, known, warn=warn, gone=gone)
    except Exception:  # the socket is closing, or the database is away: stop watching
        log.warning("expiry_watch_failed", session_id=session_id, exc_info=True)


async def _watch_expiry(
    session_id: str,
    known: tuple[str, datetime] | None,
    *,
    warn: Callable[[float, datetime], Awaitable[None]],
    gone: Callable[[], Awaitable[None]],
) -> None:
    warned_for: datetime | None = None
    while True:
        state = known or await sync_to_async(_expiry_state)(session_id)
        known = None
        now = timezone.now()
        if state is None or state[0] == ChatSession.Status.ENDED or now >= state[1]:
            await gone()
            return
        expires_at = state[1]
        remaining = (expires_at - now).total_seconds()
        lead = settings.SESSION_EXPIRY_WARNING_SECONDS
        if remaining <= lead:
            if warned_for != expires_at:
                warned_for = expires_at
                await warn(remaining, expires_at)
            wait = remaining
        else:
            wait = remaining - lead
        # Activity moves the deadline: look again when this one would be reached.
        await asyncio.sleep(min(max(wait, 0.5), 3600.0))
