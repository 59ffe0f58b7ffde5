"""Counters and latency histograms: Redis-backed when ``REDIS_URL`` is set, in-process otherwise.

A leaf module: any app may import it, it imports nothing of ours. Every observation lands in the
bucket of its wall-clock minute, as a flat map of ``kind|label|stat`` fields to numbers: with
Redis one hash per minute (expiring after ``RETENTION_MINUTES``, so every process adds to and
reads the same numbers), in memory one dict per minute. ``snapshot`` sums the buckets of a
window. Latency is kept as counts per fixed bucket (``LATENCY_BUCKETS_MS``), from which the
percentiles are interpolated: exact enough for p50/p95/p99 and cheap to add up across processes.

Labels must come from bounded sets (route patterns, provider names, tool names, error codes),
never user text: every distinct label is a field in every minute's hash. Recording never raises:
a Redis failure is logged (at most once per ``_WARN_EVERY_SECONDS``) and the observation dropped,
and Redis is left alone for ``_COOLDOWN_SECONDS`` so an outage costs requests no time.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis
import structlog
from django.conf import settings

log = structlog.get_logger("supportbot.metrics")

# Upper bounds (ms) of the latency buckets; one more bucket catches everything above the last.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1,
    2.5,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
)
RETENTION_MINUTES = 120
MAX_WINDOW_MINUTES = 60
DEFAULT_PREFIX = "supportbot:metrics"
UNMATCHED = "unmatched"  # the route label of a request no URL pattern resolved

# HTTP methods outside this set (clients may send anything) share one label.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REDIS_TIMEOUT_SECONDS = 0.5
_COOLDOWN_SECONDS = 5.0
_WARN_EVERY_SECONDS = 60.0
_MAX_LABEL_CHARS = 200

Fields = dict[str, float]


class _Store(Protocol):
    backend: str

    def add(self, fields: Mapping[str, float], totals: Mapping[str, float]) -> None: ...

    def read(self, minutes: list[int]) -> tuple[list[Mapping[str, float]], Mapping[str, float]]: ...

    def clear(self) -> None: ...


class _MemoryStore:
    """One process's numbers; a lock keeps increments from several threads exact."""

    backend = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minutes: dict[int, defaultdict[str, float]] = {}
        self._totals: defaultdict[str, float] = defaultdict(float)

    def add(self, fields: Mapping[str, float], totals: Mapping[str, float]) -> None:
        minute = _minute()
        with self._lock:
            bucket = self._minutes.get(minute)
            if bucket is None:
                bucket = self._minutes[minute] = defaultdict(float)
                for old in [m for m in self._minutes if m <= minute - RETENTION_MINUTES]:
                    del self._minutes[old]
            for key, value in fields.items():
                bucket[key] += value
            for key, value in totals.items():
                self._totals[key] += value

    def read(self, minutes: list[int]) -> tuple[list[Mapping[str, float]], Mapping[str, float]]:
        with self._lock:
            buckets: list[Mapping[str, float]] = [
                dict(self._minutes[m]) for m in minutes if m in self._minutes
            ]
            return buckets, dict(self._totals)

    def clear(self) -> None:
        with self._lock:
            self._minutes.clear()
            self._totals.clear()


class _RedisStore:
    """Numbers shared by every process: ``{prefix}:{minute}`` hashes and a ``{prefix}:totals``."""

    backend = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        self._prefix = prefix
        self._skip_until = 0.0
        self._warned_at = 0.0

    def add(self, fields: Mapping[str, float], totals: Mapping[str, float]) -> None:
        if time.monotonic() < self._skip_until:
            return
        key = f"{self._prefix}:{_minute()}"
        try:
            pipe = self._client.pipeline(transaction=False)
            for field, value in fields.items():
                if value:
                    _hincr(pipe, key, field, value)
            pipe.expire(key, RETENTION_MINUTES * 60)
            for field, value in totals.items():
                _hincr(pipe, f"{self._prefix}:totals", field, value)
            pipe.execute()
        except self._errors as exc:
            self._failed("record", exc)

    def read(self, minutes: list[int]) -> tuple[list[Mapping[str, float]], Mapping[str, float]]:
        if time.monotonic() < self._skip_until:
            return [], {}
        try:
            pipe = self._client.pipeline(transaction=False)
            for minute in minutes:
                pipe.hgetall(f"{self._prefix}:{minute}")
            pipe.hgetall(f"{self._prefix}:totals")
            *raw_buckets, raw_totals = pipe.execute()
        except self._errors as exc:
            self._failed("snapshot", exc)
            return [], {}
        return [_floats(b) for b in raw_buckets if b], _floats(raw_totals)

    def clear(self) -> None:
        try:
            keys = list(self._client.scan_iter(match=f"{self._prefix}:*", count=500))
            if keys:
                self._client.delete(*keys)
        except self._errors as exc:
            self._failed("clear", exc)

    def _failed(self, operation: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + _COOLDOWN_SECONDS
        if now - self._warned_at >= _WARN_EVERY_SECONDS or not self._warned_at:
            self._warned_at = now
            # The class name only: a Redis error message may carry the URL with its password.
            log.warning("metrics_redis_unavailable", operation=operation, error=type(exc).__name__)


def _hincr(pipe: Any, key: str, field: str, value: float) -> None:
    # A field keeps one type for life: HINCRBY fails on a field that once took a float.
    if isinstance(value, int):
        pipe.hincrby(key, field, value)
    else:
        pipe.hincrbyfloat(key, field, value)


def _floats(raw: Mapping[str, str]) -> dict[str, float]:
    return {key: float(value) for key, value in raw.items()}


_store_lock = threading.Lock()
_store_key: tuple[str, str] | None = None
_store_obj: _Store | None = None


def _store() -> _Store:
    """The store for the current settings (re-made when a test overrides REDIS_URL or prefix)."""
    global _store_key, _store_obj
    key = (getattr(settings, "REDIS_URL", "") or "", _prefix())
    store = _store_obj
    if store is not None and key == _store_key:
        return store
    with _store_lock:
        if _store_obj is None or key != _store_key:
            _store_obj = _RedisStore(key[0], key[1]) if key[0] else _MemoryStore()
            _store_key = key
        return _store_obj


def _prefix() -> str:
    return getattr(settings, "METRICS_PREFIX", "") or DEFAULT_PREFIX


def _minute(now: float | None = None) -> int:
    return int((now if now is not None else time.time()) // 60)


def _label(value: object) -> str:
    # "|" separates the parts of a field name; keep labels from smuggling in another part.
    return str(value).replace("|", "/")[:_MAX_LABEL_CHARS] or "-"


def _bucket_index(latency_ms: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def _timing(kind: str, label: str, *, ok: bool, latency_ms: float) -> Fields:
    latency_ms = max(0.0, float(latency_ms))
    return {
        f"{kind}|{label}|n": 1,
        f"{kind}|{label}|err": 0 if ok else 1,
        f"{kind}|{label}|ms": round(latency_ms, 3),
        f"{kind}|{label}|b{_bucket_index(latency_ms)}": 1,
    }


def _safe_add(fields: Fields, totals: Fields | None = None) -> None:
    try:
        _store().add(fields, totals or {})
    except Exception as exc:  # metrics must never break the caller
        log.warning("metrics_record_failed", error=type(exc).__name__)


# --- recording ---------------------------------------------------------------------------------


def method_label(method: str | None) -> str:
    """A bounded label for an HTTP method (unknown verbs become ``OTHER``)."""
    upper = (method or "").upper()
    return upper if upper in _METHODS else "OTHER"


def record_request(*, route: str, method: str, status: int, latency_ms: float) -> None:
    """Count one HTTP request; ``route`` is the URL pattern (bounded), never the raw path.

    Patterns are labelled with a leading slash (``GET /api/session/<str:session_id>``), so the
    root pattern ``""`` reads ``/``; ``unmatched`` (no pattern resolved) stays as it is.
    """
    path = route if route == UNMATCHED else "/" + route.lstrip("/")
    fields = _timing(
        "http", f"{method_label(method)} {_label(path)}", ok=status < 500, latency_ms=latency_ms
    )
    _safe_add(fields, {"http|requests": 1})


def record_model_call(
    *,
    provider: str,
    model: str,
    ok: bool,
    latency_ms: float,
    prompt_tokens: int,
    completion_tokens: int,
) -> None:
    """Count one model call with its latency and token usage."""
    label = f"{_label(provider)}:{_label(model)}"
    prompt, completion = max(0, int(prompt_tokens)), max(0, int(completion_tokens))
    fields = _timing("model", label, ok=ok, latency_ms=latency_ms)
    fields[f"model|{label}|pt"] = prompt
    fields[f"model|{label}|ct"] = completion
    _safe_add(fields, {"tokens|prompt": prompt, "tokens|completion": completion})


def record_tool_call(*, tool: str, ok: bool, latency_ms: float) -> None:
    """Count one tool execution with its latency."""
    _safe_add(_timing("tool", _label(tool), ok=ok, latency_ms=latency_ms))


def incr(name: str, **labels: str) -> None:
    """Add one to the counter ``name`` with the given (bounded) labels."""
    label_text = ",".join(f"{_label(k)}={_label(v)}" for k, v in sorted(labels.items()))
    field = f"count|{_label(name)}|{label_text}"
    _safe_add({field: 1}, {field: 1})


# --- reading -----------------------------------------------------------------------------------


def percentile(buckets: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of a histogram over ``LATENCY_BUCKETS_MS``, interpolated."""
    total = sum(buckets)
    if total <= 0:
        return 0.0
    rank = q * total
    seen = 0.0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            lower = LATENCY_BUCKETS_MS[index - 1] if index > 0 else 0.0
            if index >= len(LATENCY_BUCKETS_MS):
                return float(lower)  # above the last bound: report the bound, not a guess
            upper = LATENCY_BUCKETS_MS[index]
            return round(lower + (upper - lower) * (rank - seen) / count, 2)
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def _timing_summary(stats: Mapping[str, float]) -> dict[str, Any]:
    count = int(stats.get("n", 0))
    buckets = [stats.get(f"b{i}", 0.0) for i in range(len(LATENCY_BUCKETS_MS) + 1)]
    return {
        "count": count,
        "errors": int(stats.get("err", 0)),
        "averageMs": round(stats.get("ms", 0.0) / count, 2) if count else 0.0,
        "p50": percentile(buckets, 0.50),
        "p95": percentile(buckets, 0.95),
        "p99": percentile(buckets, 0.99),
    }


def _group(fields: Mapping[str, float], kind: str) -> dict[str, dict[str, float]]:
    grouped: dict[str, dict[str, float]] = defaultdict(dict)
    start = f"{kind}|"
    for field, value in fields.items():
        if field.startswith(start):
            _, label, stat = field.split("|", 2)
            grouped[label][stat] = value
    return grouped


def _counters(fields: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """``{name: {"label=value,...": count}}`` from ``count|...`` fields."""
    counters: dict[str, dict[str, int]] = defaultdict(dict)
    for field, value in fields.items():
        if field.startswith("count|"):
            _, name, label_text = field.split("|", 2)
            counters[name][label_text] = int(value)
    return dict(counters)


def _sum(buckets: Iterable[Mapping[str, float]]) -> dict[str, float]:
    merged: defaultdict[str, float] = defaultdict(float)
    for bucket in buckets:
        for key, value in bucket.items():
            merged[key] += value
    return merged


def snapshot(window_minutes: int = 5) -> dict[str, Any]:
    """Sums over the last ``window_minutes`` minute buckets (the current one included).

    Rates divide by the whole window, so right after a start they read low until the window
    fills: the honest figure for "per minute over the last N minutes".
    """
    window = max(1, min(int(window_minutes), MAX_WINDOW_MINUTES))
    current = _minute()
    store = _store()
    try:
        buckets, totals = store.read([current - offset for offset in range(window)])
    except Exception as exc:  # a dashboard renders even without metrics
        log.warning("metrics_snapshot_failed", error=type(exc).__name__)
        buckets, totals = [], {}
    fields = _sum(buckets)

    routes = {label: _timing_summary(s) for label, s in sorted(_group(fields, "http").items())}
    requests = sum(r["count"] for r in routes.values())
    errors = sum(r["errors"] for r in routes.values())
    latency_sum = sum(s.get("ms", 0.0) for s in _group(fields, "http").values())

    models: dict[str, dict[str, Any]] = {}
    prompt = completion = 0
    for label, stats in sorted(_group(fields, "model").items()):
        summary = _timing_summary(stats)
        summary["promptTokens"] = int(stats.get("pt", 0))
        summary["completionTokens"] = int(stats.get("ct", 0))
        prompt += summary["promptTokens"]
        completion += summary["completionTokens"]
        models[label] = summary

    counters = _counters(fields)

    total_prompt = int(totals.get("tokens|prompt", 0))
    total_completion = int(totals.get("tokens|completion", 0))
    return {
        "backend": store.backend,
        "windowMinutes": window,
        "requests": requests,
        "requestsPerMinute": round(requests / window, 2),
        "averageLatencyMs": round(latency_sum / requests, 2) if requests else 0.0,
        "errorRatePercent": round(100.0 * errors / requests, 2) if requests else 0.0,
        "aiTokenUsage": {
            "prompt": prompt,
            "completion": completion,
            "total": prompt + completion,
            "totalSinceStart": total_prompt + total_completion,
        },
        "routes": routes,
        "models": models,
        "tools": {label: _timing_summary(s) for label, s in sorted(_group(fields, "tool").items())},
        "counters": counters,
        "countersSinceStart": _counters(totals),
        "requestsSinceStart": int(totals.get("http|requests", 0)),
    }


def reset() -> None:
    """Forget every number of the current store (tests; a staff "reset counters" action)."""
    _store().clear()
