"""``GET /metrics``: Prometheus's text format, for a scraper that sends METRICS_TOKEN."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from ops.metrics_access import token_matches
from ops.prometheus import exposition
from supportbot.errors import ApiError


@csrf_exempt  # a POST is told 405, not 403: this view changes nothing
@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Off (404) while METRICS_TOKEN is unset; 401 without the token; else the exposition."""
    if not settings.METRICS_TOKEN:
        raise Http404("Prometheus metrics are off: set METRICS_TOKEN.")
    if not token_matches(request):
        raise ApiError(
            "ACCESS_DENIED",
            "Send the metrics token as 'Authorization: Bearer <token>'.",
            status=401,
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
