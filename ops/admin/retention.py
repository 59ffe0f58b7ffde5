"""Retention in the admin (``/admin/ops/retentionrun/``): the policy with what is due now, every
run read-only (what went per kind, errors), and "Apply now".

"Apply now" runs the policy inside the request (not queued), for at most
``ADMIN_BUDGET_SECONDS``, so that staff see at once what went; what is left goes at the next
hourly run. It needs the superuser or ``ops.add_retentionrun`` and a confirmation step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ops.admin.sessions import ReadOnlyAdmin
from ops.models import RetentionRun
from ops.retention import (
    ADMIN_BUDGET_SECONDS,
    KINDS,
    RetentionResult,
    apply_retention,
    policy_rows,
)

APPLY_PERMISSION = "ops.add_retentionrun"


def can_apply(request: HttpRequest) -> bool:
    """Superusers, and staff given "Can add retention run"."""
    return bool(request.user.is_active and request.user.has_perm(APPLY_PERMISSION))


def _ordered(deleted: dict[str, Any]) -> list[tuple[str, Any]]:
    known = [(name, deleted[name]) for name in KINDS if name in deleted]
    return known + sorted((name, n) for name, n in deleted.items() if name not in KINDS)


def summary(result: RetentionResult) -> str:
    """What a run deleted, in one sentence for a message."""
    went = [f"{name} {count}" for name, count in result.deleted.items() if count]
    return ("Deleted: " + ", ".join(went) + ".") if went else "Nothing was due."


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "trigger", "duration", "deleted_summary", "error_summary")
    list_filter = ("trigger",)
    date_hierarchy = "started_at"
    fields = ("trigger", "started_at", "finished_at", "duration", "deleted_table", "error_list")
    readonly_fields = fields

    def get_urls(self) -> list[URLPattern]:
        apply = path(
            "apply/", self.admin_site.admin_view(self.apply_view), name="ops_retentionrun_apply"
        )
        return [apply, *super().get_urls()]

    @admin.display(description="Duration")
    def duration(self, obj: RetentionRun) -> str:
        if obj.finished_at is None:
            return "unfinished"
        took: timedelta = obj.finished_at - obj.started_at
        return f"{took.total_seconds():.1f} s"

    @admin.display(description="Deleted")
    def deleted_summary(self, obj: RetentionRun) -> str:
        went = [f"{name} {count}" for name, count in _ordered(obj.deleted or {}) if count]
        return ", ".join(went) or "nothing"

    @admin.display(description="Errors")
    def error_summary(self, obj: RetentionRun) -> str:
        errors = [entry for entry in obj.errors or [] if "error" in entry]
        notes = len(obj.errors or []) - len(errors)
        said = f"{len(errors)} error{'s' if len(errors) != 1 else ''}" if errors else "none"
        return f"{said}, {notes} unfinished" if notes else said

    @admin.display(description="Deleted per kind")
    def deleted_table(self, obj: RetentionRun) -> SafeString:
        rows = _ordered(obj.deleted or {})
        if not rows:
            return format_html("<p>{}</p>", "No kind was applied.")
        return format_html(
            '<table class="retention-deleted">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    @admin.display(description="Errors and notes")
    def error_list(self, obj: RetentionRun) -> SafeString:
        entries = [
            (
                entry.get("kind", "?"),
                f" ({entry['key']})" if entry.get("key") else "",
                entry.get("error") or entry.get("note") or "",
            )
            for entry in obj.errors or []
        ]
        if not entries:
            return format_html("<p>{}</p>", "None.")
        return format_html_join("", "<div>{}{}: {}</div>", entries)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "retention_policy": policy_rows(),
            "can_apply": can_apply(request),
            "apply_url": reverse("admin:ops_retentionrun_apply"),
            "admin_budget": int(ADMIN_BUDGET_SECONDS),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def apply_view(self, request: HttpRequest) -> HttpResponse:
        """GET or an unconfirmed POST: the confirmation page; POST ``confirm=yes``: apply now
        and show the run."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not self.has_view_permission(request) or not can_apply(request):
            raise PermissionDenied
        confirm = request.POST.get("confirm", "") if request.method == "POST" else ""
        if confirm == "yes":
            return self._apply(request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Apply the retention policy now?",
            "retention_policy": policy_rows(),
            "admin_budget": int(ADMIN_BUDGET_SECONDS),
            "again": bool(confirm),
            "changelist_url": reverse("admin:ops_retentionrun_changelist"),
        }
        return TemplateResponse(request, "admin/ops/retentionrun/apply.html", context)

    def _apply(self, request: HttpRequest) -> HttpResponse:
        result = apply_retention(RetentionRun.Trigger.ADMIN, budget_seconds=ADMIN_BUDGET_SECONDS)
        level = messages.WARNING if result.errors else messages.SUCCESS
        said = summary(result)
        if result.errors:
            said += f" {len(result.errors)} error(s) or unfinished kind(s): see below."
        messages.add_message(request, level, said)
        return redirect("admin:ops_retentionrun_change", result.run_id)
