"""``GET /metrics``: the shared metrics in Prometheus's text format, through ``prometheus_client``.

A custom collector reads the totals that every process adds to (``supportbot.metrics``), so any
process asked reports the service's totals, and a scrape of two processes gives the same
counters. Histograms keep the latency buckets of the store (``LATENCY_BUCKETS_MS``, in seconds
here). A few gauges are read as they are now: active sessions, hand-offs waiting and open, each
breaker's state, the alerts firing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from chat.models import Handoff
from ops import dashboard
from ops.health import active_session_count
from ops.models import Alert
from supportbot import metrics

PREFIX = "supportbot"
_NAME = re.compile(r"[^a-zA-Z0-9_]")
_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}

# Timed kinds of the store: (metric name, help, label names, how a field label splits into them).
_TIMED: dict[str, tuple[str, str, list[str]]] = {
    "http": (
        "http_request_duration_seconds",
        "HTTP requests by route pattern",
        ["method", "route"],
    ),
    "turn": ("turn_duration_seconds", "Turns of conversation, end to end", ["transport"]),
    "ttft": ("turn_first_token_seconds", "Time to the first text of an answer", ["transport"]),
    "model": ("model_call_duration_seconds", "Model calls", ["provider", "model"]),
    "tool": ("tool_call_duration_seconds", "Tool executions", ["tool"]),
    "handoff_wait": ("handoff_wait_seconds", "Waits for a person, until taken", ["reason"]),
}


def _split(kind: str, label: str) -> list[str]:
    if kind == "http":
        method, _, route = label.partition(" ")
        return [method, route]
    if kind == "model":
        provider, _, model = label.partition(":")
        return [provider, model]
    return [label]


def metric_name(name: str) -> str:
    """A valid Prometheus name from one of ours (``ws.close`` → ``ws_close``)."""
    cleaned = _NAME.sub("_", name).strip("_") or "unnamed"
    return cleaned if not cleaned[0].isdigit() else f"_{cleaned}"


class SharedMetricsCollector(Collector):
    """Every family from one read of the store's totals, and a few gauges read now."""

    def collect(self) -> Iterator[Metric]:
        totals = metrics.read_totals()
        yield from _histograms(totals)
        yield from _model_counters(totals)
        yield from _counters(totals)
        yield from _gauges()


def _histograms(totals: Mapping[str, float]) -> Iterator[Metric]:
    for kind, (name, documentation, labels) in _TIMED.items():
        histogram = HistogramMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)
        errors = CounterMetricFamily(
            f"{PREFIX}_{name.removesuffix('_duration_seconds').removesuffix('_seconds')}_errors",
            f"{documentation} that failed",
            labels=labels,
        )
        for label, stats in sorted(metrics.group(totals, kind).items()):
            values = _split(kind, label)
            counts = metrics.histogram(stats)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(metrics.LATENCY_BUCKETS_MS, counts, strict=False):
                cumulative += count
                buckets.append((_seconds(bound), cumulative))
            buckets.append(("+Inf", float(stats.get("n", 0.0))))
            histogram.add_metric(values, buckets, sum_value=stats.get("ms", 0.0) / 1000)
            errors.add_metric(values, stats.get("err", 0.0))
        yield histogram
        yield errors


def _seconds(bound_ms: float) -> str:
    return repr(bound_ms / 1000)


def _model_counters(totals: Mapping[str, float]) -> Iterator[Metric]:
    labels = ["provider", "model"]
    tokens = CounterMetricFamily(
        f"{PREFIX}_model_tokens", "Tokens by model link and kind", labels=[*labels, "type"]
    )
    cost = CounterMetricFamily(
        f"{PREFIX}_model_cost_usd", "Cost of the tokens (MODEL_PRICES), USD", labels=labels
    )
    fallbacks = CounterMetricFamily(
        f"{PREFIX}_model_fallback_answers", "Answers given by a fallback link", labels=labels
    )
    for label, stats in sorted(metrics.group(totals, "model").items()):
        values = _split("model", label)
        tokens.add_metric([*values, "prompt"], stats.get("pt", 0.0))
        tokens.add_metric([*values, "completion"], stats.get("ct", 0.0))
        cost.add_metric(values, stats.get("usd", 0.0))
        fallbacks.add_metric(values, stats.get("fb", 0.0))
    yield tokens
    yield cost
    yield fallbacks


def _counters(totals: Mapping[str, float]) -> Iterator[Metric]:
    for name, series in sorted(metrics.counters(totals).items()):
        parsed = [(metrics.parse_labels(text), value) for text, value in series.items()]
        keys = sorted({metric_name(k) for labels, _ in parsed for k in labels})
        family = CounterMetricFamily(
            f"{PREFIX}_{metric_name(name)}", f"Count of {name} events", labels=keys
        )
        for labels, value in parsed:
            clean = {metric_name(k): v for k, v in labels.items()}
            family.add_metric([clean.get(k, "") for k in keys], float(value))
        yield family


def _gauges() -> Iterator[Metric]:
    yield GaugeMetricFamily(
        f"{PREFIX}_sessions_active", "Sessions active now", value=active_session_count()
    )
    waiting = Handoff.objects.filter(status=Handoff.Status.WAITING).count()
    open_ = Handoff.objects.exclude(status=Handoff.Status.RESOLVED).count()
    yield GaugeMetricFamily(
        f"{PREFIX}_handoffs_waiting", "Customers waiting for a person now", value=waiting
    )
    yield GaugeMetricFamily(f"{PREFIX}_handoffs_open", "Hand-offs not resolved", value=open_)
    breakers = GaugeMetricFamily(
        f"{PREFIX}_breaker_state",
        "Circuit breakers, worst over the processes: 0 closed, 1 half-open, 2 open",
        labels=["kind", "name"],
    )
    for row in dashboard.breaker_table():
        breakers.add_metric([row["kind"], row["name"]], _STATE_VALUE.get(row["state"], 0))
    yield breakers
    alerts = GaugeMetricFamily(
        f"{PREFIX}_alerts_firing", "Alert rules firing now (ops.alerts)", labels=["rule"]
    )
    for rule in Alert.objects.filter(status=Alert.Status.FIRING).values_list("rule", flat=True):
        alerts.add_metric([rule], 1)
    yield alerts


def exposition() -> bytes:
    """The text of ``GET /metrics``."""
    from prometheus_client import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SharedMetricsCollector())
    return generate_latest(registry)
