"""Health of each component the service depends on, checked concurrently with a timeout each.

Each check answers ``up``, ``down``, ``degraded`` or ``disabled`` with its latency and, where it
helps an operator, a short detail. Details are fixed phrases or exception class names, never an
exception's message (a driver's message may carry a connection string with its password) and
never a traceback. The overall verdict: ``unhealthy`` when the database is down (nothing works
without it), ``degraded`` when anything else is down or degraded (the chat still works: the
offline assistant answers without a model, a turn runs without a Celery worker), else ``healthy``.

Blocking checks (database, cache, storage, worker ping) run on a small dedicated thread pool, so
a hung backend ties up at most these threads, never the event loop or the thread that Django's
``sync_to_async`` shares with every request; the caller stops waiting after ``CHECK_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from celery import current_app
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connections
from django.utils import timezone

from chat.llm.chain import get_chain
from chat.models import ChatSession
from ops.scheduler import lease_state
from supportbot import metrics, ratelimit
from supportbot.errors import now_ms

log = structlog.get_logger("supportbot.health")

Status = Literal["up", "down", "degraded", "disabled"]
Overall = Literal["healthy", "degraded", "unhealthy"]

CHECK_TIMEOUT = 3.0  # seconds per check; a load balancer's own probe timeout is usually 5 s
# How long a ping waits for a pong: a filesystem-broker worker answers after about a second.
WORKER_PING_TIMEOUT = 1.5
WORKER_CACHE_SECONDS = 10.0
_STARTED = time.monotonic()
# Enough threads for every blocking check of two overlapping probes; a backend that hangs holds
# its thread until the driver's own timeout fires, and later probes then time out, not pile up.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


@dataclass(frozen=True)
class ComponentHealth:
    status: Status
    latency_ms: float = 0.0
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "latencyMs": round(self.latency_ms, 2)}
        if self.detail:
            body["detail"] = self.detail
        return body


# --- the checks: each returns (status, detail); the runner adds timing and timeouts ---------------

CheckResult = tuple[Status, str | None]


def check_database(alias: str = "default") -> CheckResult:
    """``SELECT 1`` on a connection of this health thread, closed (returned to the pool) after."""
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
    finally:
        connection.close()
    return ("up", None) if row and row[0] == 1 else ("down", "unexpected answer")


def check_cache() -> CheckResult:
    """Write a short-lived key and read it back."""
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    try:
        value = cache.get(key)
    finally:
        cache.delete(key)
    return ("up", None) if value == "ok" else ("down", "value not read back")


async def check_channel_layer() -> CheckResult:
    """Send a message to a throwaway channel and receive it."""
    layer = get_channel_layer()
    if layer is None:
        return "disabled", "no channel layer configured"
    channel = await layer.new_channel("health.")
    nonce = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "nonce": nonce})
    message = await layer.receive(channel)
    if message.get("nonce") != nonce:
        return "down", "message not received back"
    if type(layer).__name__ == "InMemoryChannelLayer":
        return "up", "in-memory (this process only)"
    return "up", None


def check_storage() -> CheckResult:
    """Write a small probe file to the archives storage, read it back, delete it."""
    storage = storages["archives"]
    name = storage.save(f"health/probe-{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    try:
        with storage.open(name, "rb") as handle:
            data = handle.read()
    finally:
        storage.delete(name)
    return ("up", None) if data == b"ok" else ("down", "probe not read back")


_worker_answer: tuple[float, CheckResult] | None = None


def check_worker() -> CheckResult:
    """Whether a Celery worker answers a ping. No answer is ``degraded``: the chat works without.

    The answer is kept for WORKER_CACHE_SECONDS: a ping costs up to WORKER_PING_TIMEOUT (the
    filesystem broker polls once a second) and a worker's liveness is not a sub-second matter.
    """
    global _worker_answer
    cached = _worker_answer
    if cached is not None and time.monotonic() - cached[0] < WORKER_CACHE_SECONDS:
        return cached[1]
    # current_app is the supportbot app in every thread: loading supportbot (supportbot/__init__.py)
    # creates it, and Celery's Django fix-up makes it the default app (ops imports no wiring).
    # limit=1: return on the first pong instead of waiting out the timeout for more workers.
    replies = current_app.control.ping(timeout=WORKER_PING_TIMEOUT, limit=1)
    result: CheckResult = ("up", None) if replies else ("degraded", "no worker answered")
    _worker_answer = (time.monotonic(), result)
    return result


def check_beat() -> CheckResult:
    """Whether a Celery beat holds its lease (``ops.scheduler``): without one, sessions do not
    expire and PII review copies outlive their retention, so its absence degrades."""
    state = lease_state()
    if state is None:
        return "degraded", "no beat has run"
    if not state.live:
        silent = (timezone.now() - state.renewed_at).total_seconds()
        return "degraded", f"no beat for {silent:.0f} s"
    return "up", None


# --- the model chain, cached -------------------------------------------------------------------


@dataclass
class _ModelProbe:
    key: tuple[Any, ...]
    at: float
    results: dict[str, bool]


_model_probe: _ModelProbe | None = None
_model_lock: asyncio.Lock | None = None
_model_lock_loop: asyncio.AbstractEventLoop | None = None


def _lock() -> asyncio.Lock:
    # asyncio locks belong to one event loop; tests (and daphne restarts) bring new loops.
    global _model_lock, _model_lock_loop
    loop = asyncio.get_running_loop()
    if _model_lock is None or _model_lock_loop is not loop:
        _model_lock, _model_lock_loop = asyncio.Lock(), loop
    return _model_lock


def _chain_key(links: list[Any]) -> tuple[Any, ...]:
    # A rebuilt chain (other settings, another endpoint) must not reuse the last chain's answers.
    return tuple(
        (
            link.provider.name,
            link.provider.model,
            str(getattr(link.provider, "base_url", "")),
            id(link.provider),
        )
        for link in links
    )


async def _probe_links(links: list[Any]) -> dict[str, bool]:
    """``check()`` of each non-offline link, at most once per HEALTH_MODEL_CACHE_SECONDS."""
    global _model_probe
    key = _chain_key(links)
    ttl = float(settings.HEALTH_MODEL_CACHE_SECONDS)
    async with _lock():  # concurrent probes wait for one check instead of each making their own
        cached = _model_probe
        if cached is not None and cached.key == key and time.monotonic() - cached.at < ttl:
            return cached.results
        remote = [link for link in links if link.provider.name != "offline"]
        answers = await asyncio.gather(*(_link_check(link) for link in remote))
        results = {link.provider.name: ok for link, ok in zip(remote, answers, strict=True)}
        _model_probe = _ModelProbe(key=key, at=time.monotonic(), results=results)
        return results


async def _link_check(link: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(link.provider.check(), CHECK_TIMEOUT - 0.5))
    except Exception as exc:  # a failed probe is an answer ("unreachable"), not an error
        log.warning("model_check_failed", provider=link.provider.name, error=type(exc).__name__)
        return False


async def check_model() -> CheckResult:
    """Reachability of the configured model links (cached) and the state of their breakers."""
    links = list(get_chain().links)
    if not links:
        return "down", "no model and no offline assistant"
    remote = [link for link in links if link.provider.name != "offline"]
    if not remote:
        return "up", "offline assistant"
    reachable = await _probe_links(links)
    problems: list[str] = []
    for link in remote:
        name = link.provider.name
        state = str(link.breaker.snapshot().get("state", "closed"))
        if not reachable.get(name, False):
            problems.append(f"{name} unreachable")
        elif state != "closed":
            problems.append(f"{name} breaker {state}")
    if not problems:
        return "up", ", ".join(f"{link.provider.name}: {link.provider.model}" for link in remote)
    if all(not reachable.get(link.provider.name, False) for link in remote):
        # Every real model is gone. Not "unhealthy": the rest of the service (sessions, history,
        # tickets, and the offline assistant where it ends the chain) still works.
        if len(remote) < len(links):
            problems.append("answering with the offline assistant")
        return "down", "; ".join(problems)
    return "degraded", "; ".join(problems)


# --- running them ------------------------------------------------------------------------------

_CHECKS: dict[str, Callable[[], CheckResult] | Callable[[], Awaitable[CheckResult]]] = {
    "database": check_database,
    "cache": check_cache,
    "channelLayer": check_channel_layer,
    "model": check_model,
    "storage": check_storage,
    "worker": check_worker,
    "beat": check_beat,
}
# A failing check reports this status; the worker and beat are optional, so their failure only
# degrades.
_FAILURE_STATUS: dict[str, Status] = {"worker": "degraded", "beat": "degraded"}


async def _run(name: str, check: Callable[[], Any]) -> ComponentHealth:
    started = time.perf_counter()
    failure: Status = _FAILURE_STATUS.get(name, "down")
    try:
        if inspect.iscoroutinefunction(check):
            status, detail = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        else:
            loop = asyncio.get_running_loop()
            status, detail = await asyncio.wait_for(
                loop.run_in_executor(_POOL, check), CHECK_TIMEOUT
            )
    except TimeoutError:
        status, detail = failure, f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        log.warning("health_check_failed", component=name, error=type(exc).__name__)
        status, detail = failure, f"check failed: {type(exc).__name__}"
    return ComponentHealth(status, (time.perf_counter() - started) * 1000, detail)


def overall_status(components: dict[str, ComponentHealth]) -> Overall:
    """unhealthy if the database is down; degraded if anything is down or degraded; else healthy."""
    database = components.get("database")
    if database is None or database.status == "down":
        return "unhealthy"
    if any(c.status in ("down", "degraded") for c in components.values()):
        return "degraded"
    return "healthy"


def service_version() -> str:
    """The installed package version, or ``unknown`` when running from an uninstalled tree."""
    try:
        return importlib.metadata.version("supportbot")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def health_report() -> dict[str, Any]:
    """The body of ``GET /health``: every component's health and the overall verdict."""
    names = list(_CHECKS)
    results = await asyncio.gather(*(_run(name, _CHECKS[name]) for name in names))
    components = dict(zip(names, results, strict=True))
    return {
        "status": overall_status(components),
        "components": {name: result.as_json() for name, result in components.items()},
        "uptime": round(time.monotonic() - _STARTED, 3),
        "version": service_version(),
        "timestamp": now_ms(),
    }


# --- the status summary of GET /api/status -----------------------------------------------------


def active_session_count(*, now: datetime | None = None) -> int:
    """Sessions not ended whose last activity is within SESSION_IDLE_MINUTES (one COUNT)."""
    since = (now or timezone.now()) - timedelta(minutes=settings.SESSION_IDLE_MINUTES)
    return (
        ChatSession.objects.exclude(status=ChatSession.Status.ENDED)
        .filter(last_activity__gte=since)
        .count()
    )


def configured_limits() -> dict[str, Any]:
    """The limits of API.md that this deployment has settings for, as clients should see them."""
    return {
        "rateLimitsEnabled": bool(settings.RATE_LIMITS_ENABLED),
        "maxMessageLength": settings.MAX_MESSAGE_CHARS,
        "maxBodyBytes": settings.MAX_BODY_BYTES,
        "maxResponseTokens": settings.LLM_MAX_TOKENS,
        "sessionTtlHours": settings.SESSION_TTL_HOURS,
        "sessionIdleMinutes": settings.SESSION_IDLE_MINUTES,
        "maxVoiceSeconds": settings.RATE_LIMIT_VOICE_MAX_SECONDS,
        # An addition: every rate limit by name, {limit, windowSeconds, scope, type}.
        "rateLimits": {
            spec.name: {
                "limit": spec.amount,
                "windowSeconds": spec.seconds or None,
                "scope": spec.scope,
                "type": spec.type,
            }
            for spec in ratelimit.configured_limits().values()
        },
    }


def status_report() -> dict[str, Any]:
    """The body of ``GET /api/status``: cheap figures only (no probes, one COUNT query)."""
    try:
        breakers = get_chain().breaker_states()
    except Exception as exc:  # a chain that cannot be built must not take the status page down
        log.exception("status_model_chain_failed", error=type(exc).__name__)
        breakers = []
        degraded = True
    else:
        degraded = any(str(b.get("state", "closed")) != "closed" for b in breakers)
    numbers = metrics.snapshot()
    return {
        "status": "degraded" if degraded else "healthy",
        "metrics": {
            "activeSessions": active_session_count(),
            "requestsPerMinute": numbers["requestsPerMinute"],
            "averageLatencyMs": numbers["averageLatencyMs"],
            "errorRatePercent": numbers["errorRatePercent"],
            "aiTokenUsage": numbers["aiTokenUsage"],
        },
        "limits": configured_limits(),
        "models": breakers,
        "timestamp": now_ms(),
    }
