"""The tools app's models in the admin (``/admin/tools/...``): staff edit the knowledge base (the
database keeps the search index in step on save), move tickets along and read workflow runs."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from tools.models import Article, Ticket, TicketUpdate, WorkflowExecution, WorkflowStep
from tools.tickets import ticket_record_changes


class ArticleForm(forms.ModelForm):
    # Tags as "sso, saml" rather than a JSON list: staff type words, not JSON.
    tags = forms.CharField(
        required=False, help_text="Comma-separated keywords, e.g. sso, saml, okta."
    )

    class Meta:
        model = Article
        fields = ["id", "title", "category", "tags", "language", "url", "updated", "content"]
        widgets = {"content": forms.Textarea(attrs={"rows": 30, "cols": 100})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and isinstance(self.instance.tags, list):
            self.initial["tags"] = ", ".join(self.instance.tags)

    def clean_tags(self) -> list[str]:
        words = (tag.strip().lower() for tag in self.cleaned_data["tags"].split(","))
        return list(dict.fromkeys(tag for tag in words if tag))


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    form = ArticleForm
    list_display = ["id", "title", "category", "language", "updated", "modified"]
    list_filter = ["category", "language", "updated"]
    search_fields = ["id", "title", "content"]
    fields = [*ArticleForm.Meta.fields, "created", "modified"]
    readonly_fields = ["created", "modified"]
    ordering = ["id"]
    date_hierarchy = "updated"

    def get_readonly_fields(self, request: HttpRequest, obj: Article | None = None) -> list[str]:
        # Renaming the primary key in a form would save a copy under the new id.
        if obj is not None:
            return ["id", *self.readonly_fields]
        return list(self.readonly_fields)


class TicketUpdateInline(admin.TabularInline):
    """The ticket's history; read-only (entries are added by the form's note or by changes)."""

    model = TicketUpdate
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "status", "message", "author", "public"]
    readonly_fields = ["created_at", "kind", "status", "message", "author", "public"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TicketForm(forms.ModelForm):
    note = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Added to the ticket's history with this save.",
    )
    note_public = forms.BooleanField(
        required=False,
        initial=True,
        label="Customer sees the note",
        help_text="Uncheck for an internal note.",
    )

    class Meta:
        model = Ticket
        fields = ["status", "priority", "category", "assignee"]


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """Staff move tickets along; every change becomes a history entry the customer can read
    (through ``fetch_status``), except internal notes."""

    form = TicketForm
    list_display = ["id", "title", "status", "priority", "category", "assignee", "created_at"]
    list_filter = ["status", "priority", "category", "created_at"]
    search_fields = ["id", "title", "description", "session_id", "user_email"]
    readonly_fields = [
        "id",
        "session_id",
        "title",
        "description",
        "user_email",
        "estimated_resolution",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["id", "title", "description", "session_id", "user_email"]}),
        ("Handling", {"fields": ["status", "priority", "category", "assignee"]}),
        ("Add to the history", {"fields": ["note", "note_public"]}),
        ("Times", {"fields": ["estimated_resolution", "created_at", "updated_at"]}),
    ]
    inlines = [TicketUpdateInline]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tickets are opened by the assistant, workflows or the API

    def save_model(self, request: HttpRequest, obj: Ticket, form: Any, change: bool) -> None:
        previous = Ticket.objects.filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)
        ticket_record_changes(
            ticket=obj,
            previous=previous,
            author=request.user.get_username(),
            note=form.cleaned_data.get("note", ""),
            public=bool(form.cleaned_data.get("note_public")),
        )


class WorkflowStepInline(admin.TabularInline):
    model = WorkflowStep
    extra = 0
    can_delete = False
    fields = ["index", "name", "status", "attempts", "execution_ms", "error", "result"]
    readonly_fields = ["index", "name", "status", "attempts", "execution_ms", "error", "result"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WorkflowExecution)
class WorkflowExecutionAdmin(admin.ModelAdmin):
    """Read-only: executions change only by running (a worker) or resuming (Celery beat)."""

    list_display = ["id", "workflow_type", "status", "session_id", "deliveries", "created_at"]
    list_filter = ["workflow_type", "status", "created_at"]
    search_fields = ["id", "session_id", "idempotency_key"]
    date_hierarchy = "created_at"
    inlines = [WorkflowStepInline]
    readonly_fields = [
        "id",
        "workflow_type",
        "status",
        "session_id",
        "parameters",
        "idempotency_key",
        "result",
        "error",
        "deliveries",
        "lease_until",
        "created_at",
        "started_at",
        "finished_at",
    ]
    fields = list(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)
