"""Ops pages inside the admin, mounted at ``admin/`` before ``admin.site.urls``.

Each view is wrapped in ``admin.site.admin_view``: staff only, never cached, CSRF-protected.
The index here replaces the stock one only to add the review queues' open counts.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from ops import dashboard_views, gaps_views, inbox_views, views
from ops.transcript_views import transcript_rows

app_name = "ops"

urlpatterns = [
    path("", admin.site.admin_view(views.admin_index), name="admin_index"),
    path("ops/rate-limits/", admin.site.admin_view(views.rate_limits), name="rate_limits"),
    path("ops/dashboard/", admin.site.admin_view(dashboard_views.dashboard_page), name="dashboard"),
    path(
        "ops/knowledge-gaps/",
        admin.site.admin_view(gaps_views.knowledge_gaps),
        name="knowledge_gaps",
    ),
    path("ops/inbox/", admin.site.admin_view(inbox_views.inbox), name="inbox"),
    path(
        "ops/conversations/<str:session_id>/",
        admin.site.admin_view(inbox_views.conversation),
        name="conversation",
    ),
    path(
        "ops/sessions/<str:session_id>/rows",
        admin.site.admin_view(transcript_rows),
        name="transcript_rows",
    ),
]
