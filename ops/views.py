"""Plain Django views of the ops app (the REST endpoints live in ``ops/api.py``)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import structlog
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
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
from ops import rate_limits as rate_limit_page
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
        "dashboard_url": reverse("ops:dashboard"),
        "gaps_url": reverse("ops:knowledge_gaps"),
        "inbox_url": reverse("ops:inbox") if request.user.has_perm("chat.view_handoff") else "",
        "inbox_waiting": Handoff.objects.filter(status=Handoff.Status.WAITING).count(),
        "inbox_open": Handoff.objects.exclude(status=Handoff.Status.RESOLVED).count(),
    }
    return admin.site.index(request, extra_context={"ops_overview": overview})


@require_http_methods(["GET", "POST"])
def rate_limits(request: HttpRequest) -> HttpResponse:
    """The configured limits, every busy key with its client, and recent refusals; POST resets
    one key (a client's live sessions end only once staff confirm how many)."""
    request.current_app = admin.site.name
    if request.method == "POST":
        confirm = _reset_key(request)
        if confirm is None:
            return redirect("ops:rate_limits")
        context = {**admin.site.each_context(request), "title": "Rate limits", "confirm": confirm}
        return TemplateResponse(request, "ops/rate_limits.html", context)
    specs = ratelimit.configured_limits()
    now = time.time()
    events = recent_events("rate_limited", limit=RECENT_REFUSALS)
    page = rate_limit_page.busy_keys(refusals=events, user=request.user)
    context = {
        **admin.site.each_context(request),
        "title": "Rate limits",
        "enabled": ratelimit.enabled(),
        "storage": "Redis" if ratelimit.backend().url else "memory",
        "storage_down": page.storage_down,
        "limits": list(specs.values()),
        "resettable": [spec for spec in specs.values() if spec.name != rate_limit_page.ACTIVE],
        "can_reset": request.user.has_perm(rate_limit_page.RESET_PERMISSION),
        "not_resettable": rate_limit_page.NOT_RESETTABLE,
        "busiest": [
            {
                "key": key,
                "usage": key.usage,
                "reset_at": _local(key.usage.reset),
                "reset_in": max(0, math.ceil(key.usage.reset - now)),
                "percent": round(key.usage.share * 100),
            }
            for key in page.keys
        ],
        "refusals": [
            {
                **event,
                "at": _local(float(event.get("at") or 0)),
                "busy": page.by_key.get((str(event.get("limit")), str(event.get("key")))),
            }
            for event in events
        ],
    }
    return TemplateResponse(request, "ops/rate_limits.html", context)


RECENT_REFUSALS = 50


def _local(epoch: float) -> datetime:
    return timezone.localtime(datetime.fromtimestamp(epoch, tz=UTC))


def _reset_key(request: HttpRequest) -> dict[str, Any] | None:
    """Reset the posted key, with its outcome as a message; or what to confirm first."""
    if not request.user.has_perm(rate_limit_page.RESET_PERMISSION):
        raise PermissionDenied
    name = request.POST.get("name", "")
    identifier = request.POST.get("identifier", "").strip()
    outcome = rate_limit_page.reset_limit(
        name=name,
        identifier=identifier,
        confirmed=request.POST.get("confirm_sessions", ""),
        by=request.user.get_username(),
    )
    if outcome.level != "confirm":
        messages.add_message(request, MESSAGE_LEVELS[outcome.level], outcome.message)
        return None
    return {
        "name": name,
        "identifier": identifier,
        "again": outcome.message,
        "count": outcome.count,
        "sessions": outcome.sessions,
        "more": outcome.count - len(outcome.sessions),
    }


MESSAGE_LEVELS = {
    "success": messages.SUCCESS,
    "warning": messages.WARNING,
    "error": messages.ERROR,
}
