"""The security log: every block, redaction and refusal as one structured event.

Each event goes to the ``supportbot.security`` logger (JSON lines, like every log here) with the
request id, session id and client (its keyed hash when ``HASH_CLIENT_IPS`` is set), is counted
in the metrics (``security_<kind>``), and is kept in a short list of recent events that the ops
admin shows (Redis when ``REDIS_URL`` is set, so every process sees the same list; memory
otherwise). Events never carry clear PII: callers pass kinds, positions and fingerprints.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from typing import Any

import redis
import structlog
from django.conf import settings
from django_redis import get_redis_connection

from supportbot import metrics
from supportbot.clients import client_label

log = structlog.get_logger("supportbot.security")

RECENT_MAX = 500
_RECENT_KEY = "supportbot:security:recent"
_recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_MAX)
_lock = threading.Lock()


def security_event(
    kind: str,
    *,
    session_id: str = "",
    client_ip: str = "",
    request_id: str = "",
    **fields: Any,
) -> None:
    """Record one security event (``rate_limited``, ``content_blocked``, ``content_flagged``,
    ``pii_redacted``, ``reply_blocked``, …)."""

    context = structlog.contextvars.get_contextvars()
    event = {
        "kind": kind,
        "at": time.time(),
        "requestId": request_id or context.get("request_id") or "",
        "sessionId": session_id or context.get("session_id") or "",
        "client": client_label(client_ip) if client_ip else "",
        **fields,
    }
    log.warning(
        "security_event",
        security_kind=kind,
        **{k: v for k, v in event.items() if k not in ("kind", "at", "requestId", "sessionId")},
        request_id=event["requestId"],
        session_id=event["sessionId"],
    )
    _count(kind, fields)
    _remember(event)


# What each kind of event counts as among the guards' outcomes on the dashboard.
_OUTCOMES = {
    "rate_limited": "rate_limited",
    "content_blocked": "blocked",
    "reply_blocked": "blocked",
    "content_flagged": "flagged",
    "pii_redacted": "redacted",
}


def _count(kind: str, fields: dict[str, Any]) -> None:
    """One guard outcome per event; a redaction once per kind of PII it found (bounded labels:
    the event kinds, the rate limits' names, the PII detectors' kinds)."""
    outcome = _OUTCOMES.get(kind, kind)
    if kind == "pii_redacted":
        for pii in fields.get("kinds") or ["unknown"]:
            metrics.incr("guard", outcome=outcome, detail=str(pii))
    elif kind == "rate_limited":
        metrics.incr("guard", outcome=outcome, detail=str(fields.get("limit", "")))
    else:
        metrics.incr("guard", outcome=outcome, detail=kind)


def _redis() -> Any:
    return get_redis_connection("default")


def _remember(event: dict[str, Any]) -> None:
    if settings.REDIS_URL:
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.lpush(_RECENT_KEY, json.dumps(event, default=str))
            pipe.ltrim(_RECENT_KEY, 0, RECENT_MAX - 1)
            pipe.execute()
            return
        except Exception:
            log.warning("security_recent_unavailable", exc_info=True)
    with _lock:
        _recent.appendleft(event)


def recent_events(kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest events first, optionally of one kind."""
    events: list[dict[str, Any]] = []
    if settings.REDIS_URL:
        try:
            events = [json.loads(raw) for raw in _redis().lrange(_RECENT_KEY, 0, RECENT_MAX - 1)]
        except Exception:
            log.warning("security_recent_unavailable", exc_info=True)
    if not events:
        with _lock:
            events = list(_recent)
    if kind is not None:
        events = [event for event in events if event.get("kind") == kind]
    return events[:limit]


def _older(event: dict[str, Any], cutoff_epoch: float) -> bool:
    at = event.get("at")
    # An entry without a readable time cannot prove it is recent: it goes with the old ones.
    return not isinstance(at, int | float) or isinstance(at, bool) or at < cutoff_epoch


def _decoded(raw: Any) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def count_before(cutoff_epoch: float) -> int:
    """How many recent events are older than ``cutoff_epoch`` (Redis list and this process's)."""
    old = 0
    if settings.REDIS_URL:
        try:
            raws = _redis().lrange(_RECENT_KEY, 0, -1)
            old += sum(1 for raw in raws if _older(_decoded(raw), cutoff_epoch))
        except Exception:
            log.warning("security_recent_unavailable", exc_info=True)
    with _lock:
        old += sum(1 for event in _recent if _older(event, cutoff_epoch))
    return old


def _forget_in_redis(cutoff_epoch: float) -> int:
    """Rewrite the shared list without its old entries, atomically: a process pushing an event
    meanwhile makes the transaction fail (WATCH), and it is tried again on the new list."""
    with _redis().pipeline(transaction=True) as pipe:
        for _attempt in range(5):
            try:
                pipe.watch(_RECENT_KEY)
                raws = pipe.lrange(_RECENT_KEY, 0, -1)
                kept = [raw for raw in raws if not _older(_decoded(raw), cutoff_epoch)]
                if len(kept) == len(raws):
                    pipe.unwatch()
                    return 0
                pipe.multi()
                pipe.delete(_RECENT_KEY)
                if kept:
                    pipe.rpush(_RECENT_KEY, *kept)
                pipe.execute()
                return len(raws) - len(kept)
            except redis.WatchError:
                continue
    return 0  # five writers in a row: the next run forgets them


def forget_before(cutoff_epoch: float) -> int:
    """Forget the recent events older than ``cutoff_epoch`` (retention); return how many."""
    forgotten = 0
    if settings.REDIS_URL:
        try:
            forgotten += _forget_in_redis(cutoff_epoch)
        except Exception:
            log.warning("security_recent_unavailable", exc_info=True)
    with _lock:
        kept = [event for event in _recent if not _older(event, cutoff_epoch)]
        forgotten += len(_recent) - len(kept)
        _recent.clear()
        _recent.extend(kept)
    return forgotten


def clear_recent() -> None:
    """Forget the recent list (tests)."""
    with _lock:
        _recent.clear()
    if settings.REDIS_URL:
        try:
            _redis().delete(_RECENT_KEY)
        except Exception:
            log.warning("security_recent_unavailable", exc_info=True)
