"""Input validation: the message must be non-empty text within the length limit."""

from __future__ import annotations

import math

from django.conf import settings

from chat.guards import GuardInput, Verdict
from supportbot.errors import ApiError


class InputValidation:
    name = "validation"

    def check(self, item: GuardInput) -> Verdict:
        text = item.text
        if not text.strip():
            return Verdict.refuse(
                ApiError(
                    "INVALID_FIELD_VALUE", "The message is empty.", details={"field": "message"}
                )
            )
        limit = settings.MAX_MESSAGE_CHARS
        if len(text) > limit:
            return Verdict.refuse(
                ApiError(
                    "MESSAGE_TOO_LONG",
                    f"The message is {len(text)} characters long; the limit is {limit}.",
                    details={"field": "message", "maxLength": limit, "length": len(text)},
                )
            )
        problem = unstorable(text)
        if problem:
            return Verdict.refuse(
                ApiError(
                    "INVALID_FIELD_VALUE", f"The message {problem}.", details={"field": "message"}
                )
            )
        return Verdict.allow(text)


def unstorable(value: object) -> str | None:
    """Why ``value`` (text or JSON-like data) cannot be stored as-is, or None when it can.

    PostgreSQL refuses NUL in text and jsonb, and no database takes lone UTF-16 surrogates
    (which JSON's ``\\ud800`` escapes can produce); both must be refused up front rather than
    fail inside a transaction.
    """
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
