"""The staff pages of hand-offs inside the admin: the inbox (``/admin/ops/inbox/``) and a
conversation (``/admin/ops/conversations/<session id>/``).

Both are server-rendered and then kept live by their scripts: the inbox by the staff socket
(``ops.consumers``, ``static/ops/inbox.js``), the conversation by the session's watcher socket
(``static/chat/watch.js`` for the transcript, ``static/ops/conversation.js`` for the panel).
Actions go through ``/api/staff/`` (``ops.staff_api``). ``ops/urls.py`` wraps each view in
``admin.site.admin_view`` (staff login, never cached); each also needs the inbox permission.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from chat import wire
from chat.handoff import OPEN_STATES, current_availability, handoff_view
from chat.models import ChatSession, Handoff, ReplyDraft
from chat.wire import display_name
from ops.archive_status import archives_of, session_state
from ops.archive_views import CHANGE_PERM
from ops.staff_api import PERM, visible_items
from ops.transcripts import render_transcript, session_transcript
from tools.models import Ticket

EARLIER_SESSIONS = 10
RECENT, RECENT_ROWS = timedelta(hours=24), 20  # the inbox's "resolved recently" list


def _require_inbox(request: HttpRequest) -> None:
    if not request.user.has_perm(PERM["view"]):
        raise PermissionDenied


def _can(request: HttpRequest) -> dict[str, bool]:
    return {action: request.user.has_perm(name) for action, name in PERM.items()}


def inbox(request: HttpRequest) -> HttpResponse:
    """Open hand-offs, live; the filter is ``?view=mine|unassigned|all``."""
    _require_inbox(request)
    request.current_app = admin.site.name
    can = _can(request)
    view = request.GET.get("view", "all")
    if view not in ("mine", "unassigned", "all"):
        view = "all"
    items = visible_items(request.user, view).filter(status__in=OPEN_STATES)
    resolved = (
        visible_items(request.user, view)
        .filter(status=Handoff.Status.RESOLVED, resolved_at__gte=timezone.now() - RECENT)
        .select_related("rating")
        .order_by("-resolved_at")[:RECENT_ROWS]
    )
    availability = current_availability()
    context = {
        **admin.site.each_context(request),
        "title": "Inbox",
        "view": view,
        "views": [
            ("all", "All" if can["all"] else "Mine and unassigned"),
            ("mine", "Mine"),
            ("unassigned", "Unassigned"),
        ],
        "items": [wire.inbox_item(item) for item in items.order_by("requested_at")[:200]],
        "resolved": [
            {
                **wire.inbox_item(item),
                "rating": getattr(item, "rating", None),
                "at": item.resolved_at,
            }
            for item in resolved
        ],
        "agents": availability.agents,
        "hours": availability.hours,
        "wait_target": settings.HANDOFF_WAIT_TARGET_SECONDS,
        "me": request.user.pk,
        "can": can,
    }
    return TemplateResponse(request, "ops/inbox.html", context)


def _earlier_sessions(session: ChatSession) -> list[ChatSession]:
    if not session.user_id:
        return []
    return list(
        ChatSession.objects.filter(user_id=session.user_id)
        .exclude(pk=session.pk)
        .order_by("-created_at")[:EARLIER_SESSIONS]
    )


def _side_panel(session: ChatSession) -> dict[str, Any]:
    handoff = (
        Handoff.objects.filter(session=session)
        .select_related("assignee")
        .order_by("-requested_at", "-pk")
        .first()
    )
    draft = (
        ReplyDraft.objects.filter(session=session, outcome=ReplyDraft.Outcome.PENDING)
        .order_by("-created_at")
        .first()
    )
    return {
        "handoff": handoff,
        "item": wire.inbox_item(handoff) if handoff is not None else None,
        "holder": display_name(handoff.assignee) if handoff and handoff.assignee else "",
        "status": wire.handoff_status(handoff_view(session=session)),
        "draft": draft,
        "tickets": list(Ticket.objects.filter(session_id=session.pk).order_by("-created_at")[:20]),
        "earlier": _earlier_sessions(session),
        "notes": list(session.notes.order_by("created_at")),
        "ratings": list(session.ratings.order_by("-created_at")),
        "votes": list(session.feedback.select_related("message").order_by("message__seq")),
    }


def conversation(request: HttpRequest, session_id: str) -> HttpResponse:
    """One conversation for the agent: transcript, customer, tickets, notes, actions."""
    _require_inbox(request)
    request.current_app = admin.site.name
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        return _archived_or_404(request, session_id)
    context = {
        **admin.site.each_context(request),
        "title": f"Conversation {session.pk[:14]}…",
        "session": session,
        "live": session.status != ChatSession.Status.ENDED,
        "transcript": render_transcript(session_transcript(session)),
        "me": request.user.pk,
        "my_name": display_name(request.user),
        "can": _can(request),
        "archive_state": session_state(session),
        "can_release": request.user.has_perm(CHANGE_PERM),
        **_side_panel(session),
    }
    return TemplateResponse(request, "ops/conversation.html", context)


def _archived_or_404(request: HttpRequest, session_id: str) -> HttpResponse:
    """A conversation no longer in the database: its archives if it has any, else 404."""
    archives = archives_of(session_id[:80])
    if not archives:
        raise Http404("No such conversation (it may have expired and been archived).")
    context = {
        **admin.site.each_context(request),
        "title": "Conversation archived",
        "session_id": session_id,
        "archives": archives,
    }
    return TemplateResponse(request, "ops/conversation_archived.html", context, status=404)
