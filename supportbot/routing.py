"""WebSocket routes (the consumer arrives with the real-time chat issue)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
