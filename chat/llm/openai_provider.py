"""A model link on any OpenAI-compatible endpoint (OpenAI, Workers AI, vLLM, Ollama, llama.cpp).

It streams with the official ``openai`` client and adds what the client does not do for us:
a deadline for the first token and for every gap between chunks, retries that never repeat an
answer already shown to the user, and one error type (``ProviderError``) with a bounded ``kind``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI, AsyncStream

from chat.llm.base import (
    CompletionRequest,
    Finish,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallRequest,
    Usage,
)

logger = structlog.get_logger("chat.llm")

# Worth another attempt: the server may well answer the same request next time.
RETRYABLE_KINDS = frozenset({"timeout", "connection", "rate_limited", "http_5xx"})
# The request itself (or our key) is wrong: repeating it cannot help.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 422})
CHECK_TIMEOUT = 3.0
# What ``_next_chunk`` returns once the body is done (a chunk itself may be any JSON value).
_END_OF_STREAM = object()


@dataclass
class _Attempt:
    """What one attempt has produced so far."""

    started: float
    emitted_text: bool = False
    first_token_at: float | None = None
    model: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    tool_calls: dict[int, _PartialToolCall] = field(default_factory=dict)


@dataclass
class _PartialToolCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OpenAIProvider:
    """One OpenAI-compatible endpoint as a ``Provider``."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        model: str,
        max_tokens_cap: int,
        connect_timeout: float,
        first_token_timeout: float,
        inter_token_timeout: float,
        max_retries: int,
        retry_base_delay: float,
        retry_max_delay: float,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.name = name
        self.model = model
        self.base_url = base_url
        self.max_tokens_cap = max_tokens_cap
        self.connect_timeout = connect_timeout
        self.first_token_timeout = first_token_timeout
        self.inter_token_timeout = inter_token_timeout
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.check_timeout = check_timeout
        self._api_key = api_key
        # One client per event loop: pooled connections belong to the loop that opened them.
        self._clients: dict[asyncio.AbstractEventLoop, AsyncOpenAI] = {}

    def __repr__(self) -> str:  # never show the key
        return (
            f"OpenAIProvider(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"
        )

    # -- the protocol

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream one answer, retrying transient failures while nothing has been shown yet."""
        attempt = 0
        while True:
            state = _Attempt(started=time.monotonic())
            events = self._stream_once(request, state)
            try:
                async for event in events:
                    yield event
                return
            except ProviderError as exc:
                delay = self._retry_delay(exc, attempt, state)
                self._log_failure(exc, attempt, state, will_retry=delay is not None)
                if delay is None:
                    raise
            finally:
                # A caller that stops reading gets the HTTP response closed now, not at GC.
                await events.aclose()
            attempt += 1
            await asyncio.sleep(delay)

    async def check(self) -> bool:
        """Is the endpoint up? ``GET /models`` (free, unlike a completion)."""
        started = time.monotonic()
        try:
            await self._openai().models.list(timeout=self.check_timeout)
        except (openai.OpenAIError, ValueError) as exc:
            error = self._wrap(exc, emitted_text=False)
            logger.warning(
                "llm.check.failed",
                provider=self.name,
                kind=error.kind,
                latency_ms=_ms_since(started),
            )
            return False
        return True

    async def aclose(self) -> None:
        """Close the running loop's pooled connections (shutdown, tests, and a sync caller's
        short-lived loop before ``async_to_sync`` closes it); the next call opens new ones.

        A client left open on a loop that then closes is closed by its finaliser on whatever
        loop runs next, which fails ("Event loop is closed") and logs an error."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    # -- one attempt

    async def _stream_once(
        self, request: CompletionRequest, state: _Attempt
    ) -> AsyncGenerator[StreamEvent, None]:
        """One attempt: its text deltas as they come, then its tool calls and ``Finish``."""
        loop = asyncio.get_running_loop()
        # The first-token budget counts from the request start, connecting included.
        first_token_deadline = loop.time() + self.first_token_timeout
        stream = await self._open_stream(request, state, first_token_deadline)
        try:
            while True:
                chunk = await self._next_chunk(stream, state, first_token_deadline)
                if chunk is _END_OF_STREAM:
                    break
                for event in self._absorb(chunk, state):
                    yield event
        except (openai.OpenAIError, ValueError) as exc:
            raise self._wrap(exc, emitted_text=state.emitted_text) from None
        finally:
            # Release the socket at once; after a stall the server would otherwise keep it.
            await stream.close()

        if state.finish_reason is None:
            # The body ended (cleanly, as far as HTTP is concerned) before the model finished:
            # a truncated answer must not pass for a complete one.
            raise ProviderError(
                f"{self.name}: stream ended without a finish reason",
                provider=self.name,
                kind="connection",
                emitted_text=state.emitted_text,
            )
        for call in self._tool_calls(state):
            yield call
        yield self._finish(state, finish_reason=state.finish_reason)

    async def _open_stream(
        self, request: CompletionRequest, state: _Attempt, first_token_deadline: float
    ) -> AsyncStream[object]:
        """Send the request; the response must start before ``first_token_deadline``."""
        try:
            async with asyncio.timeout_at(first_token_deadline):
                # The low-level post of the same client, with chunks left as parsed JSON:
                # chat.completions.create() runs a pure-Python transform over every message
                # (~34 ms per call at 100 messages) and builds a model object per chunk
                # (~0.2 ms each); our arguments are plain JSON already.
                return await self._openai().post(
                    "/chat/completions",
                    body=self._create_args(request),
                    cast_to=object,
                    stream=True,
                    stream_cls=AsyncStream[object],
                )
        except TimeoutError:
            raise self._timeout(state) from None
        except (openai.OpenAIError, ValueError) as exc:
            raise self._wrap(exc, emitted_text=False) from None

    async def _next_chunk(
        self, stream: AsyncStream[object], state: _Attempt, first_token_deadline: float
    ) -> object:
        """The next chunk (parsed JSON), or ``_END_OF_STREAM``; waits until the first-token
        deadline while nothing has come yet, then at most the inter-token timeout."""
        deadline = (
            first_token_deadline
            if state.first_token_at is None
            else asyncio.get_running_loop().time() + self.inter_token_timeout
        )
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(stream)
        except StopAsyncIteration:
            return _END_OF_STREAM
        except TimeoutError:
            raise self._timeout(state) from None

    def _finish(self, state: _Attempt, *, finish_reason: str) -> Finish:
        """The ``Finish`` of a complete attempt, logged with its timings and token counts."""
        finish = Finish(
            provider=self.name,
            model=state.model or self.model,
            usage=state.usage or Usage(),
            finish_reason=finish_reason,
        )
        logger.info(
            "llm.stream.finished",
            provider=self.name,
            model=finish.model,
            finish_reason=finish.finish_reason,
            latency_ms=_ms_since(state.started),
            first_token_ms=(
                None
                if state.first_token_at is None
                else round((state.first_token_at - state.started) * 1000)
            ),
            prompt_tokens=finish.usage.prompt_tokens,
            completion_tokens=finish.usage.completion_tokens,
            tool_calls=len(state.tool_calls),
        )
        return finish

    def _create_args(self, request: CompletionRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            # Always sent: servers such as vLLM otherwise fill the whole context window.
            "max_tokens": min(request.max_tokens, self.max_tokens_cap),
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            args["tools"] = request.tools
        return args

    def _absorb(self, chunk: Any, state: _Attempt) -> list[StreamEvent]:
        """Fold one chunk (parsed JSON) into the attempt; return the text deltas it carries."""
        try:
            return self._absorb_json(chunk, state)
        except (AttributeError, TypeError, KeyError) as exc:
            # A server speaking something other than OpenAI's chunk format.
            raise ValueError(f"malformed stream chunk: {type(exc).__name__}") from None

    def _absorb_json(self, chunk: Any, state: _Attempt) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            raise ValueError("a stream chunk is not a JSON object")
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            state.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            state.usage = Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
                state.emitted_text = True
                self._mark_first_token(state)
            for call_delta in delta.get("tool_calls") or []:
                self._absorb_tool_call(call_delta, state)
                self._mark_first_token(state)
            if choice.get("finish_reason"):
                state.finish_reason = str(choice["finish_reason"])
        return events

    @staticmethod
    def _absorb_tool_call(call_delta: dict[str, Any], state: _Attempt) -> None:
        partial = state.tool_calls.setdefault(int(call_delta.get("index") or 0), _PartialToolCall())
        if call_delta.get("id"):
            partial.id = str(call_delta["id"])
        function = call_delta.get("function") or {}
        if function.get("name"):
            partial.name += str(function["name"])
        if function.get("arguments"):
            partial.arguments.append(str(function["arguments"]))

    def _tool_calls(self, state: _Attempt) -> list[ToolCallRequest]:
        calls = []
        for index in sorted(state.tool_calls):
            partial = state.tool_calls[index]
            if not partial.name:
                raise ProviderError(
                    f"{self.name}: tool call without a function name",
                    provider=self.name,
                    kind="bad_response",
                    emitted_text=state.emitted_text,
                )
            calls.append(
                ToolCallRequest(
                    # Some local servers omit ids; the tool result must still reference one.
                    id=partial.id or f"call_{uuid.uuid4().hex[:24]}",
                    name=partial.name,
                    arguments="".join(partial.arguments) or "{}",
                )
            )
        return calls

    @staticmethod
    def _mark_first_token(state: _Attempt) -> None:
        if state.first_token_at is None:
            state.first_token_at = time.monotonic()

    # -- errors and retries

    def _timeout(self, state: _Attempt) -> ProviderError:
        if state.emitted_text:
            message = f"{self.name}: no chunk for {self.inter_token_timeout}s mid-answer"
            return ProviderError(message, provider=self.name, kind="stalled", emitted_text=True)
        message = f"{self.name}: no first token within {self.first_token_timeout}s"
        if state.first_token_at is not None:  # tool-call deltas came, then nothing
            message = f"{self.name}: no chunk for {self.inter_token_timeout}s"
        return ProviderError(message, provider=self.name, kind="timeout")

    def _wrap(self, exc: Exception, *, emitted_text: bool) -> ProviderError:
        """Translate an openai/httpx exception; the server's message text is not carried over."""
        kind = "bad_response"
        permanent = False
        retry_after: float | None = None
        status: int | None = None
        if isinstance(exc, openai.APITimeoutError):
            kind = "stalled" if emitted_text else "timeout"
        elif isinstance(exc, openai.APIConnectionError):
            kind = "connection"
        elif isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            kind, permanent = _classify_status(status)
            retry_after = parse_retry_after(exc.response.headers)
        detail = f"HTTP {status}" if status is not None else type(exc).__name__
        return ProviderError(
            f"{self.name}: {kind} ({detail})",
            provider=self.name,
            kind=kind,
            permanent=permanent,
            retry_after=retry_after,
            emitted_text=emitted_text,
        )

    def _retry_delay(self, exc: ProviderError, attempt: int, state: _Attempt) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if state.emitted_text or exc.emitted_text or exc.permanent:
            return None
        if exc.kind not in RETRYABLE_KINDS or attempt >= self.max_retries:
            return None
        if exc.retry_after is not None:
            # A server asking for a long pause is better served by the next link of the chain.
            return exc.retry_after if exc.retry_after <= self.retry_max_delay else None
        ceiling = min(self.retry_max_delay, self.retry_base_delay * 2**attempt)
        return random.uniform(0, ceiling)  # full jitter: retries of many turns spread out

    def _log_failure(
        self, exc: ProviderError, attempt: int, state: _Attempt, *, will_retry: bool
    ) -> None:
        logger.warning(
            "llm.attempt.failed",
            provider=self.name,
            kind=exc.kind,
            permanent=exc.permanent,
            attempt=attempt,
            will_retry=will_retry,
            retry_after=exc.retry_after,
            emitted_text=state.emitted_text or exc.emitted_text,
            latency_ms=_ms_since(state.started),
        )

    def _openai(self) -> AsyncOpenAI:
        """The client of this provider, one per event loop: pooled connections belong to the
        loop that opened them, and a second loop (a test, ``async_to_sync``) must not reuse them."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for closed in [other for other in self._clients if other.is_closed()]:
                del self._clients[closed]
            client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                max_retries=0,  # we retry ourselves, and never after text was shown
                timeout=openai.Timeout(
                    # The read timeout also covers waiting for the first byte, so it may not be
                    # shorter than the first-token budget; our own deadlines are the exact ones
                    # and this is the backstop for a socket that stops answering.
                    max(self.inter_token_timeout, self.first_token_timeout),
                    connect=self.connect_timeout,
                ),
            )
            self._clients[loop] = client
        return client


def _classify_status(status: int) -> tuple[str, bool]:
    """(kind, permanent) for an HTTP error status."""
    if status == 429:
        return "rate_limited", False
    if status >= 500:
        return "http_5xx", False
    if status in (401, 403):
        return "auth", True
    return "http_4xx", status in PERMANENT_STATUSES


def parse_retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` in seconds or as
    an HTTP date), or None."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
