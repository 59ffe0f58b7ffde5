"""Alert history in the admin (``/admin/ops/alert/``): every episode of every rule, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from ops.admin.sessions import ReadOnlyAdmin
from ops.models import Alert


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "rule",
        "status",
        "severity",
        "started_at",
        "resolved_at",
        "notifications",
        "summary",
    )
    list_filter = ("status", "rule", "severity")
    search_fields = ("rule", "summary")
    date_hierarchy = "started_at"
    readonly_fields = (
        "rule",
        "status",
        "severity",
        "summary",
        "value",
        "threshold",
        "started_at",
        "last_seen_at",
        "last_notified_at",
        "resolved_at",
        "notifications",
        "delivered",
    )
    exclude = ("deliveries",)

    @admin.display(description="Last deliveries")
    def delivered(self, obj: Alert) -> SafeString:
        rows: list[tuple[Any, ...]] = [
            (
                channel,
                "ok" if result.get("ok") else f"failed ({result.get('error', '?')})",
                result.get("at", ""),
            )
            for channel, result in sorted((obj.deliveries or {}).items())
        ]
        return format_html_join("", "<div>{}: {} at {}</div>", rows)
