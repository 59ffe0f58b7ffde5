"""One turn of conversation, the same code for every transport (REST and WebSocket).

``run_turn`` is an async generator of events: guard → persist the user message → remember →
think (model chain) → persist the answer → deliver. Transports translate the events into their
own frames. Refusals before anything is stored are raised as ``ApiError``; failures after the
user message is stored are yielded as ``TurnFailed`` (the message stays, marked unanswered).

Every stored message is also published to the session's other sockets (``chat.events``) once it
is committed; ``origin`` names the socket that asked, which gets its own frames instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings

from chat import events
from chat.guards import GuardInput, run_guards
from chat.llm.base import CompletionRequest, Finish, ProviderError, TextDelta, ToolCallRequest
from chat.llm.chain import get_chain
from chat.memory import build_context, topic_of
from chat.models import Message
from chat.sessions import ms, session_get, validate_metadata
from chat.store import (
    AnswerRecord,
    TurnBusy,
    TurnReplay,
    TurnStarted,
    begin_turn,
    fail_turn,
    finish_turn,
    renew_lease,
)
from supportbot import metrics
from supportbot.db import refresh_kept_connections
from supportbot.errors import ApiError
from supportbot.ids import is_session_id, new_message_id

log = structlog.get_logger("chat.pipeline")

BUSY_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)
# Fan-out sends in flight (the event loop keeps only weak references to tasks).
_background: set[asyncio.Future[None]] = set()


@dataclass(frozen=True)
class UserMessageStored:
    message_id: str
    seq: int
    request_id: str | None


@dataclass(frozen=True)
class TokenDelta:
    message_id: str
    delta: str


@dataclass(frozen=True)
class TurnDone:
    """The stored answer, in the shape both transports report."""

    message_id: str
    seq: int
    session_id: str
    content: str
    timestamp: int
    processing_ms: int
    tool_calls: list[dict[str, Any]]
    model: str
    tokens_used: int
    fallback_used: bool
    citations: list[dict[str, str]] = field(default_factory=list)
    replayed: bool = False

    def rest_body(self) -> dict[str, Any]:
        """POST /api/chat's response (API.md), plus ``seq`` and ``citations``."""
        return {
            "response": self.content,
            "messageId": self.message_id,
            "sessionId": self.session_id,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "processingTime": self.processing_ms,
            "toolCalls": self.tool_calls,
            "metadata": {
                "aiModel": self.model,
                "tokensUsed": self.tokens_used,
                "fallbackUsed": self.fallback_used,
                "citations": self.citations,
            },
        }

    def ws_body(self) -> dict[str, Any]:
        """The WebSocket ``ai_response`` data (API.md), plus tokens, fallback and citations."""
        return {
            "content": self.content,
            "messageId": self.message_id,
            "seq": self.seq,
            "sessionId": self.session_id,
            "timestamp": self.timestamp,
            "toolCalls": self.tool_calls,
            "metadata": {
                "processingTime": self.processing_ms,
                "aiModel": self.model,
                "tokensUsed": self.tokens_used,
                "fallbackUsed": self.fallback_used,
                "citations": self.citations,
            },
        }


@dataclass(frozen=True)
class TurnFailed:
    """No (complete) answer: the user message is kept; ``error`` tells the client why."""

    error: ApiError
    user_message_id: str


TurnEvent = UserMessageStored | TokenDelta | TurnDone | TurnFailed


def done_from_message(message: Message, *, replayed: bool = False) -> TurnDone:
    return TurnDone(
        message_id=message.id,
        seq=message.seq,
        session_id=message.session_id,
        content=message.content,
        timestamp=ms(message.created_at) or 0,
        processing_ms=message.processing_ms or 0,
        tool_calls=message.tool_calls,
        model=message.model,
        tokens_used=message.total_tokens,
        fallback_used=message.fallback_used,
        citations=list(message.metadata.get("citations", [])),
        replayed=replayed,
    )


def _begin(
    *, session_id: str, content: str, request_id: str | None, metadata: dict[str, Any]
) -> tuple[TurnStarted | TurnReplay | TurnBusy, list[dict[str, Any]] | None]:
    """Start the turn and, in the same trip to the database thread, read the model's context.

    A context that cannot be read here is left to ``_think``, which records the failure.
    """
    refresh_kept_connections()
    outcome = begin_turn(
        session_id=session_id, content=content, request_id=request_id, metadata=metadata
    )
    if not isinstance(outcome, TurnStarted):
        return outcome, None
    try:
        return outcome, build_context(
            session_id=session_id, current=outcome.user, session=outcome.session
        )
    except Exception:
        log.warning("context_deferred", session_id=session_id, exc_info=True)
        return outcome, None


async def _acquire(
    *, session_id: str, content: str, request_id: str | None, metadata: dict[str, Any]
) -> tuple[TurnStarted | TurnReplay, list[dict[str, Any]] | None]:
    """Wait for this session's lease (another turn may be running), then start the turn."""
    deadline = time.monotonic() + settings.TURN_WAIT_SECONDS
    attempt = 0
    while True:
        outcome, context = await sync_to_async(_begin)(
            session_id=session_id, content=content, request_id=request_id, metadata=metadata
        )
        if not isinstance(outcome, TurnBusy):
            return outcome, context
        if time.monotonic() > deadline:
            raise ApiError(
                "CONCURRENT_LIMIT_EXCEEDED",
                "Another message of this session is still being answered.",
                retry_after=5,
            )
        await asyncio.sleep(BUSY_POLL_SECONDS[min(attempt, len(BUSY_POLL_SECONDS) - 1)])
        attempt += 1


async def _keep_lease(session_id: str, token: str) -> None:
    """Renew the turn's lease every third of its length until cancelled (the turn is over)."""
    while True:
        await asyncio.sleep(settings.TURN_LEASE_SECONDS / 3)
        try:
            if not await sync_to_async(renew_lease)(session_id=session_id, token=token):
                return
        except Exception:
            log.warning("lease_renewal_failed", session_id=session_id, exc_info=True)


def _queue_summary(session_id: str) -> None:
    from chat.tasks import summarize_session_task

    try:
        summarize_session_task.delay(session_id)
    except Exception:
        log.warning("summary_not_queued", session_id=session_id, exc_info=True)


def _finish(*, session_id: str, token: str, user: Message, answer: AnswerRecord) -> Message:
    # The topic search reads only: done before the write transaction, not inside it.
    topic = topic_of(user.content)
    message, due = finish_turn(
        session_id=session_id, token=token, user=user, answer=answer, topic=topic
    )
    if due:  # finish_turn has committed: the task sees the new messages
        _queue_summary(session_id)
    return message


async def run_turn(
    *,
    session_id: Any,
    content: Any,
    request_id: str | None = None,
    metadata: Any = None,
    client_ip: str = "",
    transport: str = "rest",
    origin: str | None = None,
    session_checked: bool = False,
) -> AsyncIterator[TurnEvent]:
    """Run one turn; see the module docstring for the order of things.

    ``session_checked``: the caller has just seen the session live (a socket connected to it),
    so only the id's form is checked here; starting the turn refuses it anyway if it has ended
    or expired since. Otherwise an unknown session is refused before the message is looked at.
    """
    started = time.perf_counter()
    if session_checked:
        if not is_session_id(session_id):
            raise ApiError("INVALID_SESSION", "The session id is malformed.")
    else:
        await sync_to_async(session_get)(session_id=session_id, allow_ended=False)
    if not isinstance(content, str):
        raise ApiError(
            "INVALID_FIELD_VALUE", "message must be a string.", details={"field": "message"}
        )
    meta = validate_metadata(metadata)
    verdict = run_guards(GuardInput(content, session_id, client_ip, transport))
    if not verdict.allowed:
        assert verdict.error is not None
        raise verdict.error

    start, context = await _acquire(
        session_id=session_id, content=verdict.text, request_id=request_id, metadata=meta
    )
    yield UserMessageStored(start.user.id, start.user.seq, start.user.request_id)
    if isinstance(start, TurnReplay):
        yield done_from_message(start.answer, replayed=True)
        return
    # Published while the model thinks; the answer is published after it, in order.
    published = asyncio.ensure_future(
        events.publish_messages(session_id, [start.user], origin=origin)
    )
    _background.add(published)
    published.add_done_callback(_background.discard)

    structlog.contextvars.bind_contextvars(session_id=session_id)
    lease = asyncio.ensure_future(_keep_lease(session_id, start.token))
    thinking = _think(session_id, start, context, started, origin, published)
    try:
        # aclosing: a consumer that stops early closes _think at once, which records the turn.
        async with contextlib.aclosing(thinking) as steps:
            async for event in steps:
                yield event
    finally:
        lease.cancel()


async def _think(
    session_id: str,
    start: TurnStarted,
    context: list[dict[str, Any]] | None,
    started: float,
    origin: str | None,
    published: asyncio.Future[None],
) -> AsyncGenerator[TurnEvent]:
    """Steps 3 to 6 of a started turn: remember, think, persist, deliver."""
    assistant_id = new_message_id()
    parts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    finish: Finish | None = None
    failure: ApiError | None = None
    model_started = time.perf_counter()
    try:
        if context is None:
            context = await sync_to_async(build_context)(session_id=session_id, current=start.user)
        request = CompletionRequest(
            messages=context,
            max_tokens=settings.LLM_MAX_TOKENS,
            temperature=settings.LLM_TEMPERATURE,
        )
        async for event in get_chain().stream(request):
            if isinstance(event, TextDelta):
                parts.append(event.text)
                yield TokenDelta(assistant_id, event.text)
            elif isinstance(event, ToolCallRequest):
                # Tools arrive with the tool registry; no tool schemas are offered yet, so a
                # call here is a model misbehaving: record it, run nothing.
                tool_calls.append(
                    {
                        "id": event.id,
                        "tool": event.name,
                        "arguments": event.arguments,
                        "status": "skipped",
                    }
                )
            elif isinstance(event, Finish):
                finish = event
        if finish is None or not "".join(parts).strip():
            failure = ApiError(
                "AI_SERVICE_UNAVAILABLE", "The assistant returned an empty answer.", retry_after=5
            )
    except ProviderError as exc:
        log.warning("turn_model_failed", kind=exc.kind, provider=exc.provider, partial=bool(parts))
        failure = ApiError(
            "AI_SERVICE_UNAVAILABLE",
            "The answer was interrupted." if parts else "The assistant is unavailable right now.",
            retry_after=5,
        )
    except BaseException:
        # The client went away (generator closed, task cancelled) or a bug: keep what we have.
        await _record_failure(
            session_id, start, assistant_id, parts, model_started, "INTERNAL_ERROR", origin
        )
        raise
    finally:
        elapsed_model = (time.perf_counter() - model_started) * 1000
        if finish is not None:
            metrics.record_model_call(
                provider=finish.provider,
                model=finish.model,
                ok=failure is None,
                latency_ms=elapsed_model,
                prompt_tokens=finish.usage.prompt_tokens,
                completion_tokens=finish.usage.completion_tokens,
            )

    if failure is not None:
        await _record_failure(
            session_id, start, assistant_id, parts, model_started, failure.code, origin
        )
        if parts:
            failure.details = {"messageId": assistant_id, "partialResponse": "".join(parts)}
        yield TurnFailed(failure, start.user.id)
        return

    assert finish is not None
    answer = AnswerRecord(
        message_id=assistant_id,
        content="".join(parts),
        complete=True,
        model=finish.model,
        fallback_used=finish.fallback_used,
        prompt_tokens=finish.usage.prompt_tokens,
        completion_tokens=finish.usage.completion_tokens,
        processing_ms=round((time.perf_counter() - started) * 1000),
        tool_calls=tool_calls,
        citations=[dict(c) for c in finish.citations],
    )
    stored = await sync_to_async(_finish)(
        session_id=session_id, token=start.token, user=start.user, answer=answer
    )
    await published
    await events.publish_messages(session_id, [stored], origin=origin)
    yield done_from_message(stored)


async def _record_failure(
    session_id: str,
    start: TurnStarted,
    assistant_id: str,
    parts: list[str],
    model_started: float,
    code: str,
    origin: str | None,
) -> None:
    """Keep a cut-off answer as incomplete, or mark the user message unanswered."""
    if parts:
        partial = AnswerRecord(
            message_id=assistant_id,
            content="".join(parts),
            complete=False,
            model="",
            fallback_used=False,
            prompt_tokens=0,
            completion_tokens=0,
            processing_ms=round((time.perf_counter() - model_started) * 1000),
            tool_calls=[],
            citations=[],
        )
        stored, _ = await asyncio.shield(
            sync_to_async(finish_turn)(
                session_id=session_id, token=start.token, user=start.user, answer=partial
            )
        )
        await events.publish_messages(session_id, [stored], origin=origin)
    else:
        await asyncio.shield(
            sync_to_async(fail_turn)(
                session_id=session_id, token=start.token, user_id=start.user.id, error_code=code
            )
        )
