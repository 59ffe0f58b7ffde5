"""REST transport of the tools (API.md): ``POST /api/tools/search``, ``POST /api/tools/ticket``,
``POST /api/workflow/execute``, ``GET /api/workflow/{executionId}``. Thin: the session is checked
here (chat owns sessions), the work is done by ``tools``."""

from __future__ import annotations

import re
from typing import Any, Literal

import pydantic
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from ninja import Field, Router, Schema

from chat import wire
from chat.guards import (
    GuardInput,
    admit_tool_call,
    allowlist_for_async,
    redact_json,
    redact_text,
    screen_and_keep_blocked,
)
from chat.sessions import session_get
from supportbot import ratelimit
from supportbot.clients import client_ip
from supportbot.errors import ApiError, describe_validation_errors
from supportbot.ids import new_tool_call_id, require_session_id
from tools.api import SearchIn, SearchOut, search_answer
from tools.builtin import CreateTicketArgs
from tools.models import WorkflowExecution
from tools.registry import ToolContext, registry
from tools.workflows import WorkflowInvalid, execution_wire, workflow_submit

router = Router(tags=["tools"])

REQUIRED_TICKET_FIELDS = ("title", "description", "priority", "category")
TICKET_ID_RE = re.compile(r"^[Tt][Kk][Tt]-[A-Za-z0-9]{4,16}$")
EXECUTION_ID_RE = re.compile(r"^wf_exec_[0-9a-f]{32}\Z")  # tools.models.new_execution_id


@router.post(
    "/tools/search", response=SearchOut, by_alias=True, summary="Search the knowledge base"
)
async def search(request: HttpRequest, payload: SearchIn) -> dict[str, Any]:
    """With a ``sessionId`` (optional) the search counts as one of that session's requests."""
    if payload.session_id is not None:
        _limit(request, payload.session_id)
        session = await sync_to_async(session_get)(session_id=payload.session_id)
        request.log_session_id = session.id  # type: ignore[attr-defined]
    return await search_answer(payload)


class TicketIn(Schema):
    action: Literal["create", "status"]
    sessionId: str = Field(max_length=128)
    ticketId: str | None = Field(None, max_length=64)
    ticketData: dict[str, Any] | None = None


@router.post("/tools/ticket", response=dict, summary="Open a ticket, or read one's status")
async def ticket(request: HttpRequest, payload: TicketIn) -> JsonResponse:
    """Runs the same tools the assistant uses (``create_ticket``, ``fetch_status``)."""
    _limit(request, payload.sessionId)
    # An ended session may still read its tickets, but opens no new ones.
    session = await sync_to_async(session_get)(
        session_id=payload.sessionId, allow_ended=payload.action == "status"
    )
    request.log_session_id = session.id  # type: ignore[attr-defined]
    if payload.action == "create":
        name, arguments = "create_ticket", await _create_arguments(payload.ticketData, session.id)
    else:
        name, arguments = "fetch_status", {"ticketId": _ticket_id(payload.ticketId)}
    admit_tool_call(session_id=session.id)
    outcome = await registry.execute(
        call_id=new_tool_call_id(),
        name=name,
        arguments=arguments,
        ctx=ToolContext(session_id=session.id, request_id=getattr(request, "request_id", None)),
    )
    if outcome.status == "invalid":
        assert outcome.error is not None
        raise ApiError("INVALID_FIELD_VALUE", outcome.error["message"])
    if outcome.error is not None:
        raise ApiError(outcome.error["code"], outcome.error["message"])
    assert outcome.result is not None
    return JsonResponse(wire.ticket(outcome.result, created=payload.action == "create"))


async def _create_arguments(data: dict[str, Any] | None, session_id: str) -> dict[str, Any]:
    """``ticketData`` checked as API.md asks (only userEmail and metadata are optional), with
    its free text redacted; userEmail is the contact the customer gives on purpose."""
    if data is None:
        raise ApiError(
            "MISSING_REQUIRED_FIELD", "ticketData is required.", details={"field": "ticketData"}
        )
    for key in REQUIRED_TICKET_FIELDS:
        if key not in data:
            raise ApiError(
                "MISSING_REQUIRED_FIELD",
                f"ticketData.{key} is required.",
                details={"field": f"ticketData.{key}"},
            )
    try:
        arguments = CreateTicketArgs.model_validate(data).model_dump()
    except pydantic.ValidationError as exc:
        errors = [{**err, "loc": ("ticketData", *err["loc"])} for err in exc.errors()]
        raise describe_validation_errors(errors) from None
    allowlist = await allowlist_for_async()
    for key in ("title", "description"):
        arguments[key] = redact_text(arguments[key], allowlist, session_id=session_id, field=key)
    if arguments.get("metadata"):
        arguments["metadata"] = redact_json(
            arguments["metadata"], allowlist, session_id=session_id, field="metadata"
        )
    return arguments


def _ticket_id(value: str | None) -> str:
    if not value:
        raise ApiError(
            "MISSING_REQUIRED_FIELD", "ticketId is required.", details={"field": "ticketId"}
        )
    if not TICKET_ID_RE.match(value):
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "ticketId must be a ticket id such as TKT-7QK2M9PX.",
            details={"field": "ticketId"},
        )
    return value


class WorkflowContext(Schema):
    sessionId: str = Field(max_length=128)


class WorkflowParameters(pydantic.BaseModel):
    # A plain pydantic model: ninja's Schema drops undeclared fields, and each workflow type
    # has its own (validated by tools.workflows).
    model_config = pydantic.ConfigDict(extra="allow")
    query: str | None = Field(None, max_length=4000)
    context: WorkflowContext


class WorkflowIn(Schema):
    workflowType: str = Field(max_length=32)
    parameters: WorkflowParameters
    idempotencyKey: str | None = Field(
        None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$"
    )


@router.post("/workflow/execute", response=dict, summary="Run a workflow (in Celery)")
async def execute_workflow(request: HttpRequest, payload: WorkflowIn) -> JsonResponse:
    """Stores the execution and queues it; a known idempotency key returns that execution."""
    _limit(request, payload.parameters.context.sessionId)
    session = await sync_to_async(session_get)(
        session_id=payload.parameters.context.sessionId, allow_ended=False
    )
    request.log_session_id = session.id  # type: ignore[attr-defined]
    parameters = payload.parameters.model_dump(exclude={"context"}, exclude_none=True)
    query = parameters.get("query")
    if isinstance(query, str) and not query.strip():
        parameters["query"] = ""  # no text: the workflow type says whether it needs one
    elif isinstance(query, str):
        # The query reaches the model: the same guards as a chat message.
        item = GuardInput(
            query, session.id, client_ip(request), "rest", getattr(request, "request_id", "")
        )
        try:
            screened = await screen_and_keep_blocked(item, await allowlist_for_async())
        except ApiError as refused:  # the message's own checks: name the field it came in
            if refused.details and refused.details.get("field") == "message":
                refused.details = {**refused.details, "field": "parameters.query"}
            raise
        parameters["query"] = screened.text
    try:
        execution, _ = await sync_to_async(workflow_submit)(
            workflow_type=payload.workflowType,
            session_id=session.id,
            parameters=parameters,
            idempotency_key=payload.idempotencyKey,
        )
    except WorkflowInvalid as exc:
        code = "MISSING_REQUIRED_FIELD" if exc.missing else "INVALID_FIELD_VALUE"
        raise ApiError(code, exc.message, details={"field": exc.field}) from None
    return JsonResponse(await _wire(execution.id))


@router.get("/workflow/{execution_id}", response=dict, summary="A workflow's state and result")
async def workflow_status(request: HttpRequest, execution_id: str) -> JsonResponse:
    if not EXECUTION_ID_RE.match(execution_id):  # no id of ours looks otherwise
        raise ApiError("NOT_FOUND", "No such workflow execution.")
    return JsonResponse(await _wire(execution_id))


def _limit(request: HttpRequest, session_id: str) -> None:
    """A session's request limit covers its tool and workflow calls too (a malformed id is
    refused before it is counted)."""
    require_session_id(session_id)
    ip = client_ip(request)
    ratelimit.hit(
        ("session_burst", session_id),
        ("session_requests", session_id),
        session_id=session_id,
        client_ip=ip,
    )


async def _wire(execution_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        execution = WorkflowExecution.objects.filter(pk=execution_id).first()
        if execution is None:
            raise ApiError("NOT_FOUND", "No such workflow execution.")
        return execution_wire(execution)

    return await sync_to_async(read)()
