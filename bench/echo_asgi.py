"""The bare Channels echo server of ``bench/ws_bench.py`` (bench only, never deployed).

    python -m supportbot.server -b 127.0.0.1 -p PORT bench.echo_asgi:application

Django and Channels as supportbot configures them (same settings module, same channel layer),
but ``/ws`` is a tiny ``AsyncWebsocketConsumer``: it accepts, sends ``connection_established``
and sends every text frame straight back. No origin check, no Django session middleware: it is
the floor a Channels consumer cannot go below.
"""

from __future__ import annotations

import json
import os
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

django_asgi = get_asgi_application()


class EchoConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        frame = {
            "type": "connection_established",
            "data": {"sessionId": "", "serverTime": int(time.time() * 1000), "capabilities": []},
            "timestamp": int(time.time() * 1000),
        }
        await self.send(text_data=json.dumps(frame))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data)


application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": URLRouter([path("ws", EchoConsumer.as_asgi())]),
    }
)
