"""Hand-offs, drafts, ratings and feedback in the admin: read-only lists for supervisors and
reports. Agents work in the inbox (``ops.inbox_views``), where actions are checked and logged."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chat.models import AnswerFeedback, Handoff, Rating, ReplyDraft
from ops.admin.sessions import ReadOnlyAdmin


class ConversationRowAdmin(ReadOnlyAdmin):
    """A read-only list whose rows belong to a conversation, linked to its staff page."""

    @admin.display(description="Conversation", ordering="session_id")
    def conversation(self, obj: Any) -> SafeString:
        url = reverse("ops:conversation", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, obj.session_id[:18] + "…")


@admin.register(Handoff)
class HandoffAdmin(ConversationRowAdmin):
    list_display = (
        "id",
        "conversation",
        "status",
        "reason",
        "priority",
        "assignee",
        "requested_at",
        "taken_at",
        "resolved_at",
        "ticket_id",
    )
    list_filter = ("status", "reason", "priority", "requested_at")
    search_fields = ("=session__id", "=ticket_id", "session__user_id")
    list_select_related = ("assignee",)


@admin.register(ReplyDraft)
class ReplyDraftAdmin(ConversationRowAdmin):
    list_display = ("id", "conversation", "outcome", "model", "decided_by", "created_at")
    list_filter = ("outcome", "model", "created_at")


@admin.register(Rating)
class RatingAdmin(ConversationRowAdmin):
    list_display = ("id", "conversation", "score", "agent", "comment", "created_at")
    list_filter = ("score", "created_at")


@admin.register(AnswerFeedback)
class AnswerFeedbackAdmin(ConversationRowAdmin):
    list_display = ("id", "conversation", "message", "vote", "had_source", "created_at")
    list_filter = ("vote", "had_source", "created_at")
