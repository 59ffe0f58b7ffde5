"""The knowledge-gap page inside the admin (ops/urls.py mounts it behind ``admin_view``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from ops import gaps

DAYS = {"24h": 1, "7d": 7, "30d": 30}
SHOWN_GROUPS = 100
SHOWN_QUESTIONS = 5


@require_GET
def knowledge_gaps(request: HttpRequest) -> HttpResponse:
    """Questions that got no source, a thumbs-down or a hand-off, grouped, newest range first."""
    request.current_app = admin.site.name
    range_key = request.GET.get("range", "7d")
    reason = request.GET.get("reason", "")
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Knowledge gaps",
        "range_key": range_key,
        "reason": reason,
        "ranges": [
            (key, f"Last {key.replace('h', ' hours').replace('d', ' days')}") for key in DAYS
        ],
        "reasons": list(gaps.REASONS.items()),
    }
    problems = []
    if range_key not in DAYS:
        problems.append(f"range must be one of {', '.join(DAYS)}")
    if reason and reason not in gaps.REASONS:
        problems.append(f"reason must be one of {', '.join(gaps.REASONS)}")
    if problems:
        context["error"] = "; ".join(problems).capitalize() + "."
        return TemplateResponse(request, "ops/knowledge_gaps.html", context, status=400)
    until = timezone.now()
    since = until - timedelta(days=DAYS[range_key])
    questions = gaps.collect(since=since, until=until, reasons={reason} if reason else None)
    groups = gaps.group(questions)
    add_article = reverse("admin:tools_article_add")
    context["groups"] = [
        {
            "label": gap.label,
            "count": gap.count,
            "sessions": gap.sessions,
            "reasons": gap.reasons,
            "last_at": gap.last_at,
            "example": gap.example,
            "questions": [
                {
                    "text": q.text,
                    "at": q.at,
                    "reasons": [gaps.REASONS[r] for r in sorted(q.reasons)],
                    "url": reverse("ops:conversation", args=[q.session_id]),
                }
                for q in gap.questions[:SHOWN_QUESTIONS]
            ],
            "more": max(0, gap.count - SHOWN_QUESTIONS),
            "write_url": f"{add_article}?{urlencode(_article_draft(gap))}",
        }
        for gap in groups[:SHOWN_GROUPS]
    ]
    context["total_questions"] = len(questions)
    context["total_groups"] = len(groups)
    return TemplateResponse(request, "ops/knowledge_gaps.html", context)


def _article_draft(gap: gaps.Gap) -> dict[str, str]:
    """The new-article form's initial values: the question as the title, the asks as notes."""
    asked = "\n".join(f"- {q.text}" for q in gap.questions[:10])
    return {
        "title": gap.example[:300],
        "content": f"<!-- Customers asked ({gap.count} times):\n{asked}\n-->\n\n",
    }
