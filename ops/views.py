"""Plain Django views of the ops app (the REST endpoints live in ``ops/api.py``)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from ops.health import health_report


# Exempt from CSRF so that a POST is told 405 (wrong method), not 403 (missing token): the view
# changes nothing. The error middleware turns the plain 405 into API.md's JSON shape.
@csrf_exempt
@never_cache
@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """GET /health: every component's health; 503 when the service cannot work (database down)."""
    report = await health_report()
    return JsonResponse(report, status=503 if report["status"] == "unhealthy" else 200)
