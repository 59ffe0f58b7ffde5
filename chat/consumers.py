"""WebSocket transport at ``/ws?sessionId=...`` (partial: connect, ping, error frames).

Frames are JSON ``{type, data, requestId?, timestamp}`` (timestamp in epoch ms).

Close codes:

- 4004: the session is unknown, expired, ended or malformed; an ``error`` frame with
  ``INVALID_SESSION`` is sent first.

Not built yet: ``chat_message`` streaming, ``typing``, ``resume``, fan-out and expiry warnings;
those frame types are answered with an ``error`` frame for now.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from chat.sessions import session_get
from supportbot.errors import ApiError

CLOSE_INVALID_SESSION = 4004
MAX_FRAME_BYTES = 64 * 1024
CAPABILITIES = ["chat", "voice", "tools", "workflows"]


def now_ms() -> int:
    return int(time.time() * 1000)


class ChatConsumer(AsyncWebsocketConsumer):
    session_id: str = ""

    async def send_frame(self, type_: str, data: Any, request_id: Any = None) -> None:
        frame: dict[str, Any] = {"type": type_, "data": data, "timestamp": now_ms()}
        if isinstance(request_id, str):
            frame["requestId"] = request_id
        await self.send(text_data=json.dumps(frame))

    async def send_error(self, error: ApiError, request_id: Any = None) -> None:
        await self.send_frame("error", error.payload(), request_id)

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        session_id = (query.get("sessionId") or [""])[0]
        await self.accept()
        try:
            session = await database_sync_to_async(session_get)(
                session_id=session_id, allow_ended=False
            )
        except ApiError:
            await self.send_error(ApiError("INVALID_SESSION", "Unknown, expired or ended session."))
            await self.close(code=CLOSE_INVALID_SESSION)
            return
        self.session_id = session.id
        data = {"sessionId": self.session_id, "serverTime": now_ms(), "capabilities": CAPABILITIES}
        await self.send_frame("connection_established", data)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error(
                ApiError("INVALID_REQUEST_FORMAT", "Binary frames are not accepted.")
            )
            return
        if len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
            await self.send_error(ApiError("INVALID_REQUEST_FORMAT", "Frame over 64 KiB."))
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error(ApiError("INVALID_REQUEST_FORMAT", "Frame is not valid JSON."))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error(
                ApiError("INVALID_REQUEST_FORMAT", "Frame must be an object with a string type.")
            )
            return
        request_id = frame.get("requestId")
        if frame["type"] == "ping":
            await self.send_frame("pong", {}, request_id)
            return
        await self.send_error(
            ApiError("INVALID_REQUEST_FORMAT", "Unsupported frame type."), request_id
        )
