"""REST transport for the customer's feedback (``chat.feedback``): the rating of a resolved
conversation and the thumbs on an answer. Thin: parse, count against the session's limits,
call, render."""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from ninja import Field, Router, Schema

from chat import wire
from chat.feedback import COMMENT_MAX, MAX_SCORE, MIN_SCORE, rate_conversation, vote_answer
from supportbot import ratelimit
from supportbot.clients import client_ip
from supportbot.errors import describe_validation_errors
from supportbot.ids import require_session_id
from supportbot.middleware import json_body, parse_json_object

router = Router(tags=["chat"])


class RatingIn(Schema):
    # Strict: "5", 4.5 and true are not scores (lax parsing would take "5" and true).
    score: pydantic.StrictInt = Field(..., ge=MIN_SCORE, le=MAX_SCORE)
    comment: str | None = Field(None, max_length=COMMENT_MAX)  # null is no comment


class FeedbackIn(Schema):
    messageId: str = Field(..., min_length=1, max_length=40)
    vote: Literal["up", "down"]


def _body(request: HttpRequest, schema: type[Schema]) -> Any:
    try:
        return schema.model_validate(parse_json_object(request.body))
    except pydantic.ValidationError as exc:
        raise describe_validation_errors([dict(err) for err in exc.errors()]) from None


def _count_request(request: HttpRequest, session_id: str) -> None:
    """Count the request against the session's limits before the database is touched."""
    request.log_session_id = session_id  # type: ignore[attr-defined]
    require_session_id(session_id)  # before the limit: a malformed id would name a key
    ratelimit.hit(
        ("session_requests", session_id), session_id=session_id, client_ip=client_ip(request)
    )


@router.post(
    "/session/{session_id}/rating",
    response={201: dict},
    summary="Rate the conversation a person resolved (1 to 5 stars, once)",
    openapi_extra=json_body(RatingIn),
)
async def rate(request: HttpRequest, session_id: str) -> JsonResponse:
    payload = _body(request, RatingIn)
    _count_request(request, session_id)
    stored = await sync_to_async(rate_conversation)(
        session_id=session_id, score=payload.score, comment=payload.comment or ""
    )
    return JsonResponse(wire.rating(stored), status=201)


@router.post(
    "/session/{session_id}/feedback",
    response=dict,
    summary="Thumbs up or down on an answer (a later vote replaces the earlier)",
    openapi_extra=json_body(FeedbackIn),
)
async def vote(request: HttpRequest, session_id: str) -> JsonResponse:
    payload = _body(request, FeedbackIn)
    _count_request(request, session_id)
    item, status = await sync_to_async(vote_answer)(
        session_id=session_id, message_id=payload.messageId, vote=payload.vote
    )
    return JsonResponse(wire.feedback(item, status))
