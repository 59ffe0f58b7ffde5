"""The staff side of hand-offs over REST, for the inbox and conversation pages (``/api/staff/``).

Signed-in staff only (the admin's session cookie, with its CSRF token on every change); each
action also needs its permission (``chat.Handoff``'s: take over, reply, resolve, reassign, see
all), given by the "Support agents" and "Supervisors" groups. Errors are API.md's shape. The
views are synchronous: they run in a thread, where the session's user can be read.
"""

from __future__ import annotations

from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from ninja import Query, Router, Schema
from ninja.security import SessionAuthIsStaff

from chat import wire
from chat.handoff import OPEN_STATES, current_availability
from chat.models import Handoff
from chat.takeover import (
    add_note,
    assign,
    discard_draft,
    hand_back,
    pick_up,
    resolve,
    staff_reply,
    take_over,
)
from chat.wire import display_name
from supportbot.errors import ApiError

router = Router(tags=["staff"], auth=SessionAuthIsStaff())

PERM = {
    "view": "chat.view_handoff",
    "take": "chat.take_over_handoff",
    "reply": "chat.reply_handoff",
    "resolve": "chat.resolve_handoff",
    "reassign": "chat.reassign_handoff",
    "all": "chat.view_all_handoffs",
}
INBOX_LIMIT = 200


def require(request: HttpRequest, *actions: str) -> Any:
    """The signed-in user, if they hold every permission named; ACCESS_DENIED otherwise."""
    user = request.user
    missing = [action for action in actions if not user.has_perm(PERM[action])]
    if missing:
        raise ApiError(
            "ACCESS_DENIED",
            "You do not have permission to do this.",
            details={"permissions": [PERM[action] for action in missing]},
        )
    return user


def handoff_pk(handoff_id: str) -> int:
    """The hand-off's key from its wire id (``hof_12``)."""
    digits = handoff_id.removeprefix("hof_")
    if not digits.isdigit() or len(digits) > 12:
        raise ApiError("NOT_FOUND", "No such hand-off.")
    return int(digits)


def visible_items(user: Any, view: str) -> QuerySet[Handoff]:
    """The items this user may see in the inbox under ``view`` (mine, unassigned, all)."""
    items = Handoff.objects.select_related("session", "assignee")
    if view == "mine":
        return items.filter(assignee=user)
    if view == "unassigned":
        return items.filter(assignee__isnull=True)
    if not user.has_perm(PERM["all"]):  # agents see theirs and the unclaimed ones
        return items.filter(Q(assignee=user) | Q(assignee__isnull=True))
    return items


class InboxQuery(Schema):
    view: Literal["mine", "unassigned", "all"] = "all"
    state: Literal["open", "resolved"] = "open"


@router.get("/staff/inbox", response=dict, summary="Inbox items (staff)")
def inbox(request: HttpRequest, query: Query[InboxQuery]) -> dict[str, Any]:
    user = require(request, "view")
    items = visible_items(user, query.view)
    if query.state == "open":
        items = items.filter(status__in=OPEN_STATES).order_by("requested_at")
    else:
        items = items.filter(status=Handoff.Status.RESOLVED).order_by("-resolved_at")
    availability = current_availability()
    return {
        "items": [wire.inbox_item(item) for item in items[:INBOX_LIMIT]],
        "agentsOnline": [{"id": a.user_id, "name": a.name} for a in availability.agents],
        "open": availability.hours.open,
    }


@router.get("/staff/agents", response=dict, summary="Colleagues who can take conversations")
def agents(request: HttpRequest) -> dict[str, Any]:
    require(request, "view")
    online = {agent.user_id for agent in current_availability().agents}
    users = get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")
    return {
        "agents": [
            {"id": user.pk, "name": display_name(user), "online": user.pk in online}
            for user in users
            if user.has_perm(PERM["take"])
        ]
    }


def _item(handoff: Handoff) -> JsonResponse:
    handoff = Handoff.objects.select_related("session", "assignee").get(pk=handoff.pk)
    return JsonResponse(wire.inbox_item(handoff))


@router.post("/staff/handoffs/{handoff_id}/take", response=dict, summary="Take a conversation over")
def take(request: HttpRequest, handoff_id: str) -> JsonResponse:
    user = require(request, "take")
    return _item(
        take_over(
            handoff_id=handoff_pk(handoff_id),
            agent=user,
            may_reassign=user.has_perm(PERM["reassign"]),
        )
    )


class AssignIn(Schema):
    agentId: int


@router.post("/staff/handoffs/{handoff_id}/assign", response=dict, summary="Assign to a colleague")
def assign_to(request: HttpRequest, handoff_id: str, payload: AssignIn) -> JsonResponse:
    user = require(request, "reassign")
    colleague = (
        get_user_model().objects.filter(pk=payload.agentId, is_active=True, is_staff=True).first()
    )
    if colleague is None or not colleague.has_perm(PERM["take"]):
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "agentId is not a colleague who can take conversations.",
            details={"field": "agentId"},
        )
    return _item(assign(handoff_id=handoff_pk(handoff_id), agent=user, to=colleague))


@router.post("/staff/handoffs/{handoff_id}/release", response=dict, summary="Hand back to the bot")
def release(request: HttpRequest, handoff_id: str) -> JsonResponse:
    user = require(request, "resolve")
    supervisor = user.has_perm(PERM["reassign"])
    return _item(hand_back(handoff_id=handoff_pk(handoff_id), agent=user, supervisor=supervisor))


@router.post("/staff/handoffs/{handoff_id}/resolve", response=dict, summary="Resolve")
def resolve_item(request: HttpRequest, handoff_id: str) -> JsonResponse:
    user = require(request, "resolve")
    supervisor = user.has_perm(PERM["reassign"])
    return _item(resolve(handoff_id=handoff_pk(handoff_id), agent=user, supervisor=supervisor))


class ReplyIn(Schema):
    text: Any = None
    draftId: int | None = None


@router.post("/staff/handoffs/{handoff_id}/reply", response={201: dict}, summary="Reply")
def reply(request: HttpRequest, handoff_id: str, payload: ReplyIn) -> JsonResponse:
    user = require(request, "reply")
    message = staff_reply(
        handoff_id=handoff_pk(handoff_id), agent=user, text=payload.text, draft_id=payload.draftId
    )
    return JsonResponse(wire.message(message), status=201)


@router.post("/staff/sessions/{session_id}/pickup", response=dict, summary="Pick a conversation up")
def pickup(request: HttpRequest, session_id: str) -> JsonResponse:
    user = require(request, "take")
    return _item(pick_up(session_id=session_id, agent=user))


class NoteIn(Schema):
    text: Any = None


@router.post("/staff/sessions/{session_id}/notes", response={201: dict}, summary="Internal note")
def note(request: HttpRequest, session_id: str, payload: NoteIn) -> JsonResponse:
    user = require(request, "view")
    return JsonResponse(
        wire.staff_note(add_note(session_id=session_id, agent=user, text=payload.text)), status=201
    )


@router.post("/staff/drafts/{draft_id}/discard", response=dict, summary="Discard a drafted reply")
def discard(request: HttpRequest, draft_id: int) -> JsonResponse:
    user = require(request, "reply")
    return JsonResponse(wire.reply_draft(discard_draft(draft_id=draft_id, agent=user)))
