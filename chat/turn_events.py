"""What one turn yields (``chat.pipeline.run_turn``): plain values the transports turn into their
own frames through ``chat.wire``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chat.models import Message
from supportbot.errors import ApiError, ms


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
    # A person holds the conversation (or the customer paused the bot while waiting): the
    # message went to them and the bot said nothing. ``held_by`` names the agent, if one holds it.
    held: bool = False
    held_by: str = ""


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


def held_turn(message: Message, *, agent_name: str, processing_ms: int) -> TurnDone:
    """The end of a turn the bot did not answer because a person holds the conversation: the
    usual answer shape, empty, naming who has it (``message`` is the forwarded user message)."""
    return TurnDone(
        message_id=message.id,
        seq=message.seq,
        session_id=message.session_id,
        content="",
        timestamp=ms(message.created_at) or 0,
        processing_ms=processing_ms,
        tool_calls=[],
        model="",
        tokens_used=0,
        fallback_used=False,
        held=True,
        held_by=agent_name,
    )
