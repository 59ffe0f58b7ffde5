"""The guards of a turn, and the only entry into them for the rest of ``chat``.

The stage, in order: rate limits (``limits``: before the session is even read, so a refused
request costs nothing else) → input validation → content filter → PII redaction (``screen``).
The model's answer streams through ``reply.ReplyGuard`` (PII redacted, system-prompt leakage
stopped). Each guard returns a verdict and records what it flagged (``review``) as a security
event (``supportbot.security``). The limits themselves are the kernel's (``supportbot.ratelimit``).

Modules: ``verdicts`` (the values guards speak), ``limits``, ``validation``, ``content/`` (the
content filter), ``pii/`` (PII detection and redaction), ``screen``, ``reply``, ``review`` (what
guards record for staff, and the PII allowlist), ``sockets`` (open WebSockets per session and
client).
"""

from __future__ import annotations

from chat.guards.limits import admit_model_round, admit_tool_call, limit_turn, spend_tokens
from chat.guards.pii import EMPTY_ALLOWLIST, Allowlist
from chat.guards.reply import WITHHELD_REPLY, ReplyGuard, record_reply_findings, reply_findings
from chat.guards.review import Findings, allowlist_for_async, current_allowlist, record_findings
from chat.guards.screen import (
    Screened,
    redact_json,
    redact_text,
    screen_and_keep_blocked,
    screen_message,
)
from chat.guards.verdicts import BLOCKED_MESSAGE, ContentBlocked, GuardInput, Verdict

__all__ = [
    "BLOCKED_MESSAGE",
    "EMPTY_ALLOWLIST",
    "WITHHELD_REPLY",
    "Allowlist",
    "ContentBlocked",
    "Findings",
    "GuardInput",
    "ReplyGuard",
    "Screened",
    "Verdict",
    "admit_model_round",
    "admit_tool_call",
    "allowlist_for_async",
    "current_allowlist",
    "limit_turn",
    "record_findings",
    "record_reply_findings",
    "redact_json",
    "redact_text",
    "reply_findings",
    "screen_and_keep_blocked",
    "screen_message",
    "spend_tokens",
]
