"""Conversations in the admin (``/admin/chat/...``): read-only. Staff read transcripts; they never
edit or add them.

Sessions are not deletable here either: a session leaves the hot tables only through expiry or
ending, which archive it first (``chat/lifecycle.py``); a delete button would skip the archive.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.forms import Script
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chat.models import ChatSession, Message
from ops.archive_status import archives_of, session_state, states_for_sessions
from ops.archive_views import CHANGE_PERM
from ops.transcripts import render_transcript, session_transcript


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete: the change page becomes a read-only view page."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EscalationFilter(admin.SimpleListFilter):
    """Sessions by whether they were escalated (the workflow) or handed to a person at all."""

    title = "escalation"
    parameter_name = "escalated"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("escalated", "Escalated (workflow)"),
            ("handoff", "Handed to a person"),
            ("none", "Neither"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        if self.value() == "escalated":
            return queryset.filter(escalated_at__isnull=False)
        if self.value() == "handoff":
            return queryset.exclude(handoff_status="")
        if self.value() == "none":
            return queryset.filter(escalated_at__isnull=True, handoff_status="")
        return queryset


class SessionChangeList(ChangeList):
    """The admin's list, plus one query for the archives of the listed sessions."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page = list(self.result_list)  # evaluated once; the template reuses these rows
        states = states_for_sessions(page)
        for session in page:
            session.archive_state = states[session.pk]


def _state_html(state: Any, *, compact: bool = False) -> SafeString:
    context = {"state": state, "compact": compact}
    return SafeString(render_to_string("ops/_archive_state.html", context))


class WhereFilter(admin.SimpleListFilter):
    """Sessions restored from their archive, or whose archiving keeps failing."""

    title = "where it is"
    parameter_name = "where"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("restored", "Restored from archive"), ("failing", "Archive failing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> Any:
        if self.value() == "restored":
            return queryset.filter(restored_at__isnull=False)
        if self.value() == "failing":
            return queryset.filter(archive_attempts__gt=0)
        return queryset


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnlyAdmin):
    change_form_template = "admin/ops/session_change_form.html"
    list_display = (
        "id",
        "status",
        "where",
        "handoff_state",
        "user_id",
        "message_count",
        "total_tokens",
        "created_at",
        "last_activity",
    )
    list_filter = (
        "status",
        WhereFilter,
        EscalationFilter,
        "handoff_status",
        "created_at",
        "last_activity",
    )
    search_fields = ("=id", "user_id")
    date_hierarchy = "created_at"
    show_full_result_count = False  # skip the second COUNT(*) over every session
    readonly_fields = ("transcript", "conversation_link", "archive_state_field")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "status",
                    "archive_state_field",
                    "conversation_link",
                    "handoff_status",
                    "escalated_at",
                    "escalation_ticket",
                    "user_id",
                    "created_at",
                    "last_activity",
                    "expires_at",
                    "ended_at",
                )
            },
        ),
        (
            "Usage",
            {
                "fields": (
                    "message_count",
                    "last_seq",
                    "prompt_tokens",
                    "completion_tokens",
                    "total_tokens",
                )
            },
        ),
        (
            "Memory",
            {
                "fields": (
                    "summary",
                    "summarized_through_seq",
                    "active_topics",
                    "resolved_issues",
                    "metadata",
                )
            },
        ),
        ("Transcript", {"fields": ("transcript",)}),
        ("Turn lease", {"classes": ("collapse",), "fields": ("turn_token", "turn_lease_until")}),
    )

    class Media:
        js = (Script("chat/watch.js", type="module"),)
        css = {"all": ("ops/archives.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SessionChangeList

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The session's page, with the banner of a restored session; a session no longer in
        the database leads to its archives instead of the admin's "doesn't exist"."""
        session = self.get_object(request, unquote(object_id))
        if session is None and archives_of(unquote(object_id)):
            messages.info(request, "This session is no longer in the database: it is archived.")
            query = urlencode({"q": unquote(object_id)})
            return HttpResponseRedirect(
                reverse("admin:chat_sessionarchive_changelist") + "?" + query
            )
        context = dict(extra_context or {})
        if session is not None:
            context["archive_state"] = session_state(session)
            context["can_release"] = request.user.has_perm(CHANGE_PERM)
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.display(description="Where")
    def where(self, obj: ChatSession) -> SafeString:
        state = getattr(obj, "archive_state", None)
        return _state_html(state or session_state(obj), compact=True)

    @admin.display(description="Where it is")
    def archive_state_field(self, obj: ChatSession) -> SafeString:
        return _state_html(session_state(obj))

    @admin.display(description="Hand-off", ordering="handoff_status")
    def handoff_state(self, obj: ChatSession) -> str:
        state = obj.get_handoff_status_display() if obj.handoff_status else ""
        if obj.escalated_at:
            state = f"{state} (escalated {obj.escalation_ticket})".strip()
        return state or "—"

    @admin.display(description="Agent view")
    def conversation_link(self, obj: ChatSession) -> SafeString:
        url = reverse("ops:conversation", args=[obj.pk])
        return format_html('<a href="{}">Open in the agent view (take over, reply)</a>', url)

    @admin.display(description="Transcript")
    def transcript(self, obj: ChatSession) -> SafeString:
        return render_transcript(session_transcript(obj))


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "session_link",
        "seq",
        "role",
        "status",
        "model",
        "total_tokens",
        "processing_ms",
        "created_at",
    )
    list_filter = ("role", "status", "model", "created_at")
    search_fields = ("=id", "=session__id")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).order_by("-created_at")

    @admin.display(description="Session", ordering="session_id")
    def session_link(self, obj: Message) -> SafeString:
        # quote(): the admin reads "_XX" in a URL's object id as an escape, and ids contain "_".
        url = reverse("admin:chat_chatsession_change", args=[quote(obj.session_id)])
        return format_html('<a href="{}">{}</a>', url, obj.session_id)
