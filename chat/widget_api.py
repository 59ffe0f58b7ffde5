"""REST for the embeddable widget's frame: resume or start its session, attach a signed identity.

Both are called by the frame (same origin as this API); they read no cookie, so they need no
CSRF token and work inside a frame of another site. The design is ``chat.widget_sessions``.
"""

from __future__ import annotations

from typing import Any

import pydantic
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from ninja import Field, Router, Schema
from pydantic import StrictInt, StrictStr

from chat import wire
from chat.widget_sessions import MAX_USER_ID, WidgetSession, widget_identify, widget_session
from supportbot.clients import client_ip
from supportbot.errors import describe_validation_errors
from supportbot.middleware import json_body, parse_json_object

router = Router(tags=["widget"])


class WidgetSessionIn(Schema):
    sessionId: StrictStr | None = None


class IdentifyIn(Schema):
    sessionId: StrictStr
    userId: StrictStr = Field(..., min_length=1, max_length=MAX_USER_ID)
    timestamp: StrictInt
    signature: StrictStr = Field(..., max_length=128)


def _parse[SchemaT: Schema](request: HttpRequest, schema: type[SchemaT]) -> SchemaT:
    """The body as ``schema``: one JSON object (an array or a scalar is refused as such, not
    read as "no fields"); an empty body is an empty object."""
    raw = parse_json_object(request.body) if request.body.strip() else {}
    try:
        return schema.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise describe_validation_errors([dict(err) for err in exc.errors()]) from None


def _answer(result: WidgetSession, **extra: Any) -> JsonResponse:
    body = {**wire.session_created(result.session), "resumed": result.resumed, **extra}
    return JsonResponse(body, status=200 if result.resumed else 201)


@router.post(
    "/widget/session",
    response={200: dict, 201: dict},
    openapi_extra=json_body(WidgetSessionIn, required=False),
    summary="The widget's session: resume the named one (200) or start a new one (201)",
)
async def widget_session_view(request: HttpRequest) -> JsonResponse:
    payload = _parse(request, WidgetSessionIn)
    result = await sync_to_async(widget_session)(
        session_id=payload.sessionId, client_ip=client_ip(request)
    )
    request.log_session_id = result.session.pk  # type: ignore[attr-defined]
    return _answer(result)


@router.post(
    "/widget/session/new",
    response={201: dict},
    openapi_extra=json_body(WidgetSessionIn, required=False),
    summary="A new conversation for the widget: ends the named session, starts another",
)
async def widget_new_session_view(request: HttpRequest) -> JsonResponse:
    payload = _parse(request, WidgetSessionIn)
    result = await sync_to_async(widget_session)(
        session_id=payload.sessionId, restart=True, client_ip=client_ip(request)
    )
    request.log_session_id = result.session.pk  # type: ignore[attr-defined]
    return _answer(result)


@router.post(
    "/widget/identify",
    response={200: dict, 201: dict},
    openapi_extra=json_body(IdentifyIn),
    summary="Attach a host-signed userId to the widget's session",
)
async def widget_identify_view(request: HttpRequest) -> JsonResponse:
    payload = _parse(request, IdentifyIn)
    result = await sync_to_async(widget_identify)(
        session_id=payload.sessionId,
        user_id=payload.userId,
        timestamp=payload.timestamp,
        signature=payload.signature,
        client_ip=client_ip(request),
    )
    request.log_session_id = result.session.pk  # type: ignore[attr-defined]
    return _answer(result, userId=result.session.user_id)
