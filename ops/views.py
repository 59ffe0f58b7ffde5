"""Plain Django views of the ops app (the REST endpoints live in ``ops/api.py``)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import structlog
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from chat.models import Handoff, ReviewItem
from ops.health import health_report
from ops.models import REVIEW_QUEUES, open_counts
from supportbot import ratelimit
from supportbot.security import recent_events

log = structlog.get_logger("ops.views")


# Exempt from CSRF so that a POST is told 405 (wrong method), not 403 (missing token): the view
# changes nothing. The error middleware turns the plain 405 into API.md's JSON shape.
@csrf_exempt
@never_cache
@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """GET /health: every component's health; 503 when the service cannot work (database down)."""
    report = await health_report()
    return JsonResponse(report, status=503 if report["status"] == "unhealthy" else 200)


# --- pages inside the admin (ops/urls.py mounts them under /admin/, each behind admin_view) ------


def admin_index(request: HttpRequest) -> HttpResponse:
    """The admin index, with the open items of each review queue and a link to the rate limits."""
    queues: list[dict[str, Any]] = []
    shown = []
    counts = open_counts()
    for model in REVIEW_QUEUES:
        model_admin = admin.site.get_model_admin(model)
        if not model_admin.has_view_permission(request):
            continue
        shown.append(model)
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        queues.append(
            {
                "name": capfirst(model._meta.verbose_name_plural),
                "url": f"{url}?{urlencode({'status__exact': ReviewItem.Status.OPEN})}",
                "open": counts[model.queue_kind],
            }
        )
    overview = {
        "queues": queues,
        "total_open": sum(counts[model.queue_kind] for model in shown),
        "rate_limits_url": reverse("ops:rate_limits"),
        "inbox_url": reverse("ops:inbox") if request.user.has_perm("chat.view_handoff") else "",
        "inbox_waiting": Handoff.objects.filter(status=Handoff.Status.WAITING).count(),
        "inbox_open": Handoff.objects.exclude(status=Handoff.Status.RESOLVED).count(),
    }
    return admin.site.index(request, extra_context={"ops_overview": overview})


@require_http_methods(["GET", "POST"])
def rate_limits(request: HttpRequest) -> HttpResponse:
    """The configured limits, the busiest keys now and recent refusals; POST resets one key."""
    if request.method == "POST":
        _reset_key(request)
        return redirect("ops:rate_limits")
    request.current_app = admin.site.name
    specs = ratelimit.configured_limits()
    now = time.time()
    storage_down = False
    try:
        busiest = ratelimit.busiest()
    except ratelimit.StorageDown:
        storage_down, busiest = True, []
    context = {
        **admin.site.each_context(request),
        "title": "Rate limits",
        "enabled": ratelimit.enabled(),
        "storage": "Redis" if ratelimit.backend().url else "memory",
        "storage_down": storage_down,
        "limits": list(specs.values()),
        "resettable": [spec for spec in specs.values() if spec.counter != "count"],
        "busiest": [
            {
                "usage": usage,
                "reset_at": _local(usage.reset),
                "reset_in": max(0, math.ceil(usage.reset - now)),
                "percent": round(usage.share * 100),
            }
            for usage in busiest
        ],
        "refusals": [
            {**event, "at": _local(float(event.get("at") or 0))}
            for event in recent_events("rate_limited", limit=RECENT_REFUSALS)
        ],
    }
    return TemplateResponse(request, "ops/rate_limits.html", context)


RECENT_REFUSALS = 50


def _local(epoch: float) -> datetime:
    return timezone.localtime(datetime.fromtimestamp(epoch, tz=UTC))


def _reset_key(request: HttpRequest) -> None:
    name = request.POST.get("name", "")
    identifier = request.POST.get("identifier", "").strip()
    spec = ratelimit.configured_limits().get(name)
    if spec is None or spec.counter == "count" or not identifier:
        # Counted limits (sessions at once) are counts of live sessions, not stored counters.
        messages.error(request, "Choose a rate limit with a counter and give its key.")
        return
    try:
        ratelimit.reset_key(name, identifier)
    except ratelimit.StorageDown:
        messages.error(request, "The rate-limit storage cannot be reached; nothing was reset.")
        return
    log.info("ratelimit_key_reset", limit=name, key=identifier, by=request.user.get_username())
    messages.success(request, f"Reset {name} for {identifier}.")
