"""The guard stage of a turn: every guard looks at the incoming text and returns a verdict.

Guards run in order (rate limits → content filter → PII redaction in later issues; input
validation now). A guard may refuse (``Verdict.refuse``) or pass the text on, possibly rewritten
(redacted); the first refusal stops the stage. The interface is stable: new guards are added to
``GUARDS`` without touching the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from supportbot.errors import ApiError


@dataclass(frozen=True)
class GuardInput:
    text: str
    session_id: str
    client_ip: str = ""
    transport: str = "rest"  # "rest" or "websocket"


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


class Guard(Protocol):
    name: str

    def check(self, item: GuardInput) -> Verdict: ...


def run_guards(item: GuardInput) -> Verdict:
    """Run every guard in order; return the first refusal or the final allowed text."""
    from chat.guards.validation import InputValidation

    text = item.text
    flags: list[str] = []
    for guard in (InputValidation(),):
        verdict = guard.check(GuardInput(text, item.session_id, item.client_ip, item.transport))
        if not verdict.allowed:
            return verdict
        text = verdict.text
        flags.extend(verdict.flags)
    return Verdict.allow(text, *flags)
