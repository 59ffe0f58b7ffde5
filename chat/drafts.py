"""Replies drafted for the agent holding a conversation: prepared by the model chain (or the
offline assistant) from the conversation and the help centre, shown beside the agent's composer,
and never delivered by themselves. The agent sends one as is, edits it or discards it
(``chat.takeover``); the outcome is stored so the drafts' acceptance rate can be measured.

A draft is made in the background of the turn that forwarded the customer's message, so the
customer's message reaches the agent at once and the draft follows. One draft at a time per
session in this process: messages arriving while one is being made are drafted for together,
once it is done. A draft may search the help centre (``kb.search``) and nothing else: opening a
ticket is the agent's decision, not the draft's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings

from chat import events, wire
from chat.guards import current_allowlist, redact_text
from chat.llm.base import CompletionRequest, Finish, ProviderError, TextDelta, ToolCallRequest
from chat.llm.chain import get_chain
from chat.llm.offline import OFFLINE_NOTICE, OfflineAssistant
from chat.memory import build_context
from chat.models import Message, ReplyDraft
from supportbot.db import write_transaction
from tools.registry import ToolContext, registry

log = structlog.get_logger("chat.drafts")

DRAFT_TOOLS = ("kb.search",)
MAX_ROUNDS = 2  # one round with the search offered, one to write the reply
_running: dict[str, asyncio.Task[None]] = {}
_again: dict[str, str] = {}  # session id → the latest message that arrived while drafting


def draft_soon(*, session_id: str, message_id: str) -> None:
    """Draft a reply to the customer's latest message, in the background."""
    if not settings.HANDOFF_DRAFTS_ENABLED:
        return
    if session_id in _running:
        _again[session_id] = message_id
        return
    task = asyncio.ensure_future(_draft_loop(session_id, message_id))
    _running[session_id] = task


async def _draft_loop(session_id: str, message_id: str) -> None:
    try:
        while True:
            try:
                await make_draft(session_id=session_id, message_id=message_id)
            except Exception:
                log.warning("draft_failed", session_id=session_id, exc_info=True)
            following = _again.pop(session_id, None)
            if following is None:
                return
            message_id = following
    finally:
        _running.pop(session_id, None)


def _schemas() -> list[dict[str, Any]]:
    return [tool.schema() for tool in registry.all() if tool.name in DRAFT_TOOLS]


def _as_agent(text: str, citations: list[Any]) -> str:
    """The offline assistant's answer made fit for an agent to send: without its notice that no
    model is answering (the agent is a person), and no draft at all when it found nothing in the
    help centre (its fallback tells the customer to ask for a human, who is already here)."""
    if not citations:
        return ""
    paragraphs = [p for p in text.split("\n\n") if p.strip() and p.strip() != OFFLINE_NOTICE]
    return "\n\n".join(paragraphs).strip()


async def _compose(context: list[dict[str, Any]], session_id: str) -> tuple[str, list[Any], str]:
    """The draft's text, its citations and the model that wrote it."""
    messages = list(context)
    citations: list[dict[str, str]] = []
    model = ""
    provider = ""
    for round_number in range(MAX_ROUNDS):
        offer = _schemas() if round_number < MAX_ROUNDS - 1 else None
        request = CompletionRequest(
            messages=messages,
            max_tokens=settings.LLM_MAX_TOKENS,
            temperature=settings.LLM_TEMPERATURE,
            tools=offer or None,
        )
        parts: list[str] = []
        calls: list[ToolCallRequest] = []
        async for event in get_chain().stream(request):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, ToolCallRequest):
                calls.append(event)
            elif isinstance(event, Finish):
                model, provider = event.model, event.provider
                citations += [c for c in event.citations if c not in citations]
        if not calls or offer is None:
            text = "".join(parts).strip()
            if provider == OfflineAssistant.name:
                text = _as_agent(text, citations)
            return text, citations, model
        messages.append(
            {
                "role": "assistant",
                "content": "".join(parts) or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ],
            }
        )
        for call in calls:
            messages.append(await _tool_message(call, session_id, citations))
    return "", citations, model


async def _tool_message(
    call: ToolCallRequest, session_id: str, citations: list[dict[str, str]]
) -> dict[str, Any]:
    allowed = {tool.function_name: tool.name for tool in registry.all() if tool.name in DRAFT_TOOLS}
    if call.name not in allowed:
        content = json.dumps({"error": "Only the help-centre search is available for a draft."})
    else:
        outcome = await registry.execute(
            call_id=call.id,
            name=allowed[call.name],
            arguments=call.arguments,
            ctx=ToolContext(session_id=session_id),
        )
        citations += [c for c in outcome.citations if c not in citations]
        content = outcome.for_model()
    return {"role": "tool", "tool_call_id": call.id, "content": content}


async def make_draft(*, session_id: str, message_id: str) -> ReplyDraft:
    """Draft a reply to ``message_id`` and publish it to staff watching the session."""
    user = await Message.objects.filter(pk=message_id, session_id=session_id).afirst()
    if user is None:
        raise ValueError("no such message")
    try:
        context = await sync_to_async(build_context)(session_id=session_id, current=user)
        text, citations, model = await _compose(context, session_id)
    except ProviderError as exc:
        log.info("draft_model_unavailable", session_id=session_id, kind=exc.kind)
        text, citations, model = "", [], ""
    if text:
        allowlist = await sync_to_async(current_allowlist)()
        text = redact_text(text, allowlist, session_id=session_id, field="draft")
    return await sync_to_async(_store)(session_id, user, text, citations, model)


def _store(
    session_id: str, user: Message, text: str, citations: list[Any], model: str
) -> ReplyDraft:
    with write_transaction():
        draft = ReplyDraft.objects.create(
            session_id=session_id,
            for_message=user,
            content=text,
            citations=citations,
            model=model,
            outcome=ReplyDraft.Outcome.PENDING if text else ReplyDraft.Outcome.FAILED,
        )
        events.draft_on_commit(session_id, wire.reply_draft(draft))
    return draft
