"""Prefixed identifiers (``sess_``, ``msg_``, ``req_``); the random part comes from ``secrets``."""

from __future__ import annotations

import re
import secrets

from supportbot.errors import ApiError

# 24 url-safe bytes = 192 random bits: a session id is a bearer secret (API.md: >= 128 bits).
SESSION_ID_RE = re.compile(r"^sess_[A-Za-z0-9_-]{22,64}$")
CLIENT_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def new_session_id() -> str:
    """A fresh session id with 192 random bits."""
    return "sess_" + secrets.token_urlsafe(24)


def new_message_id() -> str:
    """A fresh message id."""
    return "msg_" + secrets.token_hex(12)


def new_request_id() -> str:
    """A fresh request id for a request that did not bring a usable one."""
    return "req_" + secrets.token_hex(12)


def new_tool_call_id() -> str:
    """A tool call made by us rather than by a model (REST, the offline assistant, workflows)."""
    return "call_" + secrets.token_hex(12)


def is_session_id(value: object) -> bool:
    """Whether ``value`` has the shape of a session id (existence is checked elsewhere)."""
    return isinstance(value, str) and SESSION_ID_RE.match(value) is not None


def require_session_id(value: object) -> str:
    """``value`` if it has the shape of a session id; else 400 ``INVALID_SESSION``. Called before
    a session's rate limits, so that a malformed id makes no key and spends nothing."""
    if not is_session_id(value):
        raise ApiError(
            "INVALID_SESSION", "The session id is malformed.", details={"field": "sessionId"}
        )
    return str(value)
