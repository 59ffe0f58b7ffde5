"""The ``escalation`` workflow: summarise the conversation → open a ticket → tell the session →
mark the session escalated. Undone in reverse order when a step fails for good (the ticket is
cancelled, the escalation mark removed).

It runs in the tools' workflow engine, but its steps need the conversation, which tools know
only by a session id; so it lives here and ``chat.apps`` registers it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat.sessions import conversation_text
from chat.store import post_system_message, session_mark_escalated
from tools.workflows.engine import (
    Step,
    StepContext,
    Workflow,
    call_tool,
    cancel_ticket,
    tool_result,
)


class EscalationParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: str = Field("", max_length=4000)
    priority: Literal["low", "medium", "high", "urgent"] = "high"
    category: str = Field("general", max_length=64)


def _summarise(ctx: StepContext) -> dict[str, Any]:
    transcript = conversation_text(ctx.session_id)
    reason = str(ctx.parameters.get("query") or "").strip()
    lines = [line for line in transcript.splitlines() if line.strip()]
    summary = "\n".join(lines[-12:])[-3000:]
    return {"reason": reason, "summary": summary, "messages": len(lines)}


def _open_ticket(ctx: StepContext) -> dict[str, Any]:
    summary = ctx.results[0] or {}
    reason = summary.get("reason") or "The customer asked for a human."
    description = f"{reason}\n\nConversation so far:\n{summary.get('summary') or '(empty)'}"
    arguments = {
        "title": ("Escalation: " + reason)[:200] if len(reason) >= 3 else "Escalation",
        "description": description[:4000],
        "priority": ctx.parameters.get("priority", "high"),
        "category": ctx.parameters.get("category", "general"),
    }
    return tool_result(call_tool(ctx, "create_ticket", arguments))


def _notify(ctx: StepContext) -> dict[str, Any]:
    ticket = ctx.results[1] or {}
    text = (
        f"A support agent will take over this conversation. Your ticket is "
        f"{ticket.get('ticketId')}; you can ask about it here at any time."
    )
    post_system_message(session_id=ctx.session_id, content=text)
    return {"notified": True, "message": text}


def _mark(ctx: StepContext) -> dict[str, Any]:
    ticket = ctx.results[1] or {}
    session_mark_escalated(session_id=ctx.session_id, ticket_id=ticket.get("ticketId"))
    return {"escalated": True, "ticketId": ticket.get("ticketId")}


def _unmark(ctx: StepContext, result: dict[str, Any]) -> None:
    session_mark_escalated(session_id=ctx.session_id, ticket_id=None)


ESCALATION = Workflow(
    "escalation",
    EscalationParameters,
    lambda p: [
        Step("summarise", _summarise),
        Step("create_ticket", _open_ticket, cancel_ticket),
        Step("notify", _notify),
        Step("mark_escalated", _mark, _unmark),
    ],
)
