"""The ops dashboard page inside the admin (ops/urls.py mounts it behind ``admin_view``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from chat.models import Handoff
from ops import dashboard
from ops.charts import NO_VALUE, Series, bar_chart, chart_table, line_chart
from ops.health import active_session_count
from supportbot import metrics
from supportbot.errors import ApiError

log = structlog.get_logger("ops.dashboard")


@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """Traffic, latency, errors, fallbacks, cost, guards, tools, satisfaction and breakers."""
    request.current_app = admin.site.name
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Service dashboard",
        "ranges": [
            {"key": r.key, "label": r.label, "url": f"{reverse('ops:dashboard')}?range={r.key}"}
            for r in dashboard.RANGES.values()
        ],
    }
    try:
        range_ = dashboard.parse_range(request.GET.get("range"))
    except ApiError as error:
        context.update(error=error.message, range=None)
        return TemplateResponse(request, "ops/dashboard.html", context, status=400)
    context["range"] = range_
    try:
        context.update(_figures(range_))
    except Exception as exc:  # a dead store degrades the page to a message, never a 500
        log.exception("dashboard_unavailable", error=type(exc).__name__)
        context["unavailable"] = (
            f"The metrics cannot be read right now: the {metrics.backend_name()} store does not "
            f"answer ({type(exc).__name__}). Recording goes on where it can; try again shortly."
        )
    return TemplateResponse(request, "ops/dashboard.html", context)


@dataclass(frozen=True)
class ChartSpec:
    kind: str  # "line" or "bar"
    title: str  # "{per}" becomes the step of the points (minute, hour, day)
    value: Callable[[Mapping[str, float]], dict[str, float | None]]
    series: tuple[Series, ...]
    unit: str = ""
    per_day: bool = False  # tokens and cost read per day over the 7 and 30 day ranges


CHARTS = (
    ChartSpec(
        "bar",
        "Turns per {per}",
        dashboard.traffic,
        (Series("ok", "answered"), Series("failed", "failed")),
    ),
    ChartSpec(
        "line",
        "Turn latency",
        dashboard.latency,
        (
            Series("p50", "p50"),
            Series("p95", "p95"),
            Series("p99", "p99"),
            Series("ttft95", "first token p95"),
        ),
        unit="ms",
    ),
    ChartSpec(
        "line",
        "Error, fallback and no-source rates",
        dashboard.rates,
        (
            Series("errors", "errors"),
            Series("fallback", "fallback model"),
            Series("unsourced", "no source"),
        ),
        unit="%",
    ),
    ChartSpec(
        "bar",
        "Tokens per {per}",
        dashboard.tokens,
        (Series("prompt", "prompt"), Series("completion", "completion")),
        per_day=True,
    ),
    ChartSpec(
        "line",
        "Cost per {per} and per answer",
        dashboard.cost,
        (Series("cost", "cost"), Series("perAnswer", "per answer")),
        unit="$",
        per_day=True,
    ),
    ChartSpec(
        "bar",
        "Guard outcomes",
        dashboard.guards,
        tuple(Series(o, o.replace("_", " ")) for o in dashboard.GUARD_OUTCOMES),
    ),
    ChartSpec(
        "bar",
        "Thumbs on answers",
        dashboard.satisfaction,
        (Series("up", "thumbs up"), Series("down", "thumbs down")),
    ),
)


def _charts(window: dashboard.Window) -> list[dict[str, Any]]:
    range_ = window.range
    step = "minute" if range_.resolution == "m" else ("day" if range_.group == 24 else "hour")
    daily = range_.key in ("7d", "30d")
    charts = []
    for spec in CHARTS:
        by_day = spec.per_day and daily
        reader = dashboard.daily_points if by_day else dashboard.chart_points
        points = reader(window, spec.value)
        title = spec.title.format(per="day" if by_day else step)
        draw = line_chart if spec.kind == "line" else bar_chart
        charts.append(
            {
                "title": title,
                "svg": draw(title, points, spec.series, unit=spec.unit),
                "table": chart_table(points, spec.series, unit=spec.unit),
            }
        )
    return charts


def _figures(range_: dashboard.Range) -> dict[str, Any]:
    window = dashboard.read_window(range_)
    fields = window.fields
    turns = dashboard.turn_figures(fields)
    models = dashboard.model_figures(fields)
    charts = _charts(window)
    return {
        "tiles": _tiles(turns, models, fields),
        "charts": charts,
        "turns": turns,
        "models": models,
        "tools": dashboard.tool_figures(fields),
        "guards": [
            {"label": outcome.replace("_", " "), **figures}
            for outcome, figures in dashboard.guard_figures(fields).items()
        ],
        "sessions": dashboard.session_figures(fields),
        "handoffs": dashboard.handoff_figures(fields),
        "satisfaction": dashboard.satisfaction_figures(fields),
        "breakers": dashboard.breaker_table(),
        "top_users": dashboard.top_users(range_, limit=10),
        "active_now": active_session_count(),
        "waiting_now": Handoff.objects.filter(status=Handoff.Status.WAITING).count(),
        "backend": metrics.backend_name(),
    }


def _tiles(
    turns: dict[str, Any], models: dict[str, Any], fields: dict[str, float]
) -> list[dict[str, str]]:
    satisfaction = dashboard.satisfaction_figures(fields)

    def percent(value: float | None) -> str:
        return NO_VALUE if value is None else f"{value:g} %"

    cost = models["costUsd"]
    per_answer = cost / turns["answered"] if turns["answered"] else None
    return [
        {
            "label": "Turns",
            "value": f"{turns['count']:,}",
            "note": f"{turns['answered']:,} answered",
        },
        {
            "label": "Error rate",
            "value": percent(turns["errorRatePercent"]),
            "note": f"{turns['errors']:,} failed",
        },
        {
            "label": "p95 latency",
            "value": f"{turns['p95']:,.0f} ms" if turns["count"] else NO_VALUE,
            "note": f"first token p95 {turns['firstToken']['p95']:,.0f} ms"
            if turns["firstToken"]["count"]
            else "no streamed text",
        },
        {
            "label": "Fallback rate",
            "value": percent(turns["fallbackRatePercent"]),
            "note": f"{turns['fallbacks']:,} answers",
        },
        {
            "label": "No source",
            "value": percent(turns["withoutSourcePercent"]),
            "note": f"{turns['withoutSource']:,} answers",
        },
        {
            "label": "Cost",
            "value": f"${cost:,.2f}" if cost >= 0.1 or cost == 0 else f"${cost:.4f}",
            "note": (f"${per_answer:.4f} per answer" if per_answer is not None else "no answers")
            + (
                f"; {models['unpricedTokens']:,} tokens unpriced"
                if models["unpricedTokens"]
                else ""
            ),
        },
        {
            "label": "Satisfaction",
            "value": f"{satisfaction['averageRating']} / 5"
            if satisfaction["averageRating"] is not None
            else NO_VALUE,
            "note": f"{satisfaction['ratings']} ratings; thumbs {satisfaction['thumbsUp']} up, "
            f"{satisfaction['thumbsDown']} down",
        },
    ]
