"""REST for the customer's side of a hand-off (additions to API.md, documented in the README):
``GET /api/session/{id}/handoff`` (availability and the state of their request) and
``POST /api/session/{id}/handoff`` (ask for a person, give a contact address, pause the bot)."""

from __future__ import annotations

import pydantic
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from ninja import Field, Router, Schema
from pydantic import StrictBool

from chat.handoff import handoff_status, request_handoff
from chat.models import Handoff
from chat.sessions import session_get
from supportbot import ratelimit
from supportbot.clients import client_ip
from supportbot.errors import describe_validation_errors
from supportbot.ids import require_session_id
from supportbot.middleware import json_body, parse_json_object

router = Router(tags=["hand-off"])


class HandoffIn(Schema):
    reason: str | None = Field(None, max_length=1000)
    contactEmail: str | None = Field(None, max_length=254)
    stopBot: StrictBool | None = None


def _admit(request: HttpRequest, session_id: str) -> None:
    """Every hand-off call counts against the session's request limit, before any database
    work (a malformed id is refused first: it would name a limit key)."""
    request.log_session_id = session_id  # type: ignore[attr-defined]
    require_session_id(session_id)
    ratelimit.hit(
        ("session_requests", session_id), session_id=session_id, client_ip=client_ip(request)
    )


@router.get(
    "/session/{session_id}/handoff",
    response=dict,
    summary="Whether a person can answer now, and the state of this session's hand-off",
)
async def get_handoff(request: HttpRequest, session_id: str) -> JsonResponse:
    _admit(request, session_id)
    await sync_to_async(session_get)(session_id=session_id)
    return JsonResponse(await sync_to_async(handoff_status)(session_id=session_id))


@router.post(
    "/session/{session_id}/handoff",
    response={200: dict, 201: dict},
    summary="Ask for a person (idempotent); give a contact address; pause the assistant",
    openapi_extra=json_body(HandoffIn, required=False),
)
async def post_handoff(request: HttpRequest, session_id: str) -> JsonResponse:
    _admit(request, session_id)
    # The body is optional (an empty POST just asks for a person), so it is parsed here.
    raw = parse_json_object(request.body) if request.body.strip() else {}
    try:
        payload = HandoffIn.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise describe_validation_errors([dict(err) for err in exc.errors()]) from None
    await sync_to_async(session_get)(session_id=session_id, allow_ended=False)
    result = await sync_to_async(request_handoff)(
        session_id=session_id,
        reason=Handoff.Reason.CUSTOMER,
        note=payload.reason or "",
        contact_email=payload.contactEmail,
        stop_bot=payload.stopBot,
    )
    return JsonResponse(result.status, status=201 if result.created else 200)
