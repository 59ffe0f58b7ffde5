"""What the databases can store: text without NUL or lone surrogates, and finite numbers.

PostgreSQL refuses NUL in text and jsonb, and no database takes lone UTF-16 surrogates (which
JSON's ``\\ud800`` escapes can produce). One rule for the whole API: a client string holding
either is refused where it comes in (HTTP path, query string and JSON body in
``supportbot.middleware``, WebSocket frames in ``chat.frames``) with 400 ``INVALID_FIELD_VALUE``
naming the field, never stripped and never left to fail inside a transaction.
"""

from __future__ import annotations

import math
import re
from typing import Any

from supportbot.errors import ApiError

# The only JSON spellings of NUL and of a (possibly lone) surrogate: a raw control character is
# invalid JSON and a UTF-8 body cannot hold a surrogate, so text without them needs no walk.
_SUSPECT_JSON = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SUSPECT_JSON_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def unstorable(value: object) -> str | None:
    """Why ``value`` (text or JSON-like data) cannot be stored as-is, or None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an invalid Unicode character"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        # Python's JSON parser accepts NaN and Infinity; JSON columns do not.
        return "contains a number that is not finite"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key) or unstorable(item)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = unstorable(item)
            if problem:
                return problem
    return None


def unstorable_field(value: Any, *, at: str = "") -> tuple[str, str] | None:
    """The dotted name (``parameters.tools.0.arguments``) of the first value inside JSON-like
    ``value`` that cannot be stored, and why; None when everything can be."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{at}.{key}" if at else str(key)
            problem = unstorable(key)
            if problem:
                return (at or "body", f"has a key that {problem}")
            found = unstorable_field(item, at=name)
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_field(item, at=f"{at}.{index}" if at else str(index))
            if found:
                return found
        return None
    problem = unstorable(value)
    return (at or "body", problem) if problem else None


def may_hold_unstorable(raw: str | bytes) -> bool:
    """Whether JSON text ``raw`` spells a NUL or a surrogate (cheap test before a full walk)."""
    if isinstance(raw, bytes):
        return _SUSPECT_JSON_BYTES.search(raw) is not None
    return _SUSPECT_JSON.search(raw) is not None


def refuse_unstorable(value: Any, *, at: str = "") -> None:
    """Raise 400 ``INVALID_FIELD_VALUE`` naming the first field of ``value`` that cannot be
    stored."""
    found = unstorable_field(value, at=at)
    if found is not None:
        name, problem = found
        raise ApiError("INVALID_FIELD_VALUE", f"{name} {problem}.", details={"field": name})
