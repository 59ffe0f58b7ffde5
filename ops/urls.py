"""Ops pages inside the admin, mounted at ``admin/`` before ``admin.site.urls``.

Each view is wrapped in ``admin.site.admin_view``: staff only, never cached, CSRF-protected.
The index here replaces the stock one only to add the review queues' open counts.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from ops import archive_views, dashboard_views, gaps_views, inbox_views, subject_views, views
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
        "ops/archives/verify-all",
        admin.site.admin_view(archive_views.verify_all),
        name="archive_verify_all",
    ),
    path(
        "ops/archives/<int:archive_id>/download",
        admin.site.admin_view(archive_views.download),
        name="archive_download",
    ),
    path(
        "ops/archives/<int:archive_id>/restore",
        admin.site.admin_view(archive_views.restore),
        name="archive_restore",
    ),
    path(
        "ops/archives/<int:archive_id>/verify",
        admin.site.admin_view(archive_views.verify),
        name="archive_verify",
    ),
    path(
        "ops/sessions/<str:session_id>/release",
        admin.site.admin_view(archive_views.release),
        name="archive_release",
    ),
    path(
        "ops/sessions/<str:session_id>/rows",
        admin.site.admin_view(transcript_rows),
        name="transcript_rows",
    ),
    path("ops/subjects/", admin.site.admin_view(subject_views.subjects), name="subjects"),
    path(
        "ops/subjects/export",
        admin.site.admin_view(subject_views.export),
        name="subject_export",
    ),
    path("ops/subjects/erase", admin.site.admin_view(subject_views.erase), name="subject_erase"),
    path(
        "ops/subjects/receipts/<int:pk>/",
        admin.site.admin_view(subject_views.receipt),
        name="subject_receipt",
    ),
]
