"""WebSocket frames (API.md "WebSocket"): reading and checking what a client sends, writing ours.

Frames are JSON ``{type, data, requestId?, timestamp}`` (timestamp in epoch ms). Every problem is
an ``ApiError`` with the code a client can act on: ``INVALID_REQUEST_FORMAT`` (not JSON, not an
object, binary), ``MESSAGE_TOO_LONG`` (over 64 KiB), ``MISSING_REQUIRED_FIELD`` and
``INVALID_FIELD_VALUE`` (with ``details.field``).
"""

from __future__ import annotations

import json
from typing import Any

from supportbot.errors import ApiError, now_ms
from supportbot.ids import CLIENT_REQUEST_ID_RE
from supportbot.storable import may_hold_unstorable, refuse_unstorable

MAX_FRAME_BYTES = 64 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode(type_: str, data: Any, request_id: Any = None) -> str:
    frame: dict[str, Any] = {"type": type_, "data": data, "timestamp": now_ms()}
    if isinstance(request_id, str):
        frame["requestId"] = request_id
    text = json.dumps(frame, ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate echoed from a client: escape it
            text = json.dumps(frame)
    return text


def parse(text_data: str | None) -> dict[str, Any]:
    """A client frame as an object with a string ``type`` (not yet checked against a handler)."""
    if text_data is None:
        raise ApiError("INVALID_REQUEST_FORMAT", "Binary frames are not accepted.")
    if len(text_data) > MAX_FRAME_BYTES or (
        len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES
    ):
        raise ApiError(
            "MESSAGE_TOO_LONG",
            "Frames are limited to 64 KiB.",
            details={"maxBytes": MAX_FRAME_BYTES},
        )
    try:
        frame = json.loads(text_data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError("INVALID_REQUEST_FORMAT", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ApiError("INVALID_REQUEST_FORMAT", "A frame must be a JSON object.")
    if "type" not in frame:
        raise ApiError("MISSING_REQUIRED_FIELD", "type is required.", details={"field": "type"})
    if not isinstance(frame["type"], str):
        raise ApiError(
            "INVALID_REQUEST_FORMAT", "type must be a string.", details={"field": "type"}
        )
    return frame


def refuse_unstorable_fields(frame: dict[str, Any], text_data: str) -> None:
    """The API's one rule for NUL and lone surrogates (supportbot.storable), for a parsed frame
    (``text_data`` is its text: the cheap test of whether any field may hold one). Separate from
    ``parse`` so that the refusal can carry the frame's ``requestId``."""
    if may_hold_unstorable(text_data):
        refuse_unstorable({key: value for key, value in frame.items() if key != "type"})


def request_id_of(frame: dict[str, Any]) -> str | None:
    value = frame.get("requestId")
    if value is None:
        return None
    if not isinstance(value, str) or not CLIENT_REQUEST_ID_RE.match(value):
        raise ApiError(
            "INVALID_FIELD_VALUE",
            "requestId must be a string of letters, digits and _.:- (at most 128).",
            details={"field": "requestId"},
        )
    return value


def data_of(frame: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    data = frame.get("data")
    if data is None and not required:
        return {}
    if data is None:
        raise ApiError("MISSING_REQUIRED_FIELD", "data is required.", details={"field": "data"})
    if not isinstance(data, dict):
        raise ApiError("INVALID_FIELD_VALUE", "data must be an object.", details={"field": "data"})
    return data


def field(data: dict[str, Any], name: str, kind: type, what: str) -> Any:
    """A required field of ``data`` of type ``kind`` (``what`` names it for the error)."""
    if name not in data or data[name] is None:
        raise ApiError(
            "MISSING_REQUIRED_FIELD", f"data.{name} is required.", details={"field": name}
        )
    value = data[name]
    # bool is an int in Python; on the wire it is not a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(
            "INVALID_FIELD_VALUE", f"data.{name} must be {what}.", details={"field": name}
        )
    return value
