"""The values every guard speaks: what it is given (``GuardInput``), what it answers (``Verdict``)
and the refusal of a blocked message (``ContentBlocked``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supportbot.errors import ApiError

if TYPE_CHECKING:  # only for the annotation: the content filter is not needed to build a refusal
    from chat.guards.content import ContentVerdict


@dataclass(frozen=True)
class GuardInput:
    text: str
    session_id: str
    client_ip: str = ""
    transport: str = "rest"  # "rest" or "websocket"
    request_id: str = ""


@dataclass(frozen=True)
class Verdict:
    """``allowed`` with the (possibly rewritten) text, or a refusal carrying the client error."""

    allowed: bool
    text: str
    error: ApiError | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def allow(cls, text: str, *flags: str) -> Verdict:
        return cls(allowed=True, text=text, flags=flags)

    @classmethod
    def refuse(cls, error: ApiError) -> Verdict:
        return cls(allowed=False, text="", error=error)


BLOCKED_MESSAGE = (
    "Sorry, I can't help with that message. If you have a question about your account or "
    "Nimbus, please rephrase it and I'll be glad to help."
)


class ContentBlocked(ApiError):
    """The content filter blocked a message: 400 ``CONTENT_BLOCKED`` with a polite message."""

    def __init__(
        self, *, redacted: str, verdict: ContentVerdict, categories: tuple[str, ...]
    ) -> None:
        super().__init__(
            "CONTENT_BLOCKED",
            BLOCKED_MESSAGE,
            details={"categories": list(categories)},
        )
        self.redacted = redacted
        self.verdict = verdict
