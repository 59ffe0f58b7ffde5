"""A turn in progress (``chat.pipeline``): the started turn and the answer it is building."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from chat import events
from chat.guards import Allowlist, ReplyGuard
from chat.llm.base import Finish
from chat.models import Message
from chat.store import AnswerRecord, TurnStarted
from supportbot.ids import new_message_id


@dataclass
class Answer:
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

    def record(self, *, complete: bool, processing_ms: int) -> AnswerRecord:
        """The answer as the store keeps it (complete, or cut off with what it has)."""
        finish = self.finish
        return AnswerRecord(
            message_id=self.message_id,
            content=self.text,
            complete=complete,
            model=finish.model if finish else "",
            fallback_used=finish.fallback_used if finish and complete else False,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            processing_ms=processing_ms,
            tool_calls=self.tool_calls,
            citations=self.citations,
        )


@dataclass
class Turn:
    """A started turn: what every step after the guards needs, in one place."""

    session_id: str
    client_ip: str
    origin: str | None  # the socket that asked (it gets its own frames, not the fan-out)
    started: float  # perf_counter when the turn arrived
    start: TurnStarted
    allowlist: Allowlist
    published: asyncio.Future[None]  # the user message's fan-out (the answer's goes after it)
    answer: Answer = field(default_factory=lambda: Answer(message_id=new_message_id()))

    @property
    def request_id(self) -> str:
        return self.start.user.request_id or ""

    def publish(self, message: Message) -> None:
        events.publish_soon(self.session_id, [message], origin=self.origin, after=self.published)
