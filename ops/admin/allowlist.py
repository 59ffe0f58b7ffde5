"""The PII allowlist in the admin (``/admin/chat/piiallowlistentry/...``).

Staff add pattern entries and delete entries; value entries (by fingerprint) come only from
dismissed PII detections (``ops.review.dismiss``). Every change drops this process's cached
allowlist, so redaction here applies it at once (other processes within ``ALLOWLIST_TTL``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chat.guards.pii import KINDS
from chat.guards.review import invalidate_allowlist
from chat.models import PiiAllowlistEntry
from ops.review import validate_pattern


class AllowlistPatternForm(ModelForm):
    """Add a pattern entry; value entries come only from dismissed detections."""

    kind = forms.ChoiceField(
        choices=[("", "any kind"), *((kind, kind) for kind in KINDS)],
        required=False,
        help_text="The pattern applies to detected values of this kind only (any kind: to all).",
    )

    class Meta:
        model = PiiAllowlistEntry
        fields = ["kind", "pattern", "note"]
        help_texts = {
            "pattern": "A regular expression the whole detected value must match, "
            r"e.g. support@nimbus\.example or \+1 800 555 \d{4}.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "pattern" in self.fields:  # an existing entry's page is read-only: no fields
            self.fields["pattern"].required = True

    def clean_pattern(self) -> str:
        pattern = str(self.cleaned_data["pattern"])
        try:
            validate_pattern(pattern)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return pattern


@admin.register(PiiAllowlistEntry)
class PiiAllowlistEntryAdmin(admin.ModelAdmin):
    """Add pattern entries and delete entries; an entry is never edited (delete and re-add)."""

    form = AllowlistPatternForm
    list_display = (
        "__str__",
        "kind",
        "pattern",
        "short_fingerprint",
        "source_link",
        "created_by",
        "created_at",
    )
    list_filter = ("kind", "created_at")
    search_fields = ("pattern", "note", "=fingerprint")
    readonly_fields = ("short_fingerprint", "source_link", "created_by", "created_at")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        if obj is None:
            return ["kind", "pattern", "note"]
        return [
            "kind",
            "pattern",
            "short_fingerprint",
            "note",
            "source_link",
            "created_by",
            "created_at",
        ]

    @admin.display(description="Fingerprint")
    def short_fingerprint(self, obj: PiiAllowlistEntry) -> str:
        return f"{obj.fingerprint[:12]}…" if obj.fingerprint else ""

    @admin.display(description="From review item")
    def source_link(self, obj: PiiAllowlistEntry) -> SafeString | str:
        if obj.source_id is None:
            return ""
        url = reverse("admin:ops_piidetection_change", args=[quote(obj.source_id)])
        return format_html('<a href="{}">#{}</a>', url, obj.source_id)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)
        invalidate_allowlist()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        invalidate_allowlist()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)
        invalidate_allowlist()
