"""REST transport for sessions and chat turns (API.md "REST"). Thin: parse, call, render."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pydantic
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from chat import wire
from chat.guards.review import report_message
from chat.guards.validation import unstorable
from chat.pipeline import run_turn
from chat.sessions import recent_messages, session_create, session_end, session_get
from chat.turn_events import (
    TokenDelta,
    ToolStarted,
    TurnDone,
    TurnEvent,
    TurnFailed,
    UserMessageStored,
)
from supportbot import ratelimit
from supportbot.clients import client_ip
from supportbot.errors import ApiError, describe_validation_errors, error_body, now_ms
from supportbot.ids import CLIENT_REQUEST_ID_RE, require_session_id
from supportbot.middleware import json_body, json_error, parse_json_object

router = Router(tags=["chat"])


class SessionCreateIn(Schema):
    userId: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] | None = None


class ChatIn(Schema):
    message: str
    sessionId: str
    requestId: str | None = Field(None, min_length=1, max_length=128)
    metadata: dict[str, Any] | None = None


class ReportIn(Schema):
    messageId: str | None = Field(None, max_length=40)
    reason: str | None = Field(None, max_length=1000)  # null is no reason, like a missing one


# Past any conversation's length, and within every database's integers (a bigger one made the
# slice fail in the database: 500 instead of 400).
MAX_OFFSET = 2**31 - 1


class SessionQuery(Schema):
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    include_summary: bool = True


@router.post(
    "/session",
    response={201: dict},
    summary="Create a session",
    openapi_extra=json_body(SessionCreateIn, required=False),
)
async def create_session(request: HttpRequest) -> JsonResponse:
    # The body is optional (an empty POST opens an anonymous session), so it is parsed here.
    raw = parse_json_object(request.body) if request.body.strip() else {}
    try:
        payload = SessionCreateIn.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise describe_validation_errors([dict(err) for err in exc.errors()]) from None
    session = await sync_to_async(session_create)(
        user_id=payload.userId, metadata=payload.metadata, client_ip=client_ip(request)
    )
    request.log_session_id = session.id  # type: ignore[attr-defined]
    return JsonResponse(wire.session_created(session), status=201)


@router.get("/session/{session_id}", response=dict, summary="A session and its recent messages")
async def get_session(
    request: HttpRequest, session_id: str, query: Query[SessionQuery]
) -> dict[str, Any]:
    session = await sync_to_async(session_get)(session_id=session_id)
    recent = await sync_to_async(recent_messages)(session, limit=query.limit, offset=query.offset)
    return wire.session(session, recent, include_summary=query.include_summary)


@router.delete("/session/{session_id}", response=dict, summary="End a session")
async def delete_session(request: HttpRequest, session_id: str) -> dict[str, Any]:
    session = await sync_to_async(session_end)(session_id=session_id)
    assert session.ended_at is not None
    return wire.session_ended(session)


@router.post(
    "/session/{session_id}/report",
    response={201: dict},
    summary="Report an answer to staff (the latest one unless messageId names another)",
)
async def report_answer(request: HttpRequest, session_id: str) -> JsonResponse:
    request.log_session_id = session_id  # type: ignore[attr-defined]
    # The body is optional (an empty POST reports the latest answer), so it is parsed here.
    raw = parse_json_object(request.body) if request.body.strip() else {}
    try:
        payload = ReportIn.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise describe_validation_errors([dict(err) for err in exc.errors()]) from None
    reason = payload.reason or ""
    problem = unstorable(reason)
    if problem:
        raise ApiError("INVALID_FIELD_VALUE", f"reason {problem}.", details={"field": "reason"})
    ip = client_ip(request)
    require_session_id(session_id)  # before the limit: a malformed id would name a key
    ratelimit.hit(("session_requests", session_id), session_id=session_id, client_ip=ip)
    session = await sync_to_async(session_get)(session_id=session_id)
    item = await sync_to_async(report_message)(
        session=session, message_id=payload.messageId, reason=reason, client_ip=ip
    )
    return JsonResponse(wire.report(item), status=201)


@router.post("/chat", response=dict, summary="Send a message; JSON or Server-Sent Events")
async def chat(request: HttpRequest, payload: ChatIn) -> HttpResponse | StreamingHttpResponse:
    if payload.requestId is not None and not CLIENT_REQUEST_ID_RE.match(payload.requestId):
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "requestId may hold letters, digits and _.:- only.",
            details={"field": "requestId"},
        )
    request.log_session_id = payload.sessionId  # type: ignore[attr-defined]
    events = run_turn(
        session_id=payload.sessionId,
        content=payload.message,
        request_id=payload.requestId,
        metadata=payload.metadata,
        client_ip=client_ip(request),
    )
    # The first event is the stored user message; refusals raise before it, as plain errors.
    first = await anext(events)
    if "text/event-stream" in request.headers.get("Accept", ""):
        response = StreamingHttpResponse(
            _sse(request, first, events), content_type="text/event-stream; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    async for event in events:
        if isinstance(event, TurnDone):
            return JsonResponse(wire.answer_rest(event))
        if isinstance(event, TurnFailed):
            return json_error(request, event.error)
    raise ApiError("INTERNAL_ERROR", "The turn ended without an answer.")


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _sse(
    request: HttpRequest, first: TurnEvent, events: AsyncIterator[TurnEvent]
) -> AsyncIterator[bytes]:
    """SSE frames: message_received, ai_token*, then ai_response or error (WebSocket names)."""
    if isinstance(first, UserMessageStored):
        yield _frame("message_received", wire.message_received(first))
    async for event in events:
        if isinstance(event, TokenDelta):
            yield _frame("ai_token", wire.token_delta(event))
        elif isinstance(event, ToolStarted):
            yield _frame("ai_typing", wire.typing(event))
        elif isinstance(event, TurnDone):
            yield _frame("ai_response", wire.answer_rest(event))
        elif isinstance(event, TurnFailed):
            body = error_body(
                event.error,
                request_id=getattr(request, "request_id", ""),
                path=request.path,
                method=request.method or "POST",
            )
            yield _frame("error", {"type": "error", "data": body["error"], "timestamp": now_ms()})
