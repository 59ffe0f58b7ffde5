"""The guard stage of a turn: rate limits → input validation → content filter → PII redaction.

``limit_turn`` runs first, before the session is even read, so a refused request costs nothing
else. ``screen_message`` then validates the text, asks the content filter for a verdict (a block
raises ``ContentBlocked``: the message is kept for staff, never stored in the conversation and
never sent to the model) and redacts PII; what it returns is the only form of the text that is
stored, logged or sent anywhere, with the findings to record once the message is stored
(``screen_and_keep_blocked`` also keeps a blocked message for staff). The model's answer streams
through ``chat.guards.reply.ReplyGuard`` (PII redacted, system-prompt leakage stopped).

Each guard returns a verdict and records what it flagged (``chat.guards.review``) as a security
event (``chat.guards.security``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from supportbot.errors import ApiError
from supportbot.ids import require_session_id

if TYPE_CHECKING:  # (imported lazily below: review needs the models)
    from chat.guards.content import ContentVerdict
    from chat.guards.pii import Allowlist
    from chat.guards.review import Findings


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


def limit_turn(*, session_id: str, client_ip: str, transport: str) -> None:
    """The rate limits of one chat turn (raises the refusal). A malformed session id is refused
    first (it would name a key of its own); the session is read right after."""
    from chat.guards import ratelimit

    sid = require_session_id(session_id)
    if not ratelimit.enabled():
        return
    client = ratelimit.client_label(client_ip)
    # One check: a refusal of any of them spends none of them (a client refused for its own
    # limits spends nothing of everyone's, and a refusal for everyone's nothing of its own).
    ratelimit.check(
        takes=(
            ("session_burst", sid),
            ("session_requests", sid),
            ("global_model_calls", ratelimit.GLOBAL),
        ),
        budgets=(("session_tokens", sid), ("ip_tokens", client)),
        session_id=sid,
        client_ip=client_ip,
    )


@dataclass(frozen=True)
class Screened:
    """A message that passed the guards: ``text`` is what may be stored and sent on."""

    text: str
    findings: Findings


def screen_message(item: GuardInput, allowlist: Allowlist) -> Screened:
    """Validate, filter and redact a user's message; raise ``ApiError`` / ``ContentBlocked``.

    ``allowlist``: ``chat.guards.review.current_allowlist()`` (or its async form).
    """
    from chat.guards.content import classify_message
    from chat.guards.pii import redact_pii
    from chat.guards.review import Findings
    from chat.guards.security import security_event
    from chat.guards.validation import InputValidation

    verdict = InputValidation().check(item)
    if not verdict.allowed:
        assert verdict.error is not None
        raise verdict.error
    text = verdict.text
    content = classify_message(text) if settings.CONTENT_FILTER_ENABLED else None
    redaction = redact_pii(text, allowlist) if settings.PII_REDACTION_ENABLED else None
    redacted = redaction.text if redaction is not None else text
    context = {
        "session_id": item.session_id,
        "client_ip": item.client_ip,
        "request_id": item.request_id,
        "transport": item.transport,
    }
    if redaction is not None and redaction.matches:
        security_event(
            "pii_redacted",
            direction="input",
            kinds=list(redaction.kinds),
            count=len(redaction.matches),
            **context,
        )
    if content is not None and content.action != "allow":
        security_event(
            f"content_{'blocked' if content.action == 'block' else 'flagged'}",
            direction="input",
            categories=list(content.categories),
            score=round(content.score, 3),
            reasons=list(content.reasons),
            **context,
        )
        if content.action == "block":
            raise ContentBlocked(redacted=redacted, verdict=content, categories=content.categories)
    findings = Findings(
        direction="input",
        redaction=redaction,
        original=text if redaction is not None and redaction.matches else "",
        content=content,
        request_id=item.request_id,
        client_ip=item.client_ip,
    )
    return Screened(redacted, findings)


async def screen_and_keep_blocked(item: GuardInput, allowlist: Allowlist) -> Screened:
    """``screen_message``; a blocked message is first kept for staff (only there: it is never
    stored in the conversation nor sent to the model), then the refusal is raised."""
    from asgiref.sync import sync_to_async

    from chat.guards.review import record_block

    try:
        return screen_message(item, allowlist)
    except ContentBlocked as blocked:
        await sync_to_async(record_block)(
            session_id=item.session_id,
            text=blocked.redacted,
            verdict=blocked.verdict,
            request_id=item.request_id,
            client_ip=item.client_ip,
        )
        raise


def redact_text(text: str, allowlist: Allowlist, *, session_id: str = "", field: str = "") -> str:
    """``text`` with PII redacted (free-text fields other than chat messages)."""
    if not settings.PII_REDACTION_ENABLED:
        return text
    from chat.guards.pii import redact_pii
    from chat.guards.security import security_event

    redaction = redact_pii(text, allowlist)
    if redaction.matches:
        security_event(
            "pii_redacted",
            direction="input",
            field=field,
            kinds=list(redaction.kinds),
            count=len(redaction.matches),
            session_id=session_id,
        )
    return redaction.text


def redact_json(value: Any, allowlist: Allowlist, *, session_id: str = "", field: str = "") -> Any:
    """``value`` (client metadata: objects, lists, strings, numbers) with PII redacted in every
    string it holds; keys and other values are kept."""
    if isinstance(value, str):
        return redact_text(value, allowlist, session_id=session_id, field=field)
    if isinstance(value, dict):
        return {
            key: redact_json(item, allowlist, session_id=session_id, field=field)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_json(item, allowlist, session_id=session_id, field=field) for item in value]
    return value
