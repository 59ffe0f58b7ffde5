"""The narrow provider protocol every model link implements, and the events a stream yields.

Messages are OpenAI-format dicts (``{"role": "user", "content": "..."}``, assistant messages
with ``tool_calls``, ``{"role": "tool", "tool_call_id": ..., "content": ...}``); tools are
OpenAI function definitions (``{"type": "function", "function": {name, description,
parameters}}``). A provider turns one request into a stream of events and either finishes
with ``Finish`` or raises ``ProviderError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class CompletionRequest:
    messages: list[dict[str, Any]]
    max_tokens: int
    tools: list[dict[str, Any]] | None = None
    temperature: float = 0.3


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallRequest:
    """A complete function call the model asked for (arguments are the raw JSON string)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Finish:
    """The end of a successful stream."""

    provider: str  # bounded label: "primary", "fallback", "offline"
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    fallback_used: bool = False
    # Knowledge-base passages the answer rests on: {"id", "title", "url"}.
    citations: tuple[dict[str, str], ...] = ()


StreamEvent = TextDelta | ToolCallRequest | Finish


class ProviderError(Exception):
    """Any failure of a model link. ``permanent`` errors (bad key, bad request) are not retried.

    ``emitted_text`` is true when text already reached the caller before the failure (a stream
    that stalled mid-answer): such a turn cannot move to another link without mixing answers.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: str,
        permanent: bool = False,
        retry_after: float | None = None,
        emitted_text: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.kind = kind  # bounded label: timeout, stalled, connection, http_4xx, http_5xx, ...
        self.permanent = permanent
        self.retry_after = retry_after
        self.emitted_text = emitted_text


@runtime_checkable
class Provider(Protocol):
    """One model link."""

    name: str
    model: str

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer; the last event is ``Finish``, or ``ProviderError`` is raised."""
        ...

    async def check(self) -> bool:
        """Cheap reachability probe (never a paid completion); used by /health, cached there."""
        ...

    async def aclose(self) -> None:
        """Close what the provider holds open on the running event loop (connections)."""
        ...
