"""The built-in tools: knowledge search, open a ticket, look up a ticket's status.

Registered in ``tools.apps.ToolsConfig.ready``. Each is a ``Tool`` of ``tools.registry``: the
``Args`` model is the schema the model sees, so field descriptions are written for the model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from tools.kb.search import MAX_RESULTS_LIMIT, RELEVANCE_FLOOR, search_articles
from tools.registry import Tool, ToolContext, ToolFailure, ToolRegistry, ToolResult
from tools.tickets import TicketData, TicketNotFound, ticket_create, ticket_for_session, ticket_wire

MAX_METADATA_CHARS = 4096


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class KbSearchArgs(_Args):
    query: str = Field(
        min_length=1, max_length=500, description="What to look up, in the customer's words."
    )
    maxResults: int = Field(3, ge=1, le=MAX_RESULTS_LIMIT, description="How many articles.")
    category: str | None = Field(
        None, max_length=64, description="Only this category (account, billing, sync, …)."
    )


class KbSearchTool(Tool):
    name = "kb.search"
    function_name = "kb_search"
    description = (
        "Search the Nimbus help centre. Use it for any question about the product, the "
        "account, billing, sync, sharing or security before answering; cite what you use."
    )
    Args = KbSearchArgs
    timeout_seconds = 5.0
    progress = "searching the knowledge base…"

    async def run(self, args: KbSearchArgs, ctx: ToolContext) -> ToolResult:
        result = await sync_to_async(search_articles)(
            query=args.query, max_results=args.maxResults, category=args.category
        )
        hits = [hit for hit in result.hits if hit.relevance >= RELEVANCE_FLOOR]
        return ToolResult(
            data={
                "results": [
                    {
                        "id": hit.id,
                        "title": hit.title,
                        "url": hit.url,
                        "category": hit.category,
                        "relevance": hit.relevance,
                        "passage": hit.passage,
                    }
                    for hit in hits
                ],
                "totalResults": len(hits),
            },
            citations=tuple({"id": h.id, "title": h.title, "url": h.url} for h in hits),
        )


class CreateTicketArgs(_Args):
    title: str = Field(min_length=3, max_length=200, description="A short summary of the issue.")
    description: str = Field(
        min_length=3,
        max_length=4000,
        description="What happened, when, error codes and devices, as the customer said.",
    )
    priority: Literal["low", "medium", "high", "urgent"] = Field(
        "medium", description="urgent only when work is blocked for many people."
    )
    category: str = Field("general", max_length=64, description="account, billing, sync, …")
    userEmail: str | None = Field(
        None, max_length=254, description="The customer's email, only if they gave it."
    )

    # For API clients (POST /api/tools/ticket); not offered to the model.
    metadata: SkipJsonSchema[dict[str, Any] | None] = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, default=str)) > MAX_METADATA_CHARS:
            raise ValueError(f"metadata is larger than {MAX_METADATA_CHARS} characters of JSON")
        return value

    @field_validator("userEmail")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value:
            try:
                validate_email(value)
            except ValidationError:
                raise ValueError("not an email address") from None
        return value or None


class CreateTicketTool(Tool):
    name = "create_ticket"
    function_name = "create_ticket"
    description = (
        "Open a support ticket for this conversation when the customer asks for one or the "
        "problem needs a human. Tell the customer the ticket id and the expected resolution."
    )
    Args = CreateTicketArgs
    progress = "creating a ticket…"

    async def run(self, args: CreateTicketArgs, ctx: ToolContext) -> ToolResult:
        if not ctx.session_id:
            raise ToolFailure("Tickets need a conversation.", permanent=True)
        data = TicketData(
            title=args.title,
            description=args.description,
            priority=args.priority,
            category=args.category.lower() or "general",
            user_email=str(args.userEmail or ""),
            metadata=args.metadata or {},
        )
        # One ticket per request and title: a retried turn or workflow step gets the same one.
        key = None
        if ctx.request_id:
            seed = f"{ctx.session_id}\0{ctx.request_id}\0{args.title}".encode()
            key = "call:" + hashlib.sha256(seed).hexdigest()
        ticket, _ = await sync_to_async(ticket_create)(
            session_id=ctx.session_id, data=data, idempotency_key=key, author="assistant"
        )
        return ToolResult(data={"ticketId": ticket.id, **ticket_wire(ticket)})


class FetchStatusArgs(_Args):
    ticketId: str = Field(
        pattern=r"^[Tt][Kk][Tt]-[A-Za-z0-9]{4,16}$", description="The ticket id, e.g. TKT-7QK2M9PX."
    )


class FetchStatusTool(Tool):
    name = "fetch_status"
    function_name = "fetch_status"
    description = "Look up the status and history of one of this conversation's tickets."
    Args = FetchStatusArgs
    progress = "checking the ticket…"

    async def run(self, args: FetchStatusArgs, ctx: ToolContext) -> ToolResult:
        if not ctx.session_id:
            raise ToolFailure("Tickets need a conversation.", permanent=True)
        try:
            ticket = await sync_to_async(ticket_for_session)(
                session_id=ctx.session_id, ticket_id=args.ticketId
            )
        except TicketNotFound:
            raise ToolFailure(
                f"No ticket {args.ticketId.upper()} was found for this conversation.",
                permanent=True,
                code="NOT_FOUND",
            ) from None
        wire = await sync_to_async(ticket_wire)(ticket, updates=True)
        return ToolResult(data={"ticketId": ticket.id, **wire})


def register_builtin(registry: ToolRegistry) -> None:
    for tool in (KbSearchTool(), CreateTicketTool(), FetchStatusTool()):
        registry.register(tool)
