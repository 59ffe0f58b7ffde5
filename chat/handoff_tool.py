"""The ``request_human`` tool: the model (or the offline assistant) asks for a person on the
customer's behalf. It lives in ``chat`` because hand-offs are the conversation's; ``chat.apps``
registers it with the tools' registry."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from pydantic import BaseModel, ConfigDict, Field

from chat.handoff import request_handoff
from chat.models import Handoff
from tools.registry import Tool, ToolContext, ToolFailure, ToolResult


class RequestHumanArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str | None = Field(
        None,
        max_length=1000,
        description="What the customer needs a person for, in their words (optional).",
    )


def for_the_model(status: dict[str, Any]) -> dict[str, Any]:
    """The customer's hand-off status, flattened to what an answer should say."""
    availability = status.get("availability") or {}
    return {
        "status": status.get("status"),
        "humansAvailable": availability.get("humansAvailable", False),
        "position": status.get("position"),
        "typicalWaitSeconds": status.get("typicalWaitSeconds"),
        "nextOpenText": availability.get("nextOpenText"),
        "ticketId": status.get("ticketId"),
        "contactGiven": status.get("contactGiven", False),
        "agent": status.get("agent"),
        "instructions": (
            "Tell the customer their place in the queue and the typical wait; you may keep "
            "helping meanwhile."
            if availability.get("humansAvailable")
            else "No person can answer now: say so honestly, say when the team is back if "
            "known, and offer a ticket — the page shows a form for their email address. Never "
            "promise that someone will join."
        ),
    }


class RequestHumanTool(Tool):
    name = "request_human"
    function_name = "request_human"
    description = (
        "Hand the conversation to a person from the support team. Use it when the customer asks "
        "for a human, or when you cannot help and they want more than a ticket. The result says "
        "whether anyone is available now (queue position and typical wait) or not (then offer "
        "a ticket)."
    )
    Args = RequestHumanArgs
    timeout_seconds = 5.0
    progress = "asking for a person from the support team…"

    async def run(self, args: RequestHumanArgs, ctx: ToolContext) -> ToolResult:
        if not ctx.session_id:
            raise ToolFailure("A person can only be asked for from a conversation.", permanent=True)
        result = await sync_to_async(request_handoff)(
            session_id=ctx.session_id, reason=Handoff.Reason.CUSTOMER, note=args.reason or ""
        )
        return ToolResult(data=for_the_model(result.status))
