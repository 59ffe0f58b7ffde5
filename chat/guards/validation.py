"""Input validation: the message must be non-empty text within the length limit."""

from __future__ import annotations

from django.conf import settings

from chat.guards.verdicts import GuardInput, Verdict
from supportbot.errors import ApiError
from supportbot.storable import unstorable

__all__ = ["InputValidation", "unstorable"]


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
