"""The review queues (PII detections, content flags, user reports), at ``/admin/ops/...``.

Staff read what a guard recorded and decide: confirm it, or dismiss it as a false positive (a
dismissed PII detection puts its values on the allowlist, by fingerprint). The recorded fields
are read-only; the only input is a note. Every decision goes through ``ops.review`` and is
written to the admin log.

Nothing here renders the clear value of a PII detection, except the encrypted copy that exists
only with ``PII_REVIEW_ENCRYPTION_KEY`` and only until its purge, behind an explicit "show".
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db import connection
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from chat.models import ReviewItem
from ops import review
from ops.models import ContentFlag, PiiDetection, UserReport
from ops.transcripts import render_transcript, review_transcript

EXCERPT_CHARS = 80
# Distinct category sets read to build the category filter: a queue's sets repeat (a few kinds
# in a few combinations), so this bounds the query without losing a category in practice.
CATEGORY_SETS_SCANNED = 500


def _reviewer(request: HttpRequest) -> str:
    return request.user.get_username()


class CategoryFilter(admin.SimpleListFilter):
    """Items whose ``categories`` (PII kinds or content categories) include the chosen one."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        sets = (
            model_admin.get_queryset(request)
            .order_by()
            .values_list("categories", flat=True)
            .distinct()[:CATEGORY_SETS_SCANNED]
        )
        found = sorted({str(c) for categories in sets for c in categories or []})
        return [(category, category) for category in found]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        category = self.value()
        if not category:
            return queryset
        if connection.features.supports_json_field_contains:
            return queryset.filter(categories__contains=[category])
        # SQLite has no JSON containment: match the quoted element in the list's JSON text.
        return queryset.filter(categories__icontains=f'"{category}"')


class ReviewNoteForm(ModelForm):
    """The change page's only input: a note, appended through ``review.add_note``."""

    add_note = forms.CharField(
        label="Add a note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Appended to the notes with your name and the time.",
    )

    class Meta:
        model = ReviewItem
        fields: list[str] = []


class ReviewQueueAdmin(admin.ModelAdmin):
    """One queue: list, filters, a read-only detail page with context, and the decisions."""

    form = ReviewNoteForm
    change_form_template = "admin/ops/review_change_form.html"
    list_display: tuple[str, ...] = (
        "created_at",
        "status",
        "action",
        "direction",
        "category_list",
        "session_link",
        "short_excerpt",
    )
    list_display_links = ("created_at",)
    list_filter: ClassVar[tuple[Any, ...]] = (
        "status",
        CategoryFilter,
        "direction",
        "created_at",
    )
    search_fields = ("=session_id", "=message_id", "=request_id")
    search_help_text = "An exact session id, message id or request id."
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ("confirm_selected", "dismiss_selected")
    readonly_fields: ClassVar[tuple[str, ...]] = (
        "status",
        "action",
        "direction",
        "category_list",
        "created_at",
        "session_link",
        "message_id",
        "request_id",
        "client",
        "reviewed_by",
        "reviewed_at",
        "excerpt_text",
        "findings_display",
        "clear_text_display",
        "transcript_display",
        "notes_display",
    )
    findings_title = "Findings"
    text_fields: tuple[str, ...] = ("excerpt_text",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        return [
            (
                None,
                {
                    "fields": (
                        ("status", "action", "direction"),
                        "category_list",
                        "created_at",
                        "session_link",
                        ("message_id", "request_id", "client"),
                        ("reviewed_by", "reviewed_at"),
                    )
                },
            ),
            ("Text", {"fields": self.text_fields}),
            (self.findings_title, {"fields": ("findings_display",)}),
            ("Conversation around it", {"fields": ("transcript_display",)}),
            ("Notes", {"fields": ("notes_display", "add_note")}),
        ]

    # --- permissions: items come from the guards; staff review them, never add or delete -------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- list columns -----------------------------------------------------------------------

    @admin.display(description="Categories")
    def category_list(self, obj: ReviewItem) -> str:
        return ", ".join(str(c) for c in obj.categories or [])

    @admin.display(description="Session", ordering="session_id")
    def session_link(self, obj: ReviewItem) -> SafeString | str:
        if not obj.session_id:
            return ""
        # quote(): the admin reads "_XX" in a URL's object id as an escape, and ids contain "_".
        url = reverse("admin:chat_chatsession_change", args=[quote(obj.session_id)])
        return format_html('<a href="{}">{}</a>', url, obj.session_id)

    @admin.display(description="Excerpt")
    def short_excerpt(self, obj: ReviewItem) -> str:
        return Truncator(obj.excerpt).chars(EXCERPT_CHARS)

    # --- detail page ------------------------------------------------------------------------

    @admin.display(description="Text (as stored, PII redacted)")
    def excerpt_text(self, obj: ReviewItem) -> SafeString:
        return format_html('<pre class="review-excerpt">{}</pre>', obj.excerpt)

    @admin.display(description="Findings")
    def findings_display(self, obj: ReviewItem) -> SafeString | str:
        return ""

    @admin.display(description="Clear text")
    def clear_text_display(self, obj: ReviewItem) -> SafeString | str:
        return ""

    @admin.display(description="Messages")
    def transcript_display(self, obj: ReviewItem) -> SafeString:
        return render_transcript(review_transcript(obj))

    @admin.display(description="Notes")
    def notes_display(self, obj: ReviewItem) -> SafeString | str:
        if not obj.note:
            return "None yet."
        return format_html("<pre>{}</pre>", obj.note)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        title = f"Review {self.opts.verbose_name}"
        extra_context = {"title": title, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Every recorded field is read-only: write only the note, never the whole row (which
        # would race a decision made meanwhile on another page).
        note = form.cleaned_data.get("add_note", "").strip()
        if note:
            review.add_note(obj, by=_reviewer(request), note=note)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        if "_confirm" in request.POST:
            self._confirm(request, obj)
            message = f"Confirmed {self.opts.verbose_name} #{obj.pk}."
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(request.get_full_path())
        if "_dismiss" in request.POST:
            added = self._dismiss(request, obj)
            message = _dismiss_message(1, added, pii=obj.kind == ReviewItem.Kind.PII)
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_change(request, obj)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # A decision button without a note changes no field: the decision logs itself instead of
        # an extra "No fields changed." entry.
        if not message:
            return None
        return super().log_change(request, obj, message)

    # --- decisions --------------------------------------------------------------------------

    def _confirm(self, request: HttpRequest, obj: ReviewItem) -> None:
        review.confirm(obj, by=_reviewer(request))
        self.log_change(request, obj, "Confirmed.")

    def _dismiss(self, request: HttpRequest, obj: ReviewItem) -> int:
        added = review.dismiss(obj, by=_reviewer(request))
        self.log_change(request, obj, f"Dismissed as a false positive ({added} allowlisted).")
        return added

    @admin.action(description="Confirm the selected items", permissions=["change"])
    def confirm_selected(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        items = list(queryset.exclude(status=ReviewItem.Status.CONFIRMED))
        for item in items:
            self._confirm(request, item)
        self.message_user(request, f"Confirmed {_items(len(items))}.", messages.SUCCESS)

    @admin.action(
        description="Dismiss the selected items as false positives", permissions=["change"]
    )
    def dismiss_selected(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> None:
        items = list(queryset.exclude(status=ReviewItem.Status.DISMISSED))
        added = sum(self._dismiss(request, item) for item in items)
        pii = self.model is PiiDetection
        self.message_user(request, _dismiss_message(len(items), added, pii=pii), messages.SUCCESS)


def _items(count: int) -> str:
    return f"{count} item{'' if count == 1 else 's'}"


def _dismiss_message(dismissed: int, added: int, *, pii: bool) -> str:
    message = f"Dismissed {_items(dismissed)} as false positive"
    if not pii:
        return f"{message}."
    values = f"{added} value{'' if added == 1 else 's'}"
    return f"{message}; {values} added to the PII allowlist."


@admin.register(PiiDetection)
class PiiDetectionAdmin(ReviewQueueAdmin):
    findings_title = "Detected PII"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        fieldsets = super().get_fieldsets(request, obj)
        fieldsets.insert(3, ("Clear text", {"fields": ("clear_text_display",)}))
        return fieldsets

    @admin.display(description="Found")
    def findings_display(self, obj: ReviewItem) -> SafeString | str:
        matches = (obj.findings or {}).get("matches", [])
        if not matches:
            return "None recorded."
        # Kinds and positions only: the value itself is never stored in clear.
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td>{} to {}</td><td>{}</td></tr>",
            ((m.get("kind", ""), m.get("start", ""), m.get("end", ""), _span(m)) for m in matches),
        )
        return format_html(
            '<table class="review-findings"><thead><tr><th>Kind</th><th>Position</th>'
            "<th>Length</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Clear text")
    def clear_text_display(self, obj: ReviewItem) -> SafeString | str:
        text = review.clear_text(obj)
        if text is None:
            return (
                "Not kept: no PII_REVIEW_ENCRYPTION_KEY was set when it was recorded, or its "
                "retention has passed."
            )
        return format_html(
            '<details class="review-clear-text"><summary>{}</summary>'
            '<p class="errornote">{}</p><pre>{}</pre></details>',
            "Show clear text",
            "This is the personal data as the user typed it. Look only when the decision needs "
            "it, and never copy it elsewhere.",
            text,
        )


def _span(match: dict[str, Any]) -> str:
    try:
        return str(int(match["end"]) - int(match["start"]))
    except (KeyError, TypeError, ValueError):
        return ""


@admin.register(ContentFlag)
class ContentFlagAdmin(ReviewQueueAdmin):
    # The actions present (flagged, blocked), not every action a review item may have.
    list_filter = (
        "status",
        ("action", admin.AllValuesFieldListFilter),
        CategoryFilter,
        "direction",
        "created_at",
    )
    findings_title = "Content filter verdict"

    @admin.display(description="Verdict")
    def findings_display(self, obj: ReviewItem) -> SafeString:
        findings = obj.findings or {}
        reasons = format_html_join("\n", "<li>{}</li>", ((r,) for r in findings.get("reasons", [])))
        return format_html(
            "<dl><dt>Categories</dt><dd>{}</dd><dt>Score</dt><dd>{}</dd>"
            "<dt>Reasons</dt><dd><ul>{}</ul></dd></dl>",
            self.category_list(obj) or "none",
            findings.get("score", ""),
            reasons,
        )


@admin.register(UserReport)
class UserReportAdmin(ReviewQueueAdmin):
    list_display = ("created_at", "status", "session_link", "short_reason", "short_excerpt")
    list_filter = ("status", "created_at")
    text_fields = ("reason_text", "excerpt_text")
    findings_title = "Report"
    readonly_fields = (*ReviewQueueAdmin.readonly_fields, "reason_text")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        # A report has no findings of its own: its reason is the finding.
        return [fs for fs in super().get_fieldsets(request, obj) if fs[0] != self.findings_title]

    @admin.display(description="Reason")
    def short_reason(self, obj: ReviewItem) -> str:
        return Truncator(obj.reason).chars(EXCERPT_CHARS)

    @admin.display(description="The user's reason (PII redacted)")
    def reason_text(self, obj: ReviewItem) -> SafeString:
        return format_html('<pre class="review-reason">{}</pre>', obj.reason or "(none given)")

    @admin.display(description="Reported answer")
    def excerpt_text(self, obj: ReviewItem) -> SafeString:
        return format_html('<pre class="review-excerpt">{}</pre>', obj.excerpt)
