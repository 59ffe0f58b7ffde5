"""Rate limits: every limit of API.md, with the ``limits`` library.

Request limits use ``limits``' moving window; the hourly token budgets its sliding-window counter
(two counters per key rather than one stored entry per token). Storage is Redis when
``REDIS_URL`` (or ``RATE_LIMIT_STORAGE_URL``) is set (shared by every process), memory otherwise.
Keys are ``<limit name>/<identifier>``: the session id, the client label (the IP, or its keyed
hash with ``HASH_CLIENT_IPS``) or ``all`` for global limits. Session limits are paired with
per-IP ones, so rotating session ids buys no more than the per-IP limits allow.

``hit`` consumes one unit of each named limit and raises the refusal of the first one that is
spent as an ``ApiError`` (429 with ``retryAfter``), spending none of the others; it is called
before any other work of a request, so a refused request costs nothing else. Each call's states
are collected for the ``X-RateLimit-*`` headers (``collect_states``). If Redis cannot be reached,
requests are admitted (``RATE_LIMIT_FAIL_CLOSED=true``: refused with ``SERVICE_DEGRADED``), with a
warning log and the ``ratelimit_storage_errors`` metric; a breaker then skips Redis for a few
seconds so a dead server costs no time per request.

Concurrent sessions per IP and active sessions in all are counts of live sessions, not rates:
``chat.sessions`` counts them in the database (``check_capacity``) when a session is created.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import structlog
from django.conf import settings
from django.dispatch import receiver
from django.test.signals import setting_changed
from limits import RateLimitItem, RateLimitItemPerSecond, WindowStats
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from redis.exceptions import NoScriptError

from supportbot import metrics
from supportbot.breaker import CircuitBreaker
from supportbot.errors import ApiError, wait_in_words
from supportbot.security import security_event

log = structlog.get_logger("supportbot.ratelimit")

GLOBAL = "all"


@dataclass(frozen=True)
class LimitSpec:
    """One configured limit: ``amount`` per ``seconds`` for each key of its ``scope``."""

    name: str
    scope: str  # "session", "ip" or "global" (X-RateLimit-Scope)
    type: str  # what is counted (X-RateLimit-Type)
    amount: int
    seconds: int
    code: str  # the error code of a refusal
    setting: str  # the environment variable that sets ``amount``
    counter: str = "moving"  # "moving" (moving window), "sliding" (counter) or "count" (gauge)

    @property
    def item(self) -> RateLimitItem:
        return _item(self.amount, self.seconds)

    def describe(self) -> str:
        per = {60: "minute", 3600: "hour", 1: "second"}.get(self.seconds, f"{self.seconds} s")
        if self.counter == "count":
            return f"{self.amount} at once"
        return f"{self.amount} per {per}"


@cache
def _item(amount: int, seconds: int) -> RateLimitItem:
    return RateLimitItemPerSecond(amount, seconds, namespace="SB")


_configured: dict[str, LimitSpec] | None = None


def configured_limits() -> dict[str, LimitSpec]:
    """The limits as the settings define them (built once; again after a RATE_LIMIT_ setting
    changes through Django's ``setting_changed``, as tests and ``override_settings`` do)."""
    global _configured
    if _configured is None:
        _configured = _build_limits()
    return _configured


@receiver(setting_changed)
def _forget_limits(*, setting: str, **kwargs: Any) -> None:
    global _configured
    if setting.startswith("RATE_LIMIT"):
        _configured = None


RATE = "RATE_LIMIT_EXCEEDED"
TOKENS = "TOKEN_LIMIT_EXCEEDED"
CONCURRENT = "CONCURRENT_LIMIT_EXCEEDED"


@dataclass(frozen=True)
class Rule:
    """A row of ``RULES``: a ``LimitSpec`` once the settings give its amount (and window)."""

    name: str
    scope: str
    type: str
    window: int | str  # seconds, or the setting that holds them (0: a count, not a rate)
    code: str
    setting: str
    counter: str = "moving"


# Every request limit of API.md, one row each. The amount of each is the setting named last but
# one; ``X-RateLimit-Scope``/``-Type`` are its scope and type.
# fmt: off
RULES: tuple[Rule, ...] = (
    Rule("session_requests", "session", "requests", 60, RATE, "RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE"),  # noqa: E501
    Rule("session_burst", "session", "burst", "RATE_LIMIT_SESSION_BURST_SECONDS", RATE, "RATE_LIMIT_SESSION_BURST"),  # noqa: E501
    Rule("session_tokens", "session", "tokens", 3600, TOKENS, "RATE_LIMIT_SESSION_TOKENS_PER_HOUR", "sliding"),  # noqa: E501
    Rule("session_ws_messages", "session", "websocket", 60, RATE, "RATE_LIMIT_SESSION_WS_MESSAGES_PER_MINUTE"),  # noqa: E501
    Rule("session_voice", "session", "voice", 60, RATE, "RATE_LIMIT_SESSION_VOICE_PER_MINUTE"),
    Rule("ip_concurrent_sessions", "ip", "concurrent", 0, CONCURRENT, "RATE_LIMIT_IP_CONCURRENT_SESSIONS", "count"),  # noqa: E501
    Rule("ip_session_creations", "ip", "sessions", 3600, RATE, "RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR"),  # noqa: E501
    Rule("ip_api_requests", "ip", "requests", 60, RATE, "RATE_LIMIT_IP_API_REQUESTS_PER_MINUTE"),
    Rule("ip_tokens", "ip", "tokens", 3600, TOKENS, "RATE_LIMIT_IP_TOKENS_PER_HOUR", "sliding"),
    Rule("global_active_sessions", "global", "sessions", 0, CONCURRENT, "RATE_LIMIT_GLOBAL_ACTIVE_SESSIONS", "count"),  # noqa: E501
    Rule("global_model_calls", "global", "model_calls", 60, RATE, "RATE_LIMIT_GLOBAL_MODEL_CALLS_PER_MINUTE"),  # noqa: E501
    Rule("global_tool_executions", "global", "tool_executions", 60, RATE, "RATE_LIMIT_GLOBAL_TOOL_EXECUTIONS_PER_MINUTE"),  # noqa: E501
)
# fmt: on


def _build_limits() -> dict[str, LimitSpec]:
    specs = {}
    for rule in RULES:
        window = rule.window
        seconds = getattr(settings, window) if isinstance(window, str) else window
        amount = getattr(settings, rule.setting)
        specs[rule.name] = LimitSpec(
            rule.name, rule.scope, rule.type, amount, seconds, rule.code, rule.setting, rule.counter
        )
    return specs


def enabled() -> bool:
    return bool(settings.RATE_LIMITS_ENABLED)


# --- storage -------------------------------------------------------------------------------------


class _Backend:
    """The storage and the two limiters over it, built once per storage URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url:
            self.storage: Storage = storage_from_string(  # type: ignore[assignment]
                url,
                key_prefix="supportbot:limits",
                socket_connect_timeout=0.25,
                socket_timeout=0.5,
                wrap_exceptions=True,
            )
        else:
            self.storage = MemoryStorage()
        self.moving: RateLimiter = MovingWindowRateLimiter(self.storage)
        self.sliding: RateLimiter = SlidingWindowCounterRateLimiter(self.storage)
        self.breaker = CircuitBreaker(
            "ratelimit-storage", failure_threshold=1, reset_seconds=5.0, kind="ratelimit"
        )
        self._fast: bool | None = None

    def limiter(self, spec: LimitSpec) -> RateLimiter:
        return self.sliding if spec.counter == "sliding" else self.moving

    def trip(self, ops: list[tuple[LimitSpec, str, bool]]) -> list[tuple[bool, WindowStats]]:
        """For each ``(spec, identifier, take)``: take one unit (or only read, ``take=False``)
        and read the window. Returns ``(admitted, stats)`` per op, in order.

        On Redis every op of the list goes in one pipelined round trip, through limits' own
        scripts and keys (so its reads, clears and the admin's scans see the same windows); each
        take stays atomic. In memory, or if limits' internals are not what this expects, the
        ops run one by one through limits' public API.
        """
        if not self.pipelinable():
            return [self._one(spec, identifier, take) for spec, identifier, take in ops]
        storage: Any = self.storage
        now = time.time()
        pipe = storage.get_connection().pipeline(transaction=False)
        for spec, identifier, take in ops:
            item = spec.item
            key = storage.prefixed_key(item.key_for(spec.name, identifier))
            expiry = item.get_expiry()
            if spec.counter == "sliding":  # reads only: budgets are spent through ``spend``
                keys = [
                    storage.prefixed_key(k)
                    for k in _sliding_keys(item.key_for(spec.name, identifier))
                ]
                pipe.evalsha(storage.lua_sliding_window.sha, 2, *keys, expiry)
                continue
            if take:
                pipe.evalsha(
                    storage.lua_acquire_moving_window.sha, 1, key, now, item.amount, expiry, 1
                )
            pipe.evalsha(storage.lua_moving_window.sha, 1, key, now - expiry, item.amount)
        try:
            replies = iter(pipe.execute())
        except NoScriptError:  # Redis restarted and forgot the scripts: load them, go again
            for script in self._scripts():
                script.sha = storage.get_connection().script_load(script.script)
            return self.trip(ops)
        results = []
        for spec, _, take in ops:
            if spec.counter == "sliding":
                stats = _sliding_stats(spec.item, next(replies), now)
                results.append((stats.remaining > 0, stats))
                continue
            acquired = bool(next(replies)) if take else True
            entries = next(replies)
            start, count = (float(entries[0]), int(entries[1])) if entries else (now, 0)
            stats = WindowStats(start + spec.item.get_expiry(), spec.amount - count)
            results.append((acquired if take else stats.remaining > 0, stats))
        return results

    def take_all(self, ops: list[tuple[LimitSpec, str, bool]]) -> list[tuple[bool, WindowStats]]:
        """``trip``, all or nothing: when one op is refused, none of the takes is spent.

        On Redis every unit is taken in one round trip and, when one of them is refused, the
        others are given back in a second (rare) one; in memory every window is read first and
        units are taken only when all have room. Each take stays atomic, so concurrent requests
        never exceed a limit. One take alone needs neither: refused, it is not recorded.
        """
        if sum(take for _, _, take in ops) < 2:
            return self.trip(ops)
        if not self.pipelinable():
            results = self.trip([(spec, identifier, False) for spec, identifier, _ in ops])
            return self.trip(ops) if all(admitted for admitted, _ in results) else results
        results = self.trip(ops)
        if not all(admitted for admitted, _ in results):
            storage: Any = self.storage
            pipe = storage.get_connection().pipeline(transaction=False)
            for (spec, identifier, take), (admitted, _) in zip(ops, results, strict=True):
                if take and admitted and spec.counter == "moving":  # its newest entry is ours
                    pipe.lpop(storage.prefixed_key(spec.item.key_for(spec.name, identifier)))
            pipe.execute()
        return results

    def _one(self, spec: LimitSpec, identifier: str, take: bool) -> tuple[bool, WindowStats]:
        limiter = self.limiter(spec)
        item = spec.item
        if take:
            allowed = limiter.hit(item, spec.name, identifier)
            return allowed, limiter.get_window_stats(item, spec.name, identifier)
        stats = limiter.get_window_stats(item, spec.name, identifier)
        return stats.remaining > 0, stats

    def _scripts(self) -> list[Any]:
        names = ("lua_acquire_moving_window", "lua_moving_window", "lua_sliding_window")
        return [getattr(self.storage, name, None) for name in names]

    def pipelinable(self) -> bool:
        if self._fast is None:
            self._fast = (
                all(
                    script is not None and hasattr(script, "sha") and hasattr(script, "script")
                    for script in self._scripts()
                )
                and hasattr(self.storage, "prefixed_key")
                and hasattr(self.storage, "_current_window_key")
            )
        return self._fast


def _sliding_keys(key: str) -> tuple[str, str]:
    """The previous and current window keys of limits' Redis sliding-window counter."""
    return f"{{{key}}}/-1", f"{{{key}}}"


def _sliding_stats(item: RateLimitItem, raw: Any, now: float) -> WindowStats:
    """limits' ``SlidingWindowCounterRateLimiter.get_window_stats`` on a pipelined reply."""
    previous_count, previous_ttl, current_count, current_ttl = 0, 0.0, 0, 0.0
    if raw:
        previous_count, current_count = int(raw[0] or 0), int(raw[2] or 0)
        previous_ttl = max(0.0, float(raw[1] or 0)) / 1000
        current_ttl = max(0.0, float(raw[3] or 0)) / 1000
    expiry = item.get_expiry()
    weighted = previous_count * previous_ttl / expiry + current_count
    remaining = max(0, item.amount - math.floor(weighted))
    if not (previous_count or current_count):
        return WindowStats(now, remaining)
    previous_reset_in = previous_ttl % (expiry / previous_count) if previous_count else math.inf
    current_reset_in = current_ttl % expiry if current_count else math.inf
    return WindowStats(now + min(previous_reset_in, current_reset_in), remaining)


_backend: _Backend | None = None
_backend_lock = threading.Lock()


def backend() -> _Backend:
    global _backend
    url = settings.RATE_LIMIT_STORAGE_URL or settings.REDIS_URL or ""
    if url.startswith("unix://"):  # limits' name for a Redis socket
        url = "redis+" + url
    current = _backend
    if current is None or current.url != url:
        with _backend_lock:
            if _backend is None or _backend.url != url:
                _backend = _Backend(url)
            current = _backend
    return current


def reset_backend() -> None:
    """Forget every counter (tests; a memory backend is rebuilt empty), and the limits as built
    from the settings (a bench may set them directly)."""
    global _backend, _configured
    _configured = None
    with _backend_lock:
        if _backend is not None:
            with contextlib.suppress(Exception):
                _backend.storage.reset()
        _backend = None


class StorageDown(Exception):
    """The rate-limit storage could not be reached (or is being skipped after a failure)."""


@contextlib.contextmanager
def _storage_call(b: _Backend) -> Iterator[None]:
    if not b.breaker.allow():
        raise StorageDown
    try:
        yield
    except Exception as exc:
        b.breaker.record_failure()
        metrics.incr("ratelimit_storage_errors")
        log.warning("ratelimit_storage_unreachable", error=type(exc).__name__)
        raise StorageDown from exc
    b.breaker.record_success()


# --- states for the headers ---------------------------------------------------------------------


@dataclass(frozen=True)
class LimitState:
    spec: LimitSpec
    identifier: str
    remaining: int
    reset: float  # epoch seconds
    refused: bool = False  # this limit refused the request: the headers must describe it

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.spec.amount),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(math.ceil(self.reset)),
            "X-RateLimit-Type": self.spec.type,
            "X-RateLimit-Scope": self.spec.scope,
        }


_states: contextvars.ContextVar[list[LimitState] | None] = contextvars.ContextVar(
    "ratelimit_states", default=None
)


def collect_states() -> list[LimitState]:
    """Start collecting this request's limit states (the middleware, at the start of a request)."""
    states: list[LimitState] = []
    _states.set(states)
    return states


def _note(state: LimitState) -> None:
    states = _states.get()
    if states is not None:
        states.append(state)


def tightest(states: list[LimitState]) -> LimitState | None:
    """The state to report in the headers: the one with the least room left, proportionally."""
    if not states:
        return None
    for state in states:
        if state.refused:
            return state
    return min(states, key=lambda s: (s.remaining / s.spec.amount, s.remaining))


# --- checks ------------------------------------------------------------------------------------


def _refusal(spec: LimitSpec, identifier: str, retry_after: float, **context: Any) -> ApiError:
    retry = max(1, math.ceil(retry_after))
    what = {"session": "this session", "ip": "your address", "global": "the service"}[spec.scope]
    message = {
        "TOKEN_LIMIT_EXCEEDED": f"The model token budget of {what} is used up",
        "CONCURRENT_LIMIT_EXCEEDED": f"Too many active sessions for {what}",
    }.get(spec.code, f"Too many requests for {what}")
    security_event(
        "rate_limited",
        code=spec.code,
        limit=spec.name,
        scope=spec.scope,
        key=identifier,
        retry_after=retry,
        **context,
    )
    metrics.incr("ratelimit_refusals")
    return ApiError(
        spec.code,
        f"{message} ({spec.describe()}); try again in {wait_in_words(retry)}.",
        details={"limit": spec.amount, "scope": spec.scope, "type": spec.type, "name": spec.name},
        retry_after=retry,
    )


def _storage_down(spec: LimitSpec) -> None:
    if settings.RATE_LIMIT_FAIL_CLOSED:
        raise ApiError(
            "SERVICE_DEGRADED",
            "Rate limiting is unavailable, so requests are refused for now.",
            retry_after=5,
            details={"limit": spec.name},
        )


def hit(*checks: tuple[str, str], session_id: str = "", client_ip: str = "") -> None:
    """Take one unit of each ``(limit name, identifier)``; raise the first refusal, in order.

    The checks of one call go to the storage together (``_Backend.take_all``); when one refuses,
    none of them is spent. ``session_id`` and ``client_ip`` only label the security event of a
    refusal.
    """
    check(takes=checks, session_id=session_id, client_ip=client_ip)


def require_budget(*checks: tuple[str, str], session_id: str = "", client_ip: str = "") -> None:
    """Refuse when a (token) budget is already spent, without consuming it."""
    check(budgets=checks, session_id=session_id, client_ip=client_ip)


def check(
    *,
    takes: tuple[tuple[str, str], ...] = (),
    budgets: tuple[tuple[str, str], ...] = (),
    session_id: str = "",
    client_ip: str = "",
) -> None:
    """``hit`` for ``takes`` and ``require_budget`` for ``budgets``, in one trip."""
    if not enabled():
        return
    specs = configured_limits()
    ops = [(specs[name], identifier, True) for name, identifier in takes]
    ops += [(specs[name], identifier, False) for name, identifier in budgets]
    if not ops:
        return
    b = backend()
    try:
        with _storage_call(b):
            results = b.take_all(ops)  # a refused request spends nothing
    except StorageDown:
        _storage_down(ops[0][0])
        return
    refused: tuple[LimitSpec, str, float] | None = None
    for (spec, identifier, _), (admitted, stats) in zip(ops, results, strict=True):
        if not admitted and refused is None:
            wait = (
                _sliding_retry(spec, stats.reset_time)
                if spec.counter == "sliding"
                else stats.reset_time - time.time()
            )
            refused = (spec, identifier, wait)
            _note(LimitState(spec, identifier, 0, time.time() + max(1.0, wait), refused=True))
        else:
            _note(LimitState(spec, identifier, stats.remaining, stats.reset_time))
    if refused is not None:
        spec, identifier, wait = refused
        raise _refusal(spec, identifier, wait, session_id=session_id, client_ip=client_ip)


def _sliding_retry(spec: LimitSpec, reset_time: float) -> float:
    # A sliding counter frees room gradually; its reset time is when the oldest share expires.
    return max(1.0, min(reset_time - time.time(), spec.seconds))


def spend(name: str, identifier: str, cost: int) -> None:
    """Record ``cost`` units actually used (model tokens), even past the limit.

    The tokens have been spent already, so a hit that would overflow fills the window instead of
    being dropped: the next ``require_budget`` then refuses.
    """
    if not enabled() or cost <= 0:
        return
    spec = configured_limits()[name]
    b = backend()
    limiter = b.limiter(spec)
    item = spec.item
    try:
        with _storage_call(b):
            if not limiter.hit(item, name, identifier, cost=min(cost, spec.amount)):
                remaining = limiter.get_window_stats(item, name, identifier).remaining
                if remaining > 0:
                    limiter.hit(item, name, identifier, cost=remaining)
    except StorageDown:
        return


def check_capacity(spec_name: str, identifier: str, in_use: int, *, oldest_frees_in: float) -> None:
    """Refuse when a counted limit (sessions at once) is full."""
    if not enabled():
        return
    spec = configured_limits()[spec_name]
    remaining = spec.amount - in_use
    full = remaining <= 0
    reset = time.time() + (max(1.0, oldest_frees_in) if full else oldest_frees_in)
    _note(LimitState(spec, identifier, max(0, remaining - 1), reset, refused=full))
    if full:
        raise _refusal(spec, identifier, oldest_frees_in)


# --- what the admin shows and does ------------------------------------------------------------


@dataclass(frozen=True)
class KeyUsage:
    spec: LimitSpec
    identifier: str
    used: int
    remaining: int
    reset: float

    @property
    def share(self) -> float:
        return self.used / self.spec.amount if self.spec.amount else 0.0


def _stored_keys(b: _Backend) -> set[tuple[str, str]]:
    """``(limit name, identifier)`` of every key the storage holds now."""
    raw: list[str] = []
    storage = b.storage
    if isinstance(storage, MemoryStorage):
        raw = list(storage.events) + list(storage.storage)
    else:
        client = storage.get_connection()  # type: ignore[attr-defined]
        for key in client.scan_iter(match="supportbot:limits:*", count=1000):
            raw.append(key.decode() if isinstance(key, bytes) else key)
    found: set[tuple[str, str]] = set()
    specs = configured_limits()
    for key in raw:
        # SB/<name>/<identifier>/<amount>/<seconds>/second[/window]; an identifier may hold "/"
        bare = key.removeprefix("supportbot:limits:").replace("{", "").replace("}", "")
        name, _, rest = bare.partition("SB/")[2].partition("/")
        spec = specs.get(name)
        end = rest.rfind(f"/{spec.amount}/{spec.seconds}/second") if spec else 0
        if end > 0:  # an IPv6 client is its /64 network: "2001:db8::/64"
            found.add((name, rest[:end]))
    return found


def busiest(limit: int | None = 50) -> list[KeyUsage]:
    """The stored keys with the most of their limit used right now (``None``: all of them)."""
    b = backend()
    specs = configured_limits()
    usages: list[KeyUsage] = []
    with _storage_call(b):
        for name, identifier in _stored_keys(b):
            spec = specs[name]
            stats = b.limiter(spec).get_window_stats(spec.item, name, identifier)
            used = spec.amount - stats.remaining
            if used > 0:
                usages.append(KeyUsage(spec, identifier, used, stats.remaining, stats.reset_time))
    usages.sort(key=lambda u: (-u.share, -u.used, u.spec.name, u.identifier))
    return usages[:limit]


def reset_key(name: str, identifier: str) -> int:
    """Forget a stored key's usage (an admin action); returns how much of it was used."""
    spec = configured_limits()[name]
    if spec.counter == "count":  # live sessions, not a counter: clearing would free nothing
        raise ValueError(f"{name} counts live sessions; it has no stored counter")
    b = backend()
    with _storage_call(b):
        stats = b.limiter(spec).get_window_stats(spec.item, name, identifier)
        b.limiter(spec).clear(spec.item, name, identifier)
    return spec.amount - stats.remaining
