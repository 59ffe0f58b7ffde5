"""WebSocket routes."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from chat.consumers import ChatConsumer
from ops.consumers import StaffConsumer


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any other WebSocket path: the handshake is refused (403), instead of the router's
    "No route found" error (a 500 and a traceback in the log for every stray client)."""

    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns: list[Any] = [
    path("ws", ChatConsumer.as_asgi()),
    path("ws/staff", StaffConsumer.as_asgi()),
    re_path(r"", NoSuchSocket.as_asgi()),
]
