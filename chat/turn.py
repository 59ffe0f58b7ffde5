"""A turn in progress (``chat.pipeline``): the started turn and the answer it is building."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from chat import events
from chat.guards import Allowlist, ReplyGuard
from chat.llm.base import Finish
from chat.models import Message
from chat.store import AnswerRecord, TurnStarted
from supportbot import metrics
from supportbot.ids import new_message_id


@dataclass
class Answer:
    """What a turn's model rounds have produced so far."""

    message_id: str
    parts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, str]] = field(default_factory=list)
    # Articles the tools returned (kb_search): cited only if the answer links or names them.
    found: list[dict[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: bool = False  # a round's model has no price in MODEL_PRICES
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

    def consider(self, citations: Any) -> None:
        """Articles a tool returned: cited if the answer turns out to use them."""
        self.found += [dict(citation) for citation in citations]

    def used_citations(self) -> list[dict[str, str]]:
        """What the model cited itself, then the articles the tools returned that the answer
        links (by URL) or names (by title): a search result the answer ignored is no source."""
        text = self.text.casefold()
        cited = [dict(c) for c in self.citations]
        seen = {c.get("id") for c in cited}
        for citation in self.found:
            url, title = citation.get("url") or "", citation.get("title") or ""
            used = (url and url.casefold() in text) or (title and title.casefold() in text)
            if used and citation.get("id") not in seen:
                seen.add(citation.get("id"))
                cited.append(dict(citation))
        return cited

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
            citations=self.used_citations(),
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
    transport: str = "rest"  # rest, sse or ws: the label of its metrics
    first_token: float | None = None  # perf_counter of the first text the customer got

    @property
    def request_id(self) -> str:
        return self.start.user.request_id or ""

    def publish(self, message: Message) -> None:
        events.publish_soon(self.session_id, [message], origin=self.origin, after=self.published)

    def measure(self, error_code: str) -> None:
        """The turn's figures: latency and time to first token by transport, its outcome, whether
        the answer cited a source, and what the customer spent (a usage row, never a label)."""
        now = time.perf_counter()
        first = self.first_token
        answer = self.answer
        finish = answer.finish
        if error_code == "CLIENT_GONE":
            # The customer left mid-answer: no failure of the service, and no latency to speak of.
            metrics.incr("turns_abandoned", transport=self.transport)
        else:
            metrics.record_turn(
                transport=self.transport,
                ok=not error_code,
                total_ms=(now - self.started) * 1000,
                first_token_ms=(first - self.started) * 1000 if first is not None else None,
                error_code=error_code,
                sourced=bool(answer.citations),
                fallback=bool(finish and finish.fallback_used),
            )
        if answer.prompt_tokens or answer.completion_tokens or not error_code:
            metrics.record_usage(
                user_id=self.start.session.user_id or "",
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                cost_usd=answer.cost_usd,
            )
