"""The ``escalation`` workflow: summarise the conversation → open a ticket → hand the
conversation to the staff inbox and tell the customer the truth → mark the session escalated.
Undone in reverse order when a step fails for good (the ticket is cancelled, the escalation mark
removed).

The summary is the model's briefing for the agent when a model answers, otherwise whole sentences
of the customer's own messages (``chat.handoff_summary``): never a transcript tail cut mid-word
with the bot's disclaimers in it. The customer is told their place in the queue when someone can
answer, otherwise that nobody can right now and that the ticket carries their request — never a
promise that an agent will take over.

It runs in the tools' workflow engine, but its steps need the conversation, which tools know
only by a session id; so it lives here and ``chat.apps`` registers it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat.handoff import request_handoff
from chat.handoff_summary import handoff_summary, summarise_with_model
from chat.llm.offline import handoff_block
from chat.models import Handoff
from chat.sessions import session_get
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
    session_get(session_id=ctx.session_id)  # an unknown session fails here, before a ticket
    reason = str(ctx.parameters.get("query") or "").strip()
    model = summarise_with_model(session_id=ctx.session_id)
    summary = model or handoff_summary(session_id=ctx.session_id)
    return {"reason": reason, "summary": summary, "writtenBy": "model" if model else "extract"}


def _open_ticket(ctx: StepContext) -> dict[str, Any]:
    summary = ctx.results[0] or {}
    reason = summary.get("reason") or "The customer asked for a person."
    description = f"{reason}\n\nSummary:\n{summary.get('summary') or '(no messages yet)'}"
    arguments = {
        "title": ("Escalation: " + reason)[:200] if len(reason) >= 3 else "Escalation",
        "description": description[:4000],
        "priority": ctx.parameters.get("priority", "high"),
        "category": ctx.parameters.get("category", "general"),
    }
    return tool_result(call_tool(ctx, "create_ticket", arguments))


def _notify(ctx: StepContext) -> dict[str, Any]:
    ticket = ctx.results[1] or {}
    ticket_id = str(ticket.get("ticketId") or "")
    result = request_handoff(
        session_id=ctx.session_id,
        reason=Handoff.Reason.ESCALATION,
        priority=ctx.parameters.get("priority", "high"),
        note=str(ctx.parameters.get("query") or "")[:1000],
        ticket_id=ticket_id,
    )
    status = result.status
    flat = {**status, **(status.get("availability") or {})}
    text = handoff_block(flat, opened_ticket=ticket_id)
    post_system_message(session_id=ctx.session_id, content=text)
    return {"notified": True, "message": text, "handoffId": status.get("handoffId")}


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
