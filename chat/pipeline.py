"""One turn of conversation, the same code for every transport (REST and WebSocket).

``run_turn`` is an async generator of events (``chat.turn_events``): guard → persist the user
message → remember → think (model chain, with tools) → persist the answer → deliver. Transports
translate the events into their own frames (``chat.wire``). Refusals before anything is stored
are raised as ``ApiError``; failures after the user message is stored are yielded as
``TurnFailed`` (the message stays, marked unanswered).

Every stored message is also published to the session's other sockets (``chat.events``) once it
is committed; ``origin`` names the socket that asked, which gets its own frames instead. The
guards are reached only through ``chat.guards``.
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
from chat.drafts import draft_soon
from chat.guards import (
    EMPTY_ALLOWLIST,
    WITHHELD_REPLY,
    Allowlist,
    Findings,
    GuardInput,
    ReplyGuard,
    admit_model_round,
    admit_tool_call,
    allowlist_for_async,
    limit_turn,
    record_findings,
    record_reply_findings,
    redact_json,
    reply_findings,
    screen_and_keep_blocked,
    spend_tokens,
)
from chat.llm.base import CompletionRequest, Finish, ProviderError, TextDelta, ToolCallRequest
from chat.llm.chain import get_chain
from chat.memory import build_context, load_prompt, topic_of
from chat.models import Message
from chat.sessions import session_get, validate_metadata
from chat.store import (
    AnswerRecord,
    TurnBusy,
    TurnHeld,
    TurnReplay,
    TurnStarted,
    begin_turn,
    fail_turn,
    finish_turn,
    keep_lease,
)
from chat.tasks import summarize_session_task
from chat.turn import Answer, Turn
from chat.turn_events import (
    TokenDelta,
    ToolStarted,
    TurnDone,
    TurnEvent,
    TurnFailed,
    UserMessageStored,
    done_from_message,
    held_turn,
)
from supportbot import metrics
from supportbot.db import refresh_kept_connections
from supportbot.errors import ApiError
from tools.registry import ToolContext, ToolNotFound, ToolOutcome, registry

log = structlog.get_logger("chat.pipeline")

BUSY_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)


# --- starting a turn: the session's lease and the user message --------------------------------


def _begin(
    *,
    session_id: str,
    content: str,
    request_id: str | None,
    metadata: dict[str, Any],
    findings: Findings | None = None,
    waited: bool = False,
) -> tuple[TurnStarted | TurnReplay | TurnBusy | TurnHeld, list[dict[str, Any]] | None]:
    """Start the turn and, in the same trip to the database thread, record what the guards
    found in the message and read the model's context.

    A context that cannot be read here is left to ``_think``, which records the failure.
    """
    if waited:  # the first attempt follows _require_live_session, which has just checked
        refresh_kept_connections()
    outcome = begin_turn(
        session_id=session_id, content=content, request_id=request_id, metadata=metadata
    )
    new_message = (isinstance(outcome, TurnStarted) and not outcome.retried) or (
        isinstance(outcome, TurnHeld) and not outcome.replayed
    )
    if findings and new_message:
        assert isinstance(outcome, TurnStarted | TurnHeld)
        try:
            record_findings(session_id=session_id, message_id=outcome.user.id, findings=findings)
        except Exception:
            log.exception("findings_not_recorded", session_id=session_id)
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
    *,
    session_id: str,
    content: str,
    request_id: str | None,
    metadata: dict[str, Any],
    findings: Findings | None = None,
) -> tuple[TurnStarted | TurnReplay | TurnHeld, list[dict[str, Any]] | None]:
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
            waited=attempt > 0,
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


def _queue_summary(session_id: str) -> None:
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
    record_reply_findings(session_id, message.id, findings, blocked)
    if due:  # finish_turn has committed: the task sees the new messages
        _queue_summary(session_id)
    return message


# --- the turn ----------------------------------------------------------------------------------


def _require_live_session(session_id: Any) -> None:
    """Refuse an unknown, expired or ended session. Runs first on the sockets' long-lived
    database thread too, so a connection the database dropped is replaced before it is used."""
    refresh_kept_connections()
    session_get(session_id=session_id, allow_ended=False)


@dataclass(frozen=True)
class _Admitted:
    """A message that passed the limits and the guards, ready to be stored."""

    text: str
    metadata: dict[str, Any]
    findings: Findings
    allowlist: Allowlist


async def _admit(
    *,
    session_id: Any,
    content: Any,
    request_id: str | None,
    metadata: Any,
    client_ip: str,
    transport: str,
) -> _Admitted:
    """Rate limits first (a refused request costs nothing else, not even a session read), then
    the session (an unknown or ended one is refused before the message is looked at), then the
    message's form and its guards."""
    limit_turn(session_id=session_id, client_ip=client_ip, transport=transport)
    await sync_to_async(_require_live_session)(session_id)
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
    return _Admitted(screened.text, meta, screened.findings, allowlist)


async def run_turn(
    *,
    session_id: Any,
    content: Any,
    request_id: str | None = None,
    metadata: Any = None,
    client_ip: str = "",
    transport: str = "rest",
    origin: str | None = None,
) -> AsyncIterator[TurnEvent]:
    """Run one turn; see the module docstring for the order of things."""
    started = time.perf_counter()
    admitted = await _admit(
        session_id=session_id,
        content=content,
        request_id=request_id,
        metadata=metadata,
        client_ip=client_ip,
        transport=transport,
    )
    start, context = await _acquire(
        session_id=session_id,
        content=admitted.text,
        request_id=request_id,
        metadata=admitted.metadata,
        findings=admitted.findings,
    )
    yield UserMessageStored(start.user.id, start.user.seq, start.user.request_id)
    if isinstance(start, TurnReplay):
        yield done_from_message(start.answer, replayed=True)
        return
    if isinstance(start, TurnHeld):
        yield await _forward_to_person(start, origin=origin, started=started)
        return
    # Published while the model thinks; the answer is published after it, in order. The turn
    # never waits on the fan-out (a Redis outage must not hold back or fail the answer).
    published = events.publish_soon(session_id, [start.user], origin=origin)
    turn = Turn(
        session_id,
        client_ip,
        origin,
        started,
        start,
        admitted.allowlist,
        published,
        transport=transport,
    )

    structlog.contextvars.bind_contextvars(session_id=session_id)
    lease = asyncio.ensure_future(keep_lease(session_id, start.token))
    try:
        # aclosing: a consumer that stops early closes _think at once, which records the turn.
        async with contextlib.aclosing(_think(turn, context)) as steps:
            async for event in steps:
                yield event
    finally:
        lease.cancel()


async def _forward_to_person(start: TurnHeld, *, origin: str | None, started: float) -> TurnDone:
    """A person holds the conversation: the stored message reaches them (their inbox and every
    socket watching the session), a draft reply is prepared for them, and the turn ends with the
    usual answer shape, empty, saying who has the conversation."""
    if not start.replayed:  # the inbox was told when the message was stored (store._forward)
        events.publish_soon(start.user.session_id, [start.user], origin=origin)
        draft_soon(session_id=start.user.session_id, message_id=start.user.id)
    return held_turn(
        start.user,
        agent_name=start.agent_name,
        processing_ms=round((time.perf_counter() - started) * 1000),
    )


# --- thinking: model rounds and tools ----------------------------------------------------------


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


@dataclass
class _Round:
    """What one model call produced: its raw text and the tools it called."""

    parts: list[str] = field(default_factory=list)
    calls: list[ToolCallRequest] = field(default_factory=list)


async def _model_round(
    turn: Turn, request: CompletionRequest, result: _Round
) -> AsyncGenerator[TokenDelta]:
    """One call of the model chain: its text streams through the reply guard into the answer;
    its usage is counted against the budgets and recorded as soon as it ends."""
    answer = turn.answer
    guard = answer.guard
    assert guard is not None
    round_started = time.perf_counter()
    finish: Finish | None = None
    answered_by = answer.finish.provider if answer.finish else None
    async for event in get_chain().stream(request, start_at=answered_by):
        if isinstance(event, TextDelta):
            result.parts.append(event.text)
            safe = guard.feed(event.text)
            if safe:
                answer.parts.append(safe)
                if turn.first_token is None:
                    turn.first_token = time.perf_counter()
                yield TokenDelta(answer.message_id, safe)
        elif isinstance(event, ToolCallRequest):
            result.calls.append(event)
        elif isinstance(event, Finish):
            finish = event
    tail = guard.end_round()
    if tail:
        answer.parts.append(tail)
        yield TokenDelta(answer.message_id, tail)
    if finish is None:
        return
    usage = finish.usage
    answer.finish = finish
    answer.prompt_tokens += usage.prompt_tokens
    answer.completion_tokens += usage.completion_tokens
    spend_tokens(
        session_id=turn.session_id,
        client_ip=turn.client_ip,
        tokens=usage.prompt_tokens + usage.completion_tokens,
    )
    answer.cite(finish.citations)
    cost = metrics.token_cost(finish.model, usage.prompt_tokens, usage.completion_tokens)
    if cost is None:
        answer.unpriced = True
    else:
        answer.cost_usd += cost
    metrics.record_model_call(
        provider=finish.provider,
        model=finish.model,
        ok=True,
        latency_ms=(time.perf_counter() - round_started) * 1000,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        fallback=finish.fallback_used,
    )


async def _run_tools(
    turn: Turn, calls: list[ToolCallRequest], messages: list[dict[str, Any]]
) -> AsyncGenerator[ToolStarted]:
    """Run the tools the model called, each taking a unit of the global tool executions; their
    results go back to the model as ``tool`` messages."""
    answer = turn.answer
    ctx = ToolContext(session_id=turn.session_id, request_id=turn.request_id or turn.start.user.id)
    for call in calls:
        try:
            progress = registry.get(call.name).progress
        except ToolNotFound:
            progress = "working on it…"
        yield ToolStarted(call.id, call.name, progress)
        try:
            admit_tool_call(session_id=turn.session_id)
        except ApiError as refused:
            outcome = _tool_refused(call, refused)
        else:
            outcome = await registry.execute(
                call_id=call.id, name=call.name, arguments=call.arguments, ctx=ctx
            )
        answer.tool_calls.append(outcome.wire())
        answer.consider(outcome.citations)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.for_model()})


async def _rounds(
    turn: Turn, context: list[dict[str, Any]]
) -> AsyncGenerator[TokenDelta | ToolStarted]:
    """Ask the model; run the tools it calls and feed the results back, for at most
    ``TOOL_MAX_ROUNDS`` rounds (the last request offers no tools, so it must answer).

    The answer streams through a ``ReplyGuard`` (PII redacted, system-prompt leakage stopped);
    later rounds and every tool execution take a unit of the global limits.
    """
    answer = turn.answer
    guard = answer.guard = ReplyGuard(
        allowlist=turn.allowlist,
        system_prompt=load_prompt("system"),
        redact=settings.PII_REDACTION_ENABLED,
    )
    messages = list(context)
    schemas = registry.schemas()
    for round_number in range(settings.TOOL_MAX_ROUNDS + 1):
        offer_tools = bool(schemas) and round_number < settings.TOOL_MAX_ROUNDS
        request = CompletionRequest(
            messages=messages,
            max_tokens=settings.LLM_MAX_TOKENS,
            temperature=settings.LLM_TEMPERATURE,
            tools=schemas if offer_tools else None,
        )
        if round_number > 0:
            admit_model_round(session_id=turn.session_id)
        result = _Round()
        async with contextlib.aclosing(_model_round(turn, request, result)) as deltas:
            async for delta in deltas:
                yield delta
        if guard.leak is not None:
            # The answer began to reveal the instructions: withhold it, run none of its calls.
            answer.parts = [WITHHELD_REPLY]
            return
        if not result.calls:
            return
        if not offer_tools:
            # Called tools although none were offered: record the calls, run nothing.
            answer.tool_calls += [
                {"id": c.id, "tool": c.name, "arguments": c.arguments, "status": "skipped"}
                for c in result.calls
            ]
            return
        messages.append(_assistant_call_message("".join(result.parts), result.calls))
        async with contextlib.aclosing(_run_tools(turn, result.calls, messages)) as started:
            async for tool in started:
                yield tool


# --- ending a turn: the stored answer, or what is kept of a failed one -------------------------


def _model_failure(turn: Turn, exc: ProviderError, model_started: float) -> ApiError:
    """Every model of the chain failed: record it, keep what was streamed, say why."""
    answer = turn.answer
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
    return ApiError(
        "AI_SERVICE_UNAVAILABLE",
        "The answer was interrupted."
        if answer.parts
        else "The assistant is unavailable right now.",
        retry_after=5,
    )


async def _think(turn: Turn, context: list[dict[str, Any]] | None) -> AsyncGenerator[TurnEvent]:
    """Steps 3 to 6 of a started turn: remember, think (with tools), persist, deliver."""
    answer = turn.answer
    failure: ApiError | None = None
    model_started = time.perf_counter()
    try:
        if context is None:
            context = await sync_to_async(build_context)(
                session_id=turn.session_id, current=turn.start.user
            )
        async with contextlib.aclosing(_rounds(turn, context)) as steps:
            async for step in steps:
                yield step
        if answer.finish is None or not answer.text.strip():
            failure = ApiError(
                "AI_SERVICE_UNAVAILABLE", "The assistant returned an empty answer.", retry_after=5
            )
    except ProviderError as exc:
        failure = _model_failure(turn, exc, model_started)
    except ApiError as exc:  # a global limit refused a later round
        failure = exc
    except BaseException as exc:
        # The client went away (generator closed, task cancelled) or a bug: keep what we have.
        _keep_held_back(answer)
        gone = isinstance(exc, GeneratorExit | asyncio.CancelledError)
        turn.measure("CLIENT_GONE" if gone else "INTERNAL_ERROR")
        await _record_failure(turn, model_started, "INTERNAL_ERROR")
        raise

    if failure is not None:
        turn.measure(failure.code)
        await _record_failure(turn, model_started, failure.code)
        if answer.parts:
            failure.details = {"messageId": answer.message_id, "partialResponse": answer.text}
        yield TurnFailed(failure, turn.start.user.id)
        return
    turn.measure("")
    yield done_from_message(await _store_answer(turn))


async def _store_answer(turn: Turn) -> Message:
    """Persist the complete answer with what the reply guard found, and publish it."""
    answer = turn.answer
    record = answer.record(
        complete=True, processing_ms=round((time.perf_counter() - turn.started) * 1000)
    )
    findings, blocked = (None, None)
    if answer.guard is not None:
        findings, blocked = reply_findings(
            answer.guard,
            text=answer.text,
            session_id=turn.start.user.session_id,
            request_id=turn.request_id,
            client_ip=turn.client_ip,
        )
    stored = await sync_to_async(_finish)(
        session_id=turn.session_id,
        token=turn.start.token,
        user=turn.start.user,
        answer=record,
        findings=findings,
        blocked=blocked,
    )
    turn.publish(stored)
    return stored


def _keep_held_back(answer: Answer) -> None:
    """A cut-off answer keeps the (redacted) text the reply guard was still holding back."""
    if answer.guard is not None and answer.guard.leak is None:
        tail = answer.guard.end_round()
        if tail:
            answer.parts.append(tail)


async def _record_failure(turn: Turn, model_started: float, code: str) -> None:
    """Keep a cut-off answer as incomplete (with the tools it ran), or mark the user message
    unanswered."""
    answer, start = turn.answer, turn.start
    if answer.parts or answer.tool_calls:
        partial = answer.record(
            complete=False, processing_ms=round((time.perf_counter() - model_started) * 1000)
        )
        stored, _ = await asyncio.shield(
            sync_to_async(finish_turn)(
                session_id=turn.session_id, token=start.token, user=start.user, answer=partial
            )
        )
        turn.publish(stored)
    else:
        await asyncio.shield(
            sync_to_async(fail_turn)(
                session_id=turn.session_id,
                token=start.token,
                user_id=start.user.id,
                error_code=code,
            )
        )
