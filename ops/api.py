"""REST endpoints of the ops app."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from ops import dashboard
from ops.health import status_report
from ops.metrics_access import require_metrics_reader

router = Router(tags=["ops"])


@router.get("/status", summary="Service status, headline metrics and configured limits")
def status(request: HttpRequest) -> dict[str, Any]:
    """GET /api/status (API.md): no probes, so it is cheap enough to poll."""
    return status_report()


@router.get(
    "/metrics",
    summary="Counters and latency percentiles per endpoint, model and tool (staff or token)",
)
def metrics_json(
    request: HttpRequest, range: str | None = None, metrics: str | None = None
) -> dict[str, Any]:
    """GET /api/metrics (API.md): ``range`` 1h/24h/7d/30d (default 24h); ``metrics`` a comma
    list of sections (default all). Unknown names are a 400; the store's figures, as JSON."""
    require_metrics_reader(request)
    chosen = dashboard.parse_range(range)
    sections = dashboard.parse_sections(metrics)
    return dashboard.figures(dashboard.read_window(chosen), sections)
