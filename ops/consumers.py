"""The staff inbox socket, ``/ws/staff``: live inbox items and who is online.

Open while an agent has the inbox (or a conversation page) open, and that is what makes them
"online" to customers (``chat.presence``): their socket marks them every
``presence.REFRESH_SECONDS``. Refused at the handshake, with an ``ACCESS_DENIED`` error frame and
close code 4003, for anyone who is not active staff with permission to view the inbox. Staff send
only ``ping``; actions go through ``/api/staff/`` (``ops.staff_api``). Frames: ``inbox_item``
(an item as it now is: new, a new customer message, taken, assigned, resolved), ``presence``
(``{agents: [{id, name}]}``), ``pong`` and ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from channels.auth import get_user
from channels.generic.websocket import AsyncWebsocketConsumer

from chat import events, frames, presence
from chat.consumers import dispatch_without_closing_connections
from chat.wire import display_name
from supportbot.errors import ApiError

log = structlog.get_logger("ops.consumers")

CLOSE_ACCESS_DENIED = 4003


def _agents() -> list[dict[str, Any]]:
    return [{"id": agent.user_id, "name": agent.name} for agent in presence.agents_online()]


class StaffConsumer(AsyncWebsocketConsumer):
    user: Any = None
    agent: bool = False  # may take conversations: counts as online for customers
    refresher: asyncio.Task[None] | None = None

    dispatch = dispatch_without_closing_connections

    async def connect(self) -> None:
        await self.accept()
        user = await get_user(self.scope)
        allowed = bool(user.is_active and user.is_staff) and await sync_to_async(user.has_perm)(
            "chat.view_handoff"
        )
        if not allowed:
            await self.send_error(
                ApiError("ACCESS_DENIED", "The inbox needs a staff login with inbox access.")
            )
            await self.close(code=CLOSE_ACCESS_DENIED)
            return
        self.user = user
        self.agent = await sync_to_async(user.has_perm)("chat.take_over_handoff")
        if self.channel_layer is not None:
            await self.channel_layer.group_add(events.INBOX_GROUP, self.channel_name)
        if self.agent:
            await self._mark()
            self.refresher = asyncio.ensure_future(self._keep_marked())
        await self.send_frame("presence", {"agents": await sync_to_async(_agents)()})
        await events.publish_presence(await sync_to_async(_agents)())

    async def _mark(self) -> None:
        await sync_to_async(presence.mark_online)(
            user_id=self.user.pk, name=display_name(self.user), socket=self.channel_name
        )

    async def _keep_marked(self) -> None:
        while True:
            await asyncio.sleep(presence.REFRESH_SECONDS)
            try:
                await self._mark()
            except Exception:
                log.warning("presence_refresh_failed", exc_info=True)

    async def disconnect(self, code: int) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        if self.user is None:
            return
        if self.channel_layer is not None:
            await self.channel_layer.group_discard(events.INBOX_GROUP, self.channel_name)
        if self.agent:
            await sync_to_async(presence.mark_offline)(
                user_id=self.user.pk, socket=self.channel_name
            )
            await events.publish_presence(await sync_to_async(_agents)())

    async def send_frame(self, type_: str, data: Any, request_id: Any = None) -> None:
        await self.send(text_data=frames.encode(type_, data, request_id))

    async def send_error(self, error: ApiError, request_id: Any = None) -> None:
        await self.send_frame("error", error.payload(), request_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request_id = None
        try:
            frame = frames.parse(text_data)
            request_id = frames.request_id_of(frame)
            if self.user is None:
                raise ApiError("ACCESS_DENIED", "Not signed in.")
            if frame["type"] != "ping":
                raise ApiError(
                    "INVALID_REQUEST_FORMAT",
                    "The inbox socket takes only ping; act through /api/staff/.",
                    details={"type": frame["type"][:64]},
                )
            await self.send_frame("pong", {}, request_id)
        except ApiError as error:
            await self.send_error(error, request_id)

    # --- channel-layer events (from chat.events only) --------------------------------------

    async def inbox_item(self, event: dict[str, Any]) -> None:
        await self.send_frame("inbox_item", event["item"])

    async def inbox_presence(self, event: dict[str, Any]) -> None:
        await self.send_frame("presence", {"agents": event["agents"]})
