"""Health of each component the service depends on, checked concurrently with a timeout each.

Each check answers ``up``, ``down``, ``degraded`` or ``disabled`` with its latency and, where it
helps an operator, a short detail. Details are fixed phrases or exception class names, never an
exception's message (a driver's message may carry a connection string with its password) and
never a traceback. The overall verdict: ``unhealthy`` when the database is down (nothing works
without it), ``degraded`` when anything else is down or degraded (the chat still works: the
offline assistant answers without a model, a turn runs without a Celery worker), else ``healthy``.

Blocking checks (database, cache, storage, rate-limit store) run on a small dedicated thread
pool, so a hung backend ties up at most these threads, never the event loop or the thread that
Django's ``sync_to_async`` shares with every request; the caller stops waiting after
``CHECK_TIMEOUT``. The two slow probes, the Celery worker ping and the model endpoints, are never
run by a request: a ``Refresher`` thread per probe (``ops.refresher``) runs it every period, and
a request reads its last answer, reported with its age (``ageSeconds``), or "degraded" with
"checking…" before the first one: no request waits, not even the first.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
from ops.refresher import HUNG_GRACE_SECONDS, Answer, Refresher
from ops.scheduler import lease_state
from supportbot import metrics, ratelimit
from supportbot.errors import now_ms

log = structlog.get_logger("supportbot.health")

Status = Literal["up", "down", "degraded", "disabled"]
Overall = Literal["healthy", "degraded", "unhealthy"]

CHECK_TIMEOUT = 3.0  # seconds per check; a load balancer's own probe timeout is usually 5 s
# How long a ping waits for a pong: a filesystem-broker worker answers after about a second.
WORKER_PING_TIMEOUT = 1.5
# How often the worker is pinged (``settings.HEALTH_WORKER_CACHE_SECONDS`` overrides it): a
# worker's liveness is not a sub-second matter.
WORKER_CACHE_SECONDS = 10.0
_STARTED = time.monotonic()


def _new_pool() -> ThreadPoolExecutor:
    # Enough threads for every blocking check of two overlapping probes; a backend that hangs
    # holds its thread until the driver's own timeout fires, and later probes then time out, not
    # pile up.
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


_pool_of: tuple[int, ThreadPoolExecutor] = (os.getpid(), _new_pool())


def _pool() -> ThreadPoolExecutor:
    """This process's check threads. A forked child inherits the executor but none of its
    threads, and would queue checks that no thread runs: it gets an executor of its own."""
    global _pool_of
    pid, pool = _pool_of
    if pid != os.getpid():
        pool = _new_pool()
        _pool_of = (os.getpid(), pool)
    return pool


@dataclass(frozen=True)
class ComponentHealth:
    status: Status
    latency_ms: float = 0.0
    detail: str | None = None
    # Seconds since a background probe gave this answer (None: checked by this request).
    age_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "latencyMs": round(self.latency_ms, 2)}
        if self.detail:
            body["detail"] = self.detail
        if self.age_s is not None:
            body["ageSeconds"] = round(self.age_s, 3)
        return body


CHECKING = "checking…"


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


def check_rate_limits() -> CheckResult:
    """Whether the rate-limit store answers (``supportbot.ratelimit``'s storage, a real ping).

    An unreachable Redis only degrades: the limiter then admits every request (or, with
    ``RATE_LIMIT_FAIL_CLOSED``, refuses every API request), and the detail says which.
    """
    if not ratelimit.enabled():
        return "disabled", "RATE_LIMITS_ENABLED is off"
    store = ratelimit.backend()
    if not store.url:
        return "up", "in-memory (this process only)"
    # limits' check() is a PING under the storage's own short timeouts, False on any error;
    # the limiter's breaker is left alone (a probe must not change how requests are limited).
    if store.storage.check():
        return "up", None
    if settings.RATE_LIMIT_FAIL_CLOSED:
        return "degraded", "redis unreachable: API requests are refused (fails closed)"
    return "degraded", "redis unreachable: requests are admitted unlimited (fails open)"


def check_beat() -> CheckResult:
    """Whether a Celery beat holds its lease (``ops.scheduler``): without one, sessions do not
    expire and PII review copies outlive their retention, so its absence degrades."""
    try:
        state = lease_state()
    finally:
        connections["default"].close()  # this health thread's connection, back to the pool
    if state is None:
        return "degraded", "no beat has run"
    if not state.live:
        silent = (timezone.now() - state.renewed_at).total_seconds()
        return "degraded", f"no beat for {silent:.0f} s"
    return "up", None


# --- probes refreshed in the background --------------------------------------------------------


def _unanswered(
    refresher: Refresher[Any], answer: Answer[Any] | None, running: float
) -> ComponentHealth | None:
    """What a request reports instead of a background answer: degraded while the probe hangs,
    or before the first answer (never "up" unseen); None when the answer stands."""
    if running > refresher.timeout + HUNG_GRACE_SECONDS:
        age = answer.age() if answer is not None else None
        return ComponentHealth("degraded", running * 1000, f"no answer for {running:.0f} s", age)
    if answer is None:
        return ComponentHealth("degraded", 0.0, CHECKING)
    return None


def _ping_worker() -> CheckResult:
    # current_app is the supportbot app in every thread: loading supportbot (supportbot/__init__.py)
    # creates it, and Celery's Django fix-up makes it the default app (ops imports no wiring).
    # limit=1: return on the first pong instead of waiting out the timeout for more workers.
    try:
        replies = current_app.control.ping(timeout=WORKER_PING_TIMEOUT, limit=1)
    except Exception as exc:  # a broken broker is an answer ("check failed"), not an error
        log.warning("worker_ping_failed", error=type(exc).__name__)
        return "degraded", f"check failed: {type(exc).__name__}"
    return ("up", None) if replies else ("degraded", "no worker answered")


def _worker_period() -> float:
    return float(getattr(settings, "HEALTH_WORKER_CACHE_SECONDS", WORKER_CACHE_SECONDS))


_worker = Refresher[CheckResult](
    "worker", probe=_ping_worker, period=_worker_period, timeout=WORKER_PING_TIMEOUT
)


async def check_worker() -> ComponentHealth:
    """Whether a Celery worker answers a ping (pinged every WORKER_CACHE_SECONDS in the
    background). No answer is ``degraded``: the chat works without a worker."""
    answer, running = _worker.read()
    pending = _unanswered(_worker, answer, running)
    if pending is not None:
        return pending
    assert answer is not None  # _unanswered reports a missing answer
    status, detail = answer.value
    return ComponentHealth(status, answer.latency_ms, detail, answer.age())


# --- the model chain, probed in the background --------------------------------------------------


@dataclass(frozen=True)
class _ModelProbe:
    key: tuple[Any, ...]
    results: dict[str, bool]


@dataclass(frozen=True)
class _ModelTarget:
    """The chain the last health request saw: the refresher probes its links."""

    key: tuple[Any, ...]
    links: list[Any] = field(hash=False)


_model_target: _ModelTarget | None = None
_probe_loop = threading.local()  # the refresher thread's own event loop


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


def _probe_model() -> _ModelProbe:
    """``check()`` of each non-offline link of the target chain, on the refresher's own loop."""
    target = _model_target
    if target is None:  # forgotten since the refresher looked: an answer about nothing
        return _ModelProbe(key=(), results={})
    loop = getattr(_probe_loop, "loop", None)
    if loop is None:
        loop = _probe_loop.loop = asyncio.new_event_loop()
    previous: list[Any] = getattr(_probe_loop, "links", [])
    _probe_loop.links = target.links
    return loop.run_until_complete(_probe_links(target, previous))


async def _probe_links(target: _ModelTarget, previous: list[Any]) -> _ModelProbe:
    # The providers of a replaced chain keep a client for this loop (one per loop): close it.
    kept = {id(link.provider) for link in target.links}
    for link in previous:
        if id(link.provider) not in kept:
            try:
                await link.provider.aclose()
            except Exception as exc:  # a client that will not close is garbage all the same
                log.warning("model_client_close_failed", error=type(exc).__name__)
    remote = [link for link in target.links if link.provider.name != "offline"]
    answers = await asyncio.gather(*(_link_check(link) for link in remote))
    results = {link.provider.name: ok for link, ok in zip(remote, answers, strict=True)}
    return _ModelProbe(key=target.key, results=results)


async def _link_check(link: Any) -> bool:
    try:
        return bool(await asyncio.wait_for(link.provider.check(), CHECK_TIMEOUT - 0.5))
    except Exception as exc:  # a failed probe is an answer ("unreachable"), not an error
        log.warning("model_check_failed", provider=link.provider.name, error=type(exc).__name__)
        return False


def _model_period() -> float:
    return float(settings.HEALTH_MODEL_CACHE_SECONDS)


def _about_target(probe: _ModelProbe) -> bool:
    target = _model_target
    return target is not None and probe.key == target.key


_model = Refresher[_ModelProbe](
    "model",
    probe=_probe_model,
    period=_model_period,
    timeout=CHECK_TIMEOUT - 0.5,
    current=_about_target,
    ready=lambda: _model_target is not None,
)


def forget_answers() -> None:
    """Forget every background answer and the chain to probe (tests; they start from none)."""
    global _model_target
    _model_target = None
    _model.forget()
    _worker.forget()


async def check_model() -> ComponentHealth | CheckResult:
    """Reachability of the configured model links (probed every HEALTH_MODEL_CACHE_SECONDS in
    the background) and the state of their breakers (read now)."""
    global _model_target
    links = list(get_chain().links)
    if not links:
        return "down", "no model and no offline assistant"
    remote = [link for link in links if link.provider.name != "offline"]
    if not remote:
        return "up", "offline assistant"
    key = _chain_key(links)
    if _model_target is None or _model_target.key != key:
        _model_target = _ModelTarget(key=key, links=links)  # read() below wakes the refresher
    answer, running = _model.read()
    pending = _unanswered(_model, answer, running)
    if pending is not None:
        return pending
    assert answer is not None  # _unanswered reports a missing answer
    reachable = answer.value.results
    problems: list[str] = []
    for link in remote:
        name = link.provider.name
        state = str(link.breaker.snapshot().get("state", "closed"))
        if not reachable.get(name, False):
            problems.append(f"{name} unreachable")
        elif state != "closed":
            problems.append(f"{name} breaker {state}")
    if not problems:
        detail = ", ".join(f"{link.provider.name}: {link.provider.model}" for link in remote)
        return ComponentHealth("up", answer.latency_ms, detail, answer.age())
    if all(not reachable.get(link.provider.name, False) for link in remote):
        # Every real model is gone. Not "unhealthy": the rest of the service (sessions, history,
        # tickets, and the offline assistant where it ends the chain) still works.
        if len(remote) < len(links):
            problems.append("answering with the offline assistant")
        return ComponentHealth("down", answer.latency_ms, "; ".join(problems), answer.age())
    return ComponentHealth("degraded", answer.latency_ms, "; ".join(problems), answer.age())


# --- running them ------------------------------------------------------------------------------

Outcome = CheckResult | ComponentHealth
_CHECKS: dict[str, Callable[[], Outcome] | Callable[[], Awaitable[Outcome]]] = {
    "database": check_database,
    "cache": check_cache,
    "channelLayer": check_channel_layer,
    "model": check_model,
    "storage": check_storage,
    "worker": check_worker,
    "beat": check_beat,
    "rateLimits": check_rate_limits,
}
# A failing check reports this status; the worker, beat and rate-limit store are optional (the
# chat runs without them), so their failure only degrades.
_FAILURE_STATUS: dict[str, Status] = {
    "worker": "degraded",
    "beat": "degraded",
    "rateLimits": "degraded",
}


async def _run(name: str, check: Callable[[], Any]) -> ComponentHealth:
    """Run one check with its timeout; a check answered in the background reports its own
    health (the probe's latency and the answer's age), the others are timed here."""
    started = time.perf_counter()
    failure: Status = _FAILURE_STATUS.get(name, "down")
    try:
        if inspect.iscoroutinefunction(check):
            outcome = await asyncio.wait_for(check(), CHECK_TIMEOUT)
        else:
            loop = asyncio.get_running_loop()
            outcome = await asyncio.wait_for(loop.run_in_executor(_pool(), check), CHECK_TIMEOUT)
    except TimeoutError:
        outcome = failure, f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        log.warning("health_check_failed", component=name, error=type(exc).__name__)
        outcome = failure, f"check failed: {type(exc).__name__}"
    if isinstance(outcome, ComponentHealth):
        return outcome
    status, detail = outcome
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
