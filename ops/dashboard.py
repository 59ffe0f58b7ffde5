"""The figures of the ops dashboard and of ``GET /api/metrics``, read from the shared metrics.

A range (``1h``, ``24h``, ``7d``, ``30d``) reads minute buckets for the last hour and hourly ones
otherwise (30 days are shown per day). Every figure here is computed from the buckets that
``supportbot.metrics`` keeps, so every process's turns are in it; the few that are state rather
than history (breakers, open hand-offs, active sessions now) are read as they are now.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from ops.charts import Point
from supportbot import metrics
from supportbot.errors import ApiError


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    resolution: str  # "m" or "h": the buckets read
    buckets: int  # how many of them, ending with the current one
    group: int  # buckets per point on the charts
    axis_format: str  # strftime of a point's label

    @property
    def seconds(self) -> int:
        return self.buckets * (60 if self.resolution == "m" else 3600)


RANGES: dict[str, Range] = {
    r.key: r
    for r in (
        Range("1h", "Last hour", "m", 60, 1, "%H:%M"),
        Range("24h", "Last 24 hours", "h", 24, 1, "%H:00"),
        Range("7d", "Last 7 days", "h", 168, 1, "%a %H:00"),
        Range("30d", "Last 30 days", "h", 720, 24, "%b %d"),
    )
}
DEFAULT_RANGE = "24h"

# The sections of GET /api/metrics (?metrics=a,b picks some).
SECTIONS = (
    "endpoints",
    "turns",
    "models",
    "tools",
    "guards",
    "sessions",
    "handoffs",
    "satisfaction",
    "usage",
    "counters",
    "breakers",
)


def parse_range(value: str | None) -> Range:
    """The range named ``value`` (default 24 h); an unknown name is a clear 400."""
    key = (value or DEFAULT_RANGE).strip()
    found = RANGES.get(key)
    if found is None:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"range must be one of {', '.join(RANGES)}.",
            details={"field": "range", "allowed": list(RANGES)},
        )
    return found


def parse_sections(value: str | None) -> list[str]:
    """The sections asked for (all when none); an unknown name is a clear 400."""
    if value is None or not value.strip():
        return list(SECTIONS)
    asked = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [part for part in asked if part not in SECTIONS]
    if unknown:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"Unknown metric section {unknown[0][:40]!r}; known: {', '.join(SECTIONS)}.",
            details={"field": "metrics", "allowed": list(SECTIONS)},
        )
    return list(dict.fromkeys(asked))


@dataclass
class Window:
    """The buckets of one range, oldest first (missing buckets are empty)."""

    range: Range
    starts: list[int]
    buckets: list[dict[str, float]]

    @functools.cached_property
    def fields(self) -> metrics.Indexed:
        """Every bucket of the range added together."""
        return metrics.Indexed(metrics.sum_fields(self.buckets))

    @functools.cached_property
    def _points(self) -> list[tuple[datetime, metrics.Indexed]]:
        step = 60 if self.range.resolution == "m" else 3600
        out: list[tuple[datetime, metrics.Indexed]] = []
        for index in range(0, len(self.starts), self.range.group):
            chunk = self.buckets[index : index + self.range.group]
            at = datetime.fromtimestamp(self.starts[index] * step, tz=UTC)
            fields = chunk[0] if len(chunk) == 1 else metrics.sum_fields(chunk)
            out.append((at, metrics.Indexed(fields)))
        return out

    def points(self) -> list[tuple[datetime, metrics.Indexed]]:
        """Buckets grouped as the charts show them, each with its start time (made once)."""
        return self._points


def read_window(range_: Range, *, now: float | None = None) -> Window:
    """The range's buckets from the shared store (raises when the store cannot be read)."""
    now = time.time() if now is None else now
    step = 60 if range_.resolution == "m" else 3600
    current = int(now // step)
    # A 30-day range shows whole days: it starts at a midnight (UTC), 30 days back.
    if range_.group > 1:
        current_day_end = (current // range_.group + 1) * range_.group - 1
        starts = list(range(current_day_end - range_.buckets + 1, current_day_end + 1))
    else:
        starts = list(range(current - range_.buckets + 1, current + 1))
    found = metrics.read_buckets(range_.resolution, starts)
    return Window(range_, starts, [found.get(s, {}) for s in starts])


# --- figures from a set of fields ------------------------------------------------------------


def _rate(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def turn_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    """Turns, their latency and outcome, and what share got a source or needed a fallback."""
    turn = metrics.merged_timing(fields, "turn")
    summary = metrics.timing_summary(turn)
    answered = summary["count"] - summary["errors"]
    sourced = metrics.counter_total(fields, "answers", sourced="yes")
    unsourced = metrics.counter_total(fields, "answers", sourced="no")
    fallbacks = metrics.counter_total(fields, "answers", fallback="yes")
    return {
        **summary,
        "firstToken": metrics.timing_summary(metrics.merged_timing(fields, "ttft")),
        "byTransport": {
            label: metrics.timing_summary(stats)
            for label, stats in sorted(metrics.group(fields, "turn").items())
        },
        "errorRatePercent": _rate(summary["errors"], summary["count"]),
        "errorsByCode": metrics.counters(fields).get("turn_errors", {}),
        "answered": answered,
        "withoutSource": unsourced,
        "withoutSourcePercent": _rate(unsourced, sourced + unsourced),
        "fallbacks": fallbacks,
        "fallbackRatePercent": _rate(fallbacks, answered),
        "abandoned": metrics.counter_total(fields, "turns_abandoned"),
    }


def model_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    """Per model link: calls, errors, latency, tokens, cost and fallback answers; and totals."""
    models: dict[str, Any] = {}
    for label, stats in sorted(metrics.group(fields, "model").items()):
        summary = metrics.timing_summary(stats)
        summary.update(
            promptTokens=int(stats.get("pt", 0)),
            completionTokens=int(stats.get("ct", 0)),
            costUsd=round(stats.get("usd", 0.0), 6),
            fallbacks=int(stats.get("fb", 0)),
            priced="usd" in stats or not (stats.get("pt") or stats.get("ct")),
        )
        models[label] = summary
    prompt = int(fields.get("tokens|prompt|n", 0))
    completion = int(fields.get("tokens|completion|n", 0))
    return {
        "links": models,
        "promptTokens": prompt,
        "completionTokens": completion,
        "totalTokens": prompt + completion,
        "costUsd": round(fields.get("tokens|cost|usd", 0.0), 6),
        "unpricedTokens": int(fields.get("tokens|unpriced|n", 0)),
    }


def tool_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    """Per tool: calls, failures, success rate, latency and outcomes."""
    outcomes = metrics.counters(fields).get("tool_outcomes", {})
    tools: dict[str, Any] = {}
    for label, stats in sorted(metrics.group(fields, "tool").items()):
        summary = metrics.timing_summary(stats)
        summary["successPercent"] = _rate(summary["count"] - summary["errors"], summary["count"])
        summary["outcomes"] = {
            metrics.parse_labels(text).get("outcome", "?"): count
            for text, count in outcomes.items()
            if metrics.parse_labels(text).get("tool") == label
        }
        tools[label] = summary
    return tools


GUARD_OUTCOMES = ("rate_limited", "blocked", "flagged", "redacted")


def guard_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    """Refusals by the rate limits, messages blocked and flagged, redactions by kind of PII."""
    by_outcome: dict[str, dict[str, int]] = {outcome: {} for outcome in GUARD_OUTCOMES}
    for text, count in metrics.counters(fields).get("guard", {}).items():
        labels = metrics.parse_labels(text)
        outcome = labels.get("outcome", "other")
        by_outcome.setdefault(outcome, {})[labels.get("detail", "")] = count
    return {
        outcome: {"total": sum(details.values()), "byKind": dict(sorted(details.items()))}
        for outcome, details in by_outcome.items()
    }


def session_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    return {
        "created": metrics.counter_total(fields, "sessions", event="created"),
        "ended": metrics.counter_total(fields, "sessions", event="ended"),
        "expired": metrics.counter_total(fields, "sessions", event="expired"),
        "activeAverage": _round(metrics.gauge_mean(fields, "sessions_active")),
    }


def handoff_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    wait = metrics.merged_timing(fields, "handoff_wait")
    return {
        "requested": metrics.counter_total(fields, "handoffs_requested"),
        "taken": metrics.counter_total(fields, "handoffs_taken"),
        "resolved": metrics.counter_total(fields, "handoffs_resolved"),
        "wait": metrics.timing_summary(wait),
    }


def satisfaction_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    ratings = metrics.counters(fields).get("ratings", {})
    count = sum(ratings.values())
    total = sum(
        int(metrics.parse_labels(text).get("score", "0")) * n for text, n in ratings.items()
    )
    up = metrics.counter_total(fields, "answer_votes", vote="up")
    down = metrics.counter_total(fields, "answer_votes", vote="down")
    return {
        "ratings": count,
        "averageRating": round(total / count, 2) if count else None,
        "thumbsUp": up,
        "thumbsDown": down,
        "thumbsUpPercent": _rate(up, up + down),
    }


def endpoint_figures(fields: Mapping[str, float]) -> dict[str, Any]:
    return {
        label: metrics.timing_summary(stats)
        for label, stats in sorted(metrics.group(fields, "http").items())
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


_FIGURES: dict[str, Callable[[Mapping[str, float]], Any]] = {
    "endpoints": endpoint_figures,
    "turns": turn_figures,
    "models": model_figures,
    "tools": tool_figures,
    "guards": guard_figures,
    "sessions": session_figures,
    "handoffs": handoff_figures,
    "satisfaction": satisfaction_figures,
    "counters": metrics.counters,
}


def figures(window: Window, sections: list[str], *, usage_limit: int = 20) -> dict[str, Any]:
    """The JSON of ``GET /api/metrics`` for one window."""
    fields = window.fields
    step = 60 if window.range.resolution == "m" else 3600
    body: dict[str, Any] = {
        "range": window.range.key,
        "from": window.starts[0] * step * 1000,
        "to": (window.starts[-1] + 1) * step * 1000,
        "backend": metrics.backend_name(),
    }
    for section in sections:
        if section in _FIGURES:
            body[section] = _FIGURES[section](fields)
        elif section == "usage":
            body["usage"] = top_users(window.range, limit=usage_limit)
        elif section == "breakers":
            body["breakers"] = breaker_table()
    return body


def top_users(range_: Range, *, limit: int = 10) -> list[dict[str, Any]]:
    """Who spent the most in the range's days (usage rows are per day: a 1 h range reads today)."""
    since = (timezone.now() - timedelta(seconds=range_.seconds)).astimezone(UTC).date()
    return [
        {
            "userId": row["user_id"],
            "apiKey": row["api_key"] or None,
            "turns": row["turns"],
            "promptTokens": row["prompt_tokens"],
            "completionTokens": row["completion_tokens"],
            "costUsd": round(row["cost_usd"] or 0.0, 6),
        }
        for row in metrics.usage_rows(since=since, limit=limit)
    ]


_SEVERITY = {"open": 2, "half_open": 1, "closed": 0}


def breaker_table() -> list[dict[str, Any]]:
    """One row per model link or tool: its worst state over the processes that report it."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for state in metrics.breaker_states():
        key = (str(state.get("kind", "llm")), str(state.get("name", "?")))
        row = merged.setdefault(
            key,
            {
                "kind": key[0],
                "name": key[1],
                "model": state.get("model", ""),
                "state": "closed",
                "processes": 0,
                "openIn": 0,
                "consecutiveFailures": 0,
                "retryAt": None,
            },
        )
        row["processes"] += 1
        current = str(state.get("state", "closed"))
        if current != "closed":
            row["openIn"] += 1
        if _SEVERITY.get(current, 0) > _SEVERITY.get(row["state"], 0):
            row["state"] = current
            row["retryAt"] = state.get("retryAt")
        row["consecutiveFailures"] = max(
            row["consecutiveFailures"], int(state.get("consecutiveFailures") or 0)
        )
    return sorted(merged.values(), key=lambda r: (r["kind"], r["name"]))


# --- the dashboard's charts: a series per point ------------------------------------------------


def chart_points(
    window: Window, value: Callable[[Mapping[str, float]], dict[str, float | None]]
) -> list[Point]:
    """``value(fields)`` of each point of the window, labelled with its local time."""
    return [
        Point(timezone.localtime(at).strftime(window.range.axis_format), value(fields))
        for at, fields in window.points()
    ]


def traffic(fields: Mapping[str, float]) -> dict[str, float | None]:
    turns = metrics.timing_summary(metrics.merged_timing(fields, "turn"))
    return {"ok": turns["count"] - turns["errors"], "failed": turns["errors"]}


def latency(fields: Mapping[str, float]) -> dict[str, float | None]:
    turns = metrics.timing_summary(metrics.merged_timing(fields, "turn"))
    first = metrics.timing_summary(metrics.merged_timing(fields, "ttft"))
    if not turns["count"]:
        return {"p50": None, "p95": None, "p99": None, "ttft95": None}
    return {
        "p50": turns["p50"],
        "p95": turns["p95"],
        "p99": turns["p99"],
        "ttft95": first["p95"] if first["count"] else None,
    }


def rates(fields: Mapping[str, float]) -> dict[str, float | None]:
    figures_ = turn_figures(fields)
    return {
        "errors": figures_["errorRatePercent"],
        "fallback": figures_["fallbackRatePercent"],
        "unsourced": figures_["withoutSourcePercent"],
    }


def tokens(fields: Mapping[str, float]) -> dict[str, float | None]:
    return {
        "prompt": fields.get("tokens|prompt|n", 0.0),
        "completion": fields.get("tokens|completion|n", 0.0),
    }


def cost(fields: Mapping[str, float]) -> dict[str, float | None]:
    turns = metrics.timing_summary(metrics.merged_timing(fields, "turn"))
    spent = fields.get("tokens|cost|usd", 0.0)
    answered = turns["count"] - turns["errors"]
    return {"cost": spent, "perAnswer": spent / answered if answered else None}


def guards(fields: Mapping[str, float]) -> dict[str, float | None]:
    found = guard_figures(fields)
    return {outcome: float(found[outcome]["total"]) for outcome in GUARD_OUTCOMES}


def satisfaction(fields: Mapping[str, float]) -> dict[str, float | None]:
    found = satisfaction_figures(fields)
    return {"up": float(found["thumbsUp"]), "down": float(found["thumbsDown"])}


def daily_points(
    window: Window, value: Callable[[Mapping[str, float]], dict[str, float | None]]
) -> list[Point]:
    """Like ``chart_points``, one point per local day (tokens and cost read per day)."""
    days: dict[str, list[dict[str, float]]] = {}
    for at, fields in window.points():
        days.setdefault(timezone.localtime(at).strftime("%b %d"), []).append(fields)
    return [
        Point(day, value(metrics.Indexed(metrics.sum_fields(chunk)))) for day, chunk in days.items()
    ]
