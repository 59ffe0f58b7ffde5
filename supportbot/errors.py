"""The one error shape of API.md, shared by REST responses and WebSocket ``error`` frames."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from supportbot import metrics

# HTTP status per error code (API.md: 400 validation, 401/403 access, 404 missing,
# 409 conflict, 413 too large, 429 limits, 503 model down). NOT_FOUND and METHOD_NOT_ALLOWED are
# additions for unknown routes and wrong methods, which API.md's list has no code for; a few
# codes take another status where the situation says so (an ended session is a 409 conflict, a
# body over 64 KiB a 413), passed explicitly by the raiser.
STATUS_BY_CODE: dict[str, int] = {
    "INVALID_SESSION": 400,
    "SESSION_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "ACCESS_DENIED": 403,
    "RATE_LIMIT_EXCEEDED": 429,
    "TOKEN_LIMIT_EXCEEDED": 429,
    "CONCURRENT_LIMIT_EXCEEDED": 429,
    "INVALID_REQUEST_FORMAT": 400,
    "MISSING_REQUIRED_FIELD": 400,
    "INVALID_FIELD_VALUE": 400,
    "MESSAGE_TOO_LONG": 400,
    "CONTENT_BLOCKED": 400,
    "AI_SERVICE_UNAVAILABLE": 503,
    "TOOL_EXECUTION_FAILED": 502,
    "WORKFLOW_EXECUTION_FAILED": 500,
    "STORAGE_ERROR": 500,
    "INTERNAL_ERROR": 500,
    "SERVICE_DEGRADED": 503,
}

RETRYABLE_CODES = frozenset(
    {
        "RATE_LIMIT_EXCEEDED",
        "TOKEN_LIMIT_EXCEEDED",
        "CONCURRENT_LIMIT_EXCEEDED",
        "AI_SERVICE_UNAVAILABLE",
        "SERVICE_DEGRADED",
        "STORAGE_ERROR",
        "INTERNAL_ERROR",
    }
)


class ApiError(Exception):
    """A failure a client should see: a stable code, a human message, optional details."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.status = status or STATUS_BY_CODE.get(code, 400)
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        """The inner ``error`` object (also a WebSocket ``error`` frame's ``data``)."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        body["retryable"] = self.code in RETRYABLE_CODES
        if self.retry_after is not None:
            body["retryAfter"] = self.retry_after
        return body


def now_ms() -> int:
    """Epoch milliseconds, the wire's time unit."""
    return int(time.time() * 1000)


def ms(value: datetime | None) -> int | None:
    """Epoch milliseconds of an aware datetime (the wire's time unit)."""
    return None if value is None else int(value.timestamp() * 1000)


def error_body(error: ApiError, *, request_id: str, path: str, method: str) -> dict[str, Any]:
    """The full HTTP error document of API.md (each one counted in the metrics by its code)."""
    metrics.incr("errors", code=error.code, transport="http")
    return {
        "error": error.payload(),
        "requestId": request_id,
        "timestamp": now_ms(),
        "path": path,
        "method": method,
    }


def describe_validation_errors(errors: list[dict[str, Any]]) -> ApiError:
    """Map pydantic/ninja errors onto MISSING_REQUIRED_FIELD / INVALID_FIELD_VALUE / format."""
    fields = []
    missing = False
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        # ninja prefixes where the value came from (body/query/path) and the parameter name.
        while loc and loc[0] in ("body", "query", "path", "payload"):
            loc.pop(0)
        kind = str(err.get("type", ""))
        if kind == "json_invalid":
            return ApiError("INVALID_REQUEST_FORMAT", "The body is not valid JSON.")
        if not loc and kind.endswith("_type"):
            return ApiError("INVALID_REQUEST_FORMAT", "The body must be a JSON object.")
        missing = missing or kind == "missing"
        fields.append({"field": ".".join(loc) or "body", "problem": str(err.get("msg", kind))})
    names = ", ".join(f["field"] for f in fields)
    details: dict[str, Any] = {"fields": fields}
    if len({f["field"] for f in fields}) == 1:
        details["field"] = fields[0]["field"]  # the one field, where hand-made errors put it
    if missing:
        return ApiError(
            "MISSING_REQUIRED_FIELD", f"Missing or invalid field(s): {names}.", details=details
        )
    return ApiError("INVALID_FIELD_VALUE", f"Invalid field(s): {names}.", details=details)


def wait_in_words(seconds: float) -> str:
    """A wait as a person reads it ("about 14 minutes"), for messages that say when to try again:
    a bare number of seconds means little to someone locked out for a quarter of an hour."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return "1 second" if whole == 1 else f"{whole} seconds"
    minutes = round(whole / 60)
    if minutes < 60:
        return "about 1 minute" if minutes <= 1 else f"about {minutes} minutes"
    hours = round(whole / 1800) / 2  # to the half hour
    return "about 1 hour" if hours <= 1 else f"about {hours:g} hours"


def body_too_large(max_bytes: int) -> ApiError:
    """The 413 of API.md, the same whether the application or the HTTP server refuses the body."""
    return ApiError(
        "MESSAGE_TOO_LONG",
        "The request body is larger than 64 KiB.",
        details={"maxBytes": max_bytes},
        status=413,
    )
