"""Conversations in the admin (``/admin/chat/...``): read-only. Staff read transcripts; they never
edit or add them.

Sessions are not deletable here either: a session leaves the hot tables only through expiry or
ending, which archive it first (``chat/lifecycle.py``); a delete button would skip the archive.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.forms import Script
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chat.models import ChatSession, Message
from ops.transcripts import render_transcript, session_transcript


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete: the change page becomes a read-only view page."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "user_id",
        "message_count",
        "total_tokens",
        "created_at",
        "last_activity",
    )
    list_filter = ("status", "created_at", "last_activity")
    search_fields = ("=id", "user_id")
    date_hierarchy = "created_at"
    show_full_result_count = False  # skip the second COUNT(*) over every session
    readonly_fields = ("transcript",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "status",
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
