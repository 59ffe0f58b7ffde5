"""Counters, gauges and latency histograms that last, shared by every process.

A leaf of the kernel: any app may import it; it imports nothing of the apps. Every observation is
a set of ``kind|label|stat`` fields added to the bucket of its wall-clock minute; where they are
kept, and how every process's numbers meet, is ``supportbot.metrics_store``. Recording costs a
lock and a few dict updates and never raises; reading sums buckets.

Latency is kept as counts per fixed bucket (``LATENCY_BUCKETS_MS``), from which percentiles are
interpolated: exact enough for p50/p95/p99 and cheap to add up across processes and buckets.

Labels must come from bounded sets (route patterns, provider and model names, tool names, error
codes, PII kinds), never user text: every distinct label is a field of every bucket. What a
customer spends is kept per ``userId`` as rows instead (``record_usage``).
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from django.conf import settings

from supportbot import metrics_store
from supportbot.metrics_store import (
    Batch,
    Fields,
    Usage,
    backend_name,
    breaker_states,
    flush,
    read_buckets,
    read_totals,
    register_breakers,
    usage_rows,
)

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
    300_000,
    900_000,
    1_800_000,
    3_600_000,
)
MAX_WINDOW_MINUTES = 60 * 24
UNMATCHED = "unmatched"  # the route label of a request no URL pattern resolved

# HTTP methods outside this set (clients may send anything) share one label.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_LABEL_CHARS = 120

__all__ = [
    "Batch",
    "Usage",
    "backend_name",
    "breaker_states",
    "flush",
    "read_buckets",
    "read_totals",
    "register_breakers",
    "usage_rows",
]


def _safe_add(fields: Fields) -> None:
    metrics_store.add(fields)


def _label(value: object) -> str:
    # "|" separates the parts of a field name, "," and "=" those of a counter's labels.
    text = str(value).replace("|", "/").replace(",", ";").replace("=", ":")
    return text[:_MAX_LABEL_CHARS] or "-"


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


def _count_field(name: str, labels: Mapping[str, object]) -> str:
    label_text = ",".join(f"{_label(k)}={_label(v)}" for k, v in sorted(labels.items()))
    return f"count|{_label(name)}|{label_text}"


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
    _safe_add(fields)


def model_price(model: str) -> tuple[float, float] | None:
    """USD per million prompt and completion tokens of ``model`` (``MODEL_PRICES``), or None."""
    prices: Mapping[str, Any] = getattr(settings, "MODEL_PRICES", {}) or {}
    price = prices.get(model)
    if price is None:
        return None
    return float(price[0]), float(price[1])


def token_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The cost in USD of a call's tokens, or None when the model has no price."""
    price = model_price(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def record_model_call(
    *,
    provider: str,
    model: str,
    ok: bool,
    latency_ms: float,
    prompt_tokens: int,
    completion_tokens: int,
    fallback: bool = False,
) -> None:
    """Count one model call with its latency, token usage and cost (``MODEL_PRICES``)."""
    label = f"{_label(provider)}:{_label(model)}"
    prompt, completion = max(0, int(prompt_tokens)), max(0, int(completion_tokens))
    fields = _timing("model", label, ok=ok, latency_ms=latency_ms)
    fields[f"model|{label}|pt"] = prompt
    fields[f"model|{label}|ct"] = completion
    fields["tokens|prompt|n"] = prompt
    fields["tokens|completion|n"] = completion
    cost = token_cost(model, prompt, completion)
    if cost is not None:
        fields[f"model|{label}|usd"] = cost
        fields["tokens|cost|usd"] = cost
    elif prompt or completion:
        fields["tokens|unpriced|n"] = prompt + completion
    if fallback:
        fields[f"model|{label}|fb"] = 1
    _safe_add(fields)


def record_tool_call(*, tool: str, ok: bool, latency_ms: float, outcome: str = "") -> None:
    """Count one tool execution with its latency and outcome (``ok``, ``failed``, ``refused``…)."""
    fields = _timing("tool", _label(tool), ok=ok, latency_ms=latency_ms)
    fields[
        _count_field(
            "tool_outcomes", {"tool": tool, "outcome": outcome or ("ok" if ok else "failed")}
        )
    ] = 1
    _safe_add(fields)


def record_turn(
    *,
    transport: str,
    ok: bool,
    total_ms: float,
    first_token_ms: float | None,
    error_code: str = "",
    sourced: bool | None = None,
    fallback: bool = False,
) -> None:
    """Count one turn of conversation: its total time, its time to first token, its outcome."""
    label = _label(transport)
    fields = _timing("turn", label, ok=ok, latency_ms=total_ms)
    if first_token_ms is not None:
        fields.update(_timing("ttft", label, ok=True, latency_ms=first_token_ms))
    if not ok:
        fields[_count_field("turn_errors", {"code": error_code or "INTERNAL_ERROR"})] = 1
    if ok and sourced is not None:
        fields[_count_field("answers", {"sourced": "yes" if sourced else "no"})] = 1
    if ok and fallback:
        fields[_count_field("answers", {"fallback": "yes"})] = 1
    _safe_add(fields)


def record_timing(kind: str, label: str, *, latency_ms: float, ok: bool = True) -> None:
    """Count one timed event of another ``kind`` (``handoff_wait``…) with a bounded label."""
    _safe_add(_timing(_label(kind), _label(label), ok=ok, latency_ms=latency_ms))


def record_usage(
    *,
    user_id: str,
    api_key: str = "",
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    turns: int = 1,
) -> None:
    """Add a turn's spend to what ``user_id`` (or the API key) spent today: a table row, never a
    label. An anonymous session counts as user ``""``."""
    try:
        key = (datetime.now(tz=UTC).date(), str(user_id)[:128], str(api_key)[:64])
        metrics_store.add_usage(
            key,
            Usage(
                turns=turns,
                prompt_tokens=max(0, int(prompt_tokens)),
                completion_tokens=max(0, int(completion_tokens)),
                cost_usd=max(0.0, float(cost_usd)),
            ),
        )
    except Exception as exc:
        log.warning("metrics_record_failed", error=type(exc).__name__)


def incr(name: str, amount: int = 1, **labels: str) -> None:
    """Add ``amount`` to the counter ``name`` with the given (bounded) labels."""
    _safe_add({_count_field(name, labels): amount})


def gauge(name: str, value: float, **labels: str) -> None:
    """Sample a gauge (active sessions…): each bucket keeps the sum and the number of samples,
    so a bucket reads as the mean of its samples, also summed over processes' samples."""
    label_text = ",".join(f"{_label(k)}={_label(v)}" for k, v in sorted(labels.items()))
    _safe_add(
        {
            f"gauge|{_label(name)}|{label_text}|sum": float(value),
            f"gauge|{_label(name)}|{label_text}|n": 1,
        }
    )


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


def histogram(stats: Mapping[str, float]) -> list[float]:
    """The bucket counts of one timed label's stats (``b0`` … ``bN``)."""
    return [stats.get(f"b{i}", 0.0) for i in range(len(LATENCY_BUCKETS_MS) + 1)]


def timing_summary(stats: Mapping[str, float]) -> dict[str, Any]:
    """Count, errors, mean and p50/p95/p99 of one timed label's stats."""
    count = int(stats.get("n", 0))
    buckets = histogram(stats)
    return {
        "count": count,
        "errors": int(stats.get("err", 0)),
        "averageMs": round(stats.get("ms", 0.0) / count, 2) if count else 0.0,
        "p50": percentile(buckets, 0.50),
        "p95": percentile(buckets, 0.95),
        "p99": percentile(buckets, 0.99),
    }


class Indexed(dict[str, float]):
    """Fields that index themselves, once, by kind and label: readers that ask many questions
    of the same bucket (a dashboard's 168 points, each asked by several charts) scan it once.
    Read-only once indexed."""

    _kinds: dict[str, dict[str, dict[str, float]]] | None = None

    def kinds(self) -> dict[str, dict[str, dict[str, float]]]:
        if self._kinds is None:
            kinds: dict[str, dict[str, dict[str, float]]] = {}
            for name, value in self.items():
                kind, _, rest = name.partition("|")
                if kind == "count":  # count|name|labels: by counter, then by its label text
                    counter, _, label = rest.partition("|")
                    kinds.setdefault("count", {}).setdefault(counter, {})[label] = value
                else:  # kind|label|stat
                    label, _, stat = rest.rpartition("|")
                    kinds.setdefault(kind, {}).setdefault(label, {})[stat] = value
            self._kinds = kinds
        return self._kinds


def group(fields: Mapping[str, float], kind: str) -> dict[str, dict[str, float]]:
    """``{label: {stat: value}}`` of the fields of one ``kind`` (``http``, ``model``, ``turn``…)."""
    if isinstance(fields, Indexed):
        return fields.kinds().get(kind, {})
    grouped: dict[str, dict[str, float]] = defaultdict(dict)
    start = f"{kind}|"
    for name, value in fields.items():
        if name.startswith(start):
            _, label, stat = name.split("|", 2)
            grouped[label][stat] = value
    return dict(grouped)


def merged_timing(fields: Mapping[str, float], kind: str) -> dict[str, float]:
    """The stats of every label of ``kind`` added together (all transports' turns…)."""
    return sum_fields(group(fields, kind).values())


@functools.lru_cache(maxsize=4096)
def _labels(label_text: str) -> tuple[tuple[str, str], ...]:
    pairs = (part.split("=", 1) for part in label_text.split(",") if "=" in part)
    return tuple((key, value) for key, value in pairs)


def parse_labels(label_text: str) -> dict[str, str]:
    """``{"code": "X"}`` from a counter's ``code=X`` label text."""
    return dict(_labels(label_text))


def _counter_fields(fields: Mapping[str, float]) -> dict[str, dict[str, float]]:
    if isinstance(fields, Indexed):
        return fields.kinds().get("count", {})
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for name, value in fields.items():
        if name.startswith("count|"):
            _, counter, label_text = name.split("|", 2)
            found[counter][label_text] = value
    return found


def counters(fields: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """``{name: {"label=value,...": count}}`` from ``count|...`` fields."""
    return {
        name: {text: int(value) for text, value in series.items()}
        for name, series in _counter_fields(fields).items()
    }


def counter_total(fields: Mapping[str, float], name: str, **labels: str) -> int:
    """The sum of counter ``name`` over every label set that includes ``labels``."""
    wanted = labels.items()
    total = 0.0
    for label_text, value in _counter_fields(fields).get(name, {}).items():
        have = dict(_labels(label_text))
        if all(have.get(k) == v for k, v in wanted):
            total += value
    return int(total)


def gauge_mean(fields: Mapping[str, float], name: str, label_text: str = "") -> float | None:
    """The mean of gauge ``name``'s samples in these fields, None when it has none."""
    samples = fields.get(f"gauge|{name}|{label_text}|n", 0.0)
    if not samples:
        return None
    return fields.get(f"gauge|{name}|{label_text}|sum", 0.0) / samples


def sum_fields(buckets: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Buckets added together, field by field."""
    merged: defaultdict[str, float] = defaultdict(float)
    for bucket in buckets:
        for key, value in bucket.items():
            merged[key] += value
    return dict(merged)


def snapshot(window_minutes: int = 5) -> dict[str, Any]:
    """Sums over the last ``window_minutes`` minute buckets (the current one included).

    Rates divide by the whole window, so right after a start they read low until the window
    fills: the honest figure for "per minute over the last N minutes". A store that cannot be
    read gives zeros and ``available: False``, never an error.
    """
    window = max(1, min(int(window_minutes), MAX_WINDOW_MINUTES))
    current = metrics_store.minute()
    available = True
    try:
        buckets = read_buckets("m", [current - offset for offset in range(window)])
        totals = read_totals()
    except Exception as exc:  # a dashboard renders even without metrics
        log.warning("metrics_snapshot_failed", error=type(exc).__name__)
        buckets, totals, available = {}, {}, False
    fields = sum_fields(buckets.values())

    routes = {label: timing_summary(s) for label, s in sorted(group(fields, "http").items())}
    requests = sum(r["count"] for r in routes.values())
    errors = sum(r["errors"] for r in routes.values())
    latency_sum = sum(s.get("ms", 0.0) for s in group(fields, "http").values())

    models: dict[str, dict[str, Any]] = {}
    for label, stats in sorted(group(fields, "model").items()):
        summary = timing_summary(stats)
        summary["promptTokens"] = int(stats.get("pt", 0))
        summary["completionTokens"] = int(stats.get("ct", 0))
        summary["costUsd"] = round(stats.get("usd", 0.0), 6)
        summary["fallbacks"] = int(stats.get("fb", 0))
        models[label] = summary

    prompt = int(fields.get("tokens|prompt|n", 0))
    completion = int(fields.get("tokens|completion|n", 0))
    total_prompt = int(totals.get("tokens|prompt|n", 0))
    total_completion = int(totals.get("tokens|completion|n", 0))
    return {
        "backend": backend_name(),
        "available": available,
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
        "turns": timing_summary(merged_timing(fields, "turn")),
        "firstToken": timing_summary(merged_timing(fields, "ttft")),
        "routes": routes,
        "models": models,
        "tools": {label: timing_summary(s) for label, s in sorted(group(fields, "tool").items())},
        "counters": counters(fields),
        "countersSinceStart": counters(totals),
        "requestsSinceStart": int(sum(s.get("n", 0) for s in group(totals, "http").values())),
    }


def reset() -> None:
    """Forget every number of the current store and this process's buffer (tests)."""
    metrics_store.clear()
