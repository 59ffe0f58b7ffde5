"""Screening a user's message: input validation → content filter → PII redaction.

``screen_message`` validates the text, asks the content filter for a verdict (a block raises
``ContentBlocked``: the message is kept for staff, never stored in the conversation and never
sent to the model) and redacts PII; what it returns is the only form of the text that is stored,
logged or sent anywhere, with the findings to record once the message is stored
(``screen_and_keep_blocked`` also keeps a blocked message for staff). ``redact_text`` and
``redact_json`` redact the other free-text fields a client sends (metadata, ticket fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chat.guards.content import classify_message
from chat.guards.pii import Allowlist, redact_pii
from chat.guards.review import Findings, record_block
from chat.guards.validation import InputValidation
from chat.guards.verdicts import ContentBlocked, GuardInput
from supportbot.security import security_event


@dataclass(frozen=True)
class Screened:
    """A message that passed the guards: ``text`` is what may be stored and sent on."""

    text: str
    findings: Findings


def screen_message(item: GuardInput, allowlist: Allowlist) -> Screened:
    """Validate, filter and redact a user's message; raise ``ApiError`` / ``ContentBlocked``.

    ``allowlist``: ``chat.guards.review.current_allowlist()`` (or its async form).
    """
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
