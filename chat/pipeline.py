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
from chat.guards import (
    GuardInput,
    limit_turn,
    ratelimit,
    redact_json,
    screen_and_keep_blocked,
)
from chat.guards.pii import EMPTY_ALLOWLIST, Allowlist, Redaction, redact_pii
from chat.guards.reply import WITHHELD_REPLY, ReplyGuard
from chat.guards.review import Findings, allowlist_for_async, record_block, record_findings
from chat.guards.security import security_event
from chat.llm.base import CompletionRequest, Finish, ProviderError, TextDelta, ToolCallRequest
from chat.llm.chain import get_chain
from chat.memory import build_context, load_prompt, topic_of
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
from tools.registry import ToolContext, ToolNotFound, ToolOutcome, registry

log = structlog.get_logger("chat.pipeline")

BUSY_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)


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


@dataclass(frozen=True)
class ToolStarted:
    """A tool call is about to run; ``progress`` is what the user is shown meanwhile."""

    call_id: str
    tool: str
    progress: str


TurnEvent = UserMessageStored | TokenDelta | ToolStarted | TurnDone | TurnFailed


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
    *,
    session_id: str,
    content: str,
    request_id: str | None,
    metadata: dict[str, Any],
    findings: Findings | None = None,
) -> tuple[TurnStarted | TurnReplay | TurnBusy, list[dict[str, Any]] | None]:
    """Start the turn and, in the same trip to the database thread, record what the guards
    found in the message and read the model's context.

    A context that cannot be read here is left to ``_think``, which records the failure.
    """
    refresh_kept_connections()
    outcome = begin_turn(
        session_id=session_id, content=content, request_id=request_id, metadata=metadata
    )
    if not isinstance(outcome, TurnStarted):
        return outcome, None
    if findings and not outcome.retried:
        try:
            record_findings(session_id=session_id, message_id=outcome.user.id, findings=findings)
        except Exception:
            log.exception("findings_not_recorded", session_id=session_id)
    try:
        return outcome, build_context(
            session_id=session_id, current=outcome.user, session=outcome.session
        )
    except Exception:
        log.warning("context_deferred", session_id=session_id, exc_info=True)
        return outcome, None


async def _acquire(
    *,
    session_id: str,
    content: str,
    request_id: str | None,
    metadata: dict[str, Any],
    findings: Findings | None = None,
) -> tuple[TurnStarted | TurnReplay, list[dict[str, Any]] | None]:
    """Wait for this session's lease (another turn may be running), then start the turn."""
    deadline = time.monotonic() + settings.TURN_WAIT_SECONDS
    attempt = 0
    while True:
        outcome, context = await sync_to_async(_begin)(
            session_id=session_id,
            content=content,
            request_id=request_id,
            metadata=metadata,
            findings=findings,
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


def _finish(
    *,
    session_id: str,
    token: str,
    user: Message,
    answer: AnswerRecord,
    findings: Findings | None = None,
    blocked: Findings | None = None,
) -> Message:
    # The topic search reads only: done before the write transaction, not inside it.
    topic = topic_of(user.content)
    message, due = finish_turn(
        session_id=session_id, token=token, user=user, answer=answer, topic=topic
    )
    _record_reply_findings(session_id, message.id, findings, blocked)
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
    # Rate limits first: a refused request costs nothing else (not even a session read).
    limit_turn(session_id=session_id, client_ip=client_ip, transport=transport)
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
    allowlist = await allowlist_for_async() if settings.PII_REDACTION_ENABLED else EMPTY_ALLOWLIST
    meta = redact_json(meta, allowlist, session_id=session_id, field="metadata")
    screened = await screen_and_keep_blocked(
        GuardInput(content, session_id, client_ip, transport, request_id or ""), allowlist
    )
    findings = screened.findings

    start, context = await _acquire(
        session_id=session_id,
        content=screened.text,
        request_id=request_id,
        metadata=meta,
        findings=findings,
    )
    yield UserMessageStored(start.user.id, start.user.seq, start.user.request_id)
    if isinstance(start, TurnReplay):
        yield done_from_message(start.answer, replayed=True)
        return
    # Published while the model thinks; the answer is published after it, in order. The turn
    # never waits on the fan-out (a Redis outage must not hold back or fail the answer).
    published = events.publish_soon(session_id, [start.user], origin=origin)

    structlog.contextvars.bind_contextvars(session_id=session_id)
    lease = asyncio.ensure_future(_keep_lease(session_id, start.token))
    thinking = _think(session_id, start, context, started, origin, published, client_ip, allowlist)
    try:
        # aclosing: a consumer that stops early closes _think at once, which records the turn.
        async with contextlib.aclosing(thinking) as steps:
            async for event in steps:
                yield event
    finally:
        lease.cancel()


@dataclass
class _Answer:
    """What a turn's model rounds have produced so far."""

    message_id: str
    parts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish: Finish | None = None
    guard: ReplyGuard | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def cite(self, citations: Any) -> None:
        seen = {c.get("id") for c in self.citations}
        for citation in citations:
            if citation.get("id") not in seen:
                seen.add(citation.get("id"))
                self.citations.append(dict(citation))


def _assistant_call_message(text: str, calls: list[ToolCallRequest]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }


def _spend_tokens(session_id: str, client_ip: str, tokens: int) -> None:
    """Count a model call's real usage against the session's and the client's budgets."""
    ratelimit.spend("session_tokens", session_id, tokens)
    ratelimit.spend("ip_tokens", ratelimit.client_label(client_ip), tokens)


def _tool_refused(call: ToolCallRequest, error: ApiError) -> ToolOutcome:
    return ToolOutcome(
        call_id=call.id,
        tool=call.name,
        arguments=call.arguments,
        status="failed",
        attempts=0,
        execution_ms=0,
        error={"code": error.code, "message": error.message},
    )


async def _rounds(
    session_id: str,
    start: TurnStarted,
    context: list[dict[str, Any]],
    answer: _Answer,
    client_ip: str = "",
    allowlist: Allowlist = EMPTY_ALLOWLIST,
) -> AsyncGenerator[TokenDelta | ToolStarted]:
    """Ask the model; run the tools it calls and feed the results back, for at most
    ``TOOL_MAX_ROUNDS`` rounds (the last request offers no tools, so it must answer).

    The answer streams through a ``ReplyGuard`` (PII redacted, system-prompt leakage stopped);
    each call's tokens are counted against the budgets as soon as it ends; later rounds and
    every tool execution take a unit of the global limits.
    """
    guard = answer.guard = ReplyGuard(
        allowlist=allowlist,
        system_prompt=load_prompt("system"),
        redact=settings.PII_REDACTION_ENABLED,
    )
    messages = list(context)
    schemas = registry.schemas()
    tool_ctx = ToolContext(session_id=session_id, request_id=start.user.request_id or start.user.id)
    for round_number in range(settings.TOOL_MAX_ROUNDS + 1):
        offer_tools = bool(schemas) and round_number < settings.TOOL_MAX_ROUNDS
        request = CompletionRequest(
            messages=messages,
            max_tokens=settings.LLM_MAX_TOKENS,
            temperature=settings.LLM_TEMPERATURE,
            tools=schemas if offer_tools else None,
        )
        calls: list[ToolCallRequest] = []
        round_parts: list[str] = []
        round_started = time.perf_counter()
        finish: Finish | None = None
        if round_number > 0:
            ratelimit.hit(("global_model_calls", ratelimit.GLOBAL), session_id=session_id)
        answered_by = answer.finish.provider if answer.finish else None
        async for event in get_chain().stream(request, start_at=answered_by):
            if isinstance(event, TextDelta):
                round_parts.append(event.text)
                safe = guard.feed(event.text)
                if safe:
                    answer.parts.append(safe)
                    yield TokenDelta(answer.message_id, safe)
            elif isinstance(event, ToolCallRequest):
                calls.append(event)
            elif isinstance(event, Finish):
                finish = event
        tail = guard.end_round()
        if tail:
            answer.parts.append(tail)
            yield TokenDelta(answer.message_id, tail)
        if finish is not None:
            answer.finish = finish
            answer.prompt_tokens += finish.usage.prompt_tokens
            answer.completion_tokens += finish.usage.completion_tokens
            _spend_tokens(
                session_id, client_ip, finish.usage.prompt_tokens + finish.usage.completion_tokens
            )
            answer.cite(finish.citations)
            metrics.record_model_call(
                provider=finish.provider,
                model=finish.model,
                ok=True,
                latency_ms=(time.perf_counter() - round_started) * 1000,
                prompt_tokens=finish.usage.prompt_tokens,
                completion_tokens=finish.usage.completion_tokens,
            )
        if guard.leak is not None:
            # The answer began to reveal the instructions: withhold it, run none of its calls.
            answer.parts = [WITHHELD_REPLY]
            return
        if not calls:
            return
        if not offer_tools:
            # Called tools although none were offered: record the calls, run nothing.
            answer.tool_calls += [
                {"id": c.id, "tool": c.name, "arguments": c.arguments, "status": "skipped"}
                for c in calls
            ]
            return
        messages.append(_assistant_call_message("".join(round_parts), calls))
        for call in calls:
            try:
                progress = registry.get(call.name).progress
            except ToolNotFound:
                progress = "working on it…"
            yield ToolStarted(call.id, call.name, progress)
            try:
                ratelimit.hit(("global_tool_executions", ratelimit.GLOBAL), session_id=session_id)
            except ApiError as refused:
                outcome = _tool_refused(call, refused)
            else:
                outcome = await registry.execute(
                    call_id=call.id, name=call.name, arguments=call.arguments, ctx=tool_ctx
                )
            answer.tool_calls.append(outcome.wire())
            answer.cite(outcome.citations)
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": outcome.for_model()}
            )


async def _think(
    session_id: str,
    start: TurnStarted,
    context: list[dict[str, Any]] | None,
    started: float,
    origin: str | None,
    published: asyncio.Future[None],
    client_ip: str = "",
    allowlist: Allowlist = EMPTY_ALLOWLIST,
) -> AsyncGenerator[TurnEvent]:
    """Steps 3 to 6 of a started turn: remember, think (with tools), persist, deliver."""
    answer = _Answer(message_id=new_message_id())
    failure: ApiError | None = None
    model_started = time.perf_counter()
    try:
        if context is None:
            context = await sync_to_async(build_context)(session_id=session_id, current=start.user)
        rounds = _rounds(session_id, start, context, answer, client_ip, allowlist)
        async with contextlib.aclosing(rounds) as steps:
            async for step in steps:
                yield step
        if answer.finish is None or not answer.text.strip():
            failure = ApiError(
                "AI_SERVICE_UNAVAILABLE", "The assistant returned an empty answer.", retry_after=5
            )
    except ProviderError as exc:
        _keep_held_back(answer)
        log.warning(
            "turn_model_failed", kind=exc.kind, provider=exc.provider, partial=bool(answer.parts)
        )
        metrics.record_model_call(
            provider=exc.provider,
            model="",
            ok=False,
            latency_ms=(time.perf_counter() - model_started) * 1000,
            prompt_tokens=0,
            completion_tokens=0,
        )
        failure = ApiError(
            "AI_SERVICE_UNAVAILABLE",
            "The answer was interrupted."
            if answer.parts
            else "The assistant is unavailable right now.",
            retry_after=5,
        )
    except ApiError as exc:  # a global limit refused a later round
        failure = exc
    except BaseException:
        # The client went away (generator closed, task cancelled) or a bug: keep what we have.
        _keep_held_back(answer)
        await _record_failure(
            session_id, start, answer, model_started, "INTERNAL_ERROR", origin, published
        )
        raise

    if failure is not None:
        await _record_failure(
            session_id, start, answer, model_started, failure.code, origin, published
        )
        if answer.parts:
            failure.details = {"messageId": answer.message_id, "partialResponse": answer.text}
        yield TurnFailed(failure, start.user.id)
        return

    finish = answer.finish
    assert finish is not None
    record = AnswerRecord(
        message_id=answer.message_id,
        content=answer.text,
        complete=True,
        model=finish.model,
        fallback_used=finish.fallback_used,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        processing_ms=round((time.perf_counter() - started) * 1000),
        tool_calls=answer.tool_calls,
        citations=answer.citations,
    )
    findings, blocked = _reply_findings(answer, start, client_ip)
    stored = await sync_to_async(_finish)(
        session_id=session_id,
        token=start.token,
        user=start.user,
        answer=record,
        findings=findings,
        blocked=blocked,
    )
    events.publish_soon(session_id, [stored], origin=origin, after=published)
    yield done_from_message(stored)


def _keep_held_back(answer: _Answer) -> None:
    """A cut-off answer keeps the (redacted) text the reply guard was still holding back."""
    if answer.guard is not None and answer.guard.leak is None:
        tail = answer.guard.end_round()
        if tail:
            answer.parts.append(tail)


async def _record_failure(
    session_id: str,
    start: TurnStarted,
    answer: _Answer,
    model_started: float,
    code: str,
    origin: str | None,
    published: asyncio.Future[None],
) -> None:
    """Keep a cut-off answer as incomplete (with the tools it ran), or mark the user message
    unanswered."""
    if answer.parts or answer.tool_calls:
        partial = AnswerRecord(
            message_id=answer.message_id,
            content=answer.text,
            complete=False,
            model=answer.finish.model if answer.finish else "",
            fallback_used=False,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            processing_ms=round((time.perf_counter() - model_started) * 1000),
            tool_calls=answer.tool_calls,
            citations=answer.citations,
        )
        stored, _ = await asyncio.shield(
            sync_to_async(finish_turn)(
                session_id=session_id, token=start.token, user=start.user, answer=partial
            )
        )
        events.publish_soon(session_id, [stored], origin=origin, after=published)
    else:
        await asyncio.shield(
            sync_to_async(fail_turn)(
                session_id=session_id, token=start.token, user_id=start.user.id, error_code=code
            )
        )


def _reply_findings(
    answer: _Answer, start: TurnStarted, client_ip: str
) -> tuple[Findings | None, Findings | None]:
    """What the reply guard found: PII redacted from the answer, and a withheld (leaking) one."""
    guard = answer.guard
    if guard is None:
        return None, None
    request_id = start.user.request_id or ""
    findings = None
    if guard.matches:
        findings = Findings(
            direction="output",
            redaction=guard.redaction(answer.text),
            original=guard.raw_text,
            request_id=request_id,
            client_ip=client_ip,
        )
        security_event(
            "pii_redacted",
            direction="output",
            kinds=sorted({m.kind for m in guard.matches}),
            count=len(guard.matches),
            session_id=start.user.session_id,
            client_ip=client_ip,
            request_id=request_id,
        )
    blocked = None
    if guard.leak is not None:
        redacted = redact_pii(guard.raw_text, guard.allowlist).text
        blocked = Findings(
            direction="output",
            redaction=Redaction(text=redacted, matches=()),
            content=guard.leak,
            request_id=request_id,
            client_ip=client_ip,
        )
        security_event(
            "reply_blocked",
            direction="output",
            categories=list(guard.leak.categories),
            reasons=list(guard.leak.reasons),
            session_id=start.user.session_id,
            client_ip=client_ip,
            request_id=request_id,
        )
    return findings, blocked


def _record_reply_findings(
    session_id: str, message_id: str, findings: Findings | None, blocked: Findings | None
) -> None:
    try:
        if findings:
            record_findings(session_id=session_id, message_id=message_id, findings=findings)
        if blocked is not None and blocked.content is not None and blocked.redaction is not None:
            record_block(
                session_id=session_id,
                text=blocked.redaction.text,
                verdict=blocked.content,
                direction="output",
                message_id=message_id,
                request_id=blocked.request_id,
                client_ip=blocked.client_ip,
            )
    except Exception:
        log.exception("findings_not_recorded", session_id=session_id)
