"""Receipts of subject requests (``/admin/ops/subjectrequest/``): read-only, the history of every
export and erasure. A receipt holds no personal data (``ops.subjects``), so the list may be
shown to whoever may make such requests. New requests start on the subject-request page
(``ops.subject_views``), linked from the list's tools."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ops.admin.sessions import ReadOnlyAdmin
from ops.models import SubjectRequest
from ops.subjects import KIND_LABELS

# Who may read receipts besides those with the model's own view permission.
REQUEST_PERMISSIONS = ("ops.export_subject", "ops.erase_subject")
SUMMARY_KINDS = (
    ("sessions", "session"),
    ("messages", "message"),
    ("archives", "archive"),
    ("tickets", "ticket"),
)


@admin.register(SubjectRequest)
class SubjectRequestAdmin(ReadOnlyAdmin):
    # What was done and how much first: the admin's list scrolls sideways inside its box.
    list_display = (
        "receipt",
        "when",
        "kind",
        "completed",
        "summary",
        "matched_by",
        "requested_by",
        "reference",
    )
    list_display_links = None  # the receipt column links to the receipt page instead
    list_filter = ("kind", "matched_by", "completed", "created_at")
    search_fields = ("reference", "requested_by")
    date_hierarchy = "created_at"
    readonly_fields = (
        "kind",
        "matched_by",
        "requested_by",
        "reference",
        "completed",
        "note",
        "created_at",
        "counted",
    )
    exclude = ("counts",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return super().has_view_permission(request, obj) or any(
            user.has_perm(p) for p in REQUEST_PERMISSIONS
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "subjects_url": reverse("ops:subjects")}
        return super().changelist_view(request, extra_context=context)

    @admin.display(description="Receipt", ordering="pk")
    def receipt(self, obj: SubjectRequest) -> SafeString:
        url = reverse("ops:subject_receipt", args=[obj.pk])
        return format_html('<a href="{}">#{}</a>', url, obj.pk)

    @admin.display(description="When", ordering="created_at")
    def when(self, obj: SubjectRequest) -> str:
        return formats.date_format(timezone.localtime(obj.created_at), "Y-m-d H:i")

    @admin.display(description="Covered")
    def summary(self, obj: SubjectRequest) -> str:
        """The main counts in a few words (the receipt lists every kind)."""
        counts = obj.counts if isinstance(obj.counts, dict) else {}
        shown = [
            f"{counts[kind]} {name if counts[kind] == 1 else name + 's'}"
            for kind, name in SUMMARY_KINDS
            if counts.get(kind)
        ]
        if shown:
            return ", ".join(shown)
        return "nothing held" if not any(counts.values()) else "see the receipt"

    @admin.display(description="Counts per kind")
    def counted(self, obj: SubjectRequest) -> SafeString:
        counts = obj.counts if isinstance(obj.counts, dict) else {}
        rows = [(KIND_LABELS.get(k, k), v) for k, v in counts.items()]
        if not rows:
            return format_html("{}", "—")
        return format_html_join("", "<div>{}: {}</div>", rows)
