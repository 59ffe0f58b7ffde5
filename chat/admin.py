"""Conversations in the admin: read-only. Staff read transcripts; they never edit or add them.

Sessions are not deletable here either: a session leaves the hot tables only through expiry or
ending, which archive it first (``chat/lifecycle.py``); a delete button would skip the archive.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.forms import Script
from django.http import HttpRequest
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chat.models import ChatSession, Message

# A session page renders its transcript whole up to this many messages; beyond it the page would
# grow unbounded, and the Message list (filtered by session) pages through the rest.
TRANSCRIPT_LIMIT = 1000


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete: the change page becomes a read-only view page."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _when(value: Any) -> str:
    return formats.date_format(timezone.localtime(value), "Y-m-d H:i:s") if value else ""


def _tool_calls(message: Message) -> SafeString | str:
    if not message.tool_calls:
        return ""
    # format_html escapes the JSON: tool arguments come from the model and may hold markup.
    return format_html(
        "<pre>{}</pre>", json.dumps(message.tool_calls, indent=2, ensure_ascii=False, default=str)
    )


def render_transcript(session: ChatSession, *, limit: int = TRANSCRIPT_LIMIT) -> SafeString:
    """The session's messages in ``seq`` order as an HTML table; every value is escaped."""
    messages = list(session.messages.order_by("seq")[: limit + 1])
    more = len(messages) > limit
    rows = format_html_join(
        "\n",
        '<tr class="transcript-{}" data-seq="{}"><td>{}</td><td>{}</td><td>{}</td>'
        "<td><pre>{}</pre>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                m.role,
                m.seq,
                m.seq,
                m.get_role_display(),
                _when(m.created_at),
                m.content,
                _tool_calls(m),
                m.total_tokens or "",
                f"{m.processing_ms} ms" if m.processing_ms is not None else "",
                m.model,
                m.get_status_display() + (f" ({m.error_code})" if m.error_code else ""),
            )
            for m in messages[:limit]
        ),
    )
    note = ""
    if more:
        url = reverse("admin:chat_message_changelist") + "?" + urlencode({"q": session.pk})
        note = format_html(
            '<p>Showing the first {} messages; <a href="{}">all messages</a>.</p>', limit, url
        )
    live = ""
    if session.status != ChatSession.Status.ENDED and not more:
        # static/chat/watch.js follows the conversation live (staff watcher socket).
        live = format_html(
            '<p class="transcript-live" data-session-id="{}" role="status" aria-live="polite"></p>',
            session.pk,
        )
    empty = "" if messages else format_html('<p class="transcript-empty">{}</p>', "No messages.")
    return format_html(
        '{}<table class="transcript"><thead><tr><th>#</th><th>Role</th><th>Time</th>'
        "<th>Content</th><th>Tokens</th><th>Latency</th><th>Model</th><th>Status</th></tr>"
        "</thead><tbody>{}</tbody></table>{}{}",
        live,
        rows,
        empty,
        note,
    )


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
        return render_transcript(obj)


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
