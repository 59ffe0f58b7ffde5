"""WebSocket transport at ``/ws?sessionId=...`` (API.md "WebSocket"). Thin: parse, validate,
dispatch; turns run in ``chat.pipeline`` through ``chat.turns``, fan-out comes from ``chat.events``.

Frames are read and checked by ``chat.frames``; every bad frame gets an ``error`` frame and the
socket stays usable. A client's ``type`` is only ever looked up in ``HANDLERS``; it never names a
method or a channel-layer handler.

Staff watch a session with ``/ws?sessionId=...&watch=1`` while logged in to the admin (with the
permission to view sessions): they get the session's ``message`` frames, the user's ``typing``,
drafted replies and internal notes (``reply_draft``, ``staff_note``), and may send only ``ping``
and ``resume``. Watching is silent; an agent "joins" by taking the conversation over
(``chat.takeover``). The customer asks for a person with ``handoff_request`` and hears about it
in ``handoff_status`` frames (``chat.handoff``).

Close codes:

- 4004: the session is unknown, expired, ended or malformed (an ``error`` frame with
  ``INVALID_SESSION`` is sent first), or it ended or expired while connected.
- 4003: ``watch=1`` without a staff login that may view sessions (``ACCESS_DENIED`` first).
- 4029: too many open sockets for the session or the client address
  (``CONCURRENT_LIMIT_EXCEEDED`` first; ``chat/guards/sockets.py``).
- 1009: a frame over 1 MiB (daphne's limit, see ``supportbot/server.py``), closed before it
  reaches us; frames over 64 KiB and up to that get an ``error`` frame (``MESSAGE_TOO_LONG``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import structlog
from asgiref.sync import sync_to_async
from channels.auth import get_user
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import events, frames, wire
from chat.guards import sockets
from chat.handoff import handoff_status, request_handoff
from chat.lifecycle import watch_expiry
from chat.models import Handoff
from chat.sessions import last_stored_seq, messages_after, session_get
from chat.turns import registry
from supportbot import metrics, ratelimit
from supportbot.clients import scope_client_ip
from supportbot.errors import ApiError

log = structlog.get_logger("chat.consumers")

CLOSE_INVALID_SESSION = 4004
CLOSE_ACCESS_DENIED = 4003
CAPABILITIES = ["chat", "voice", "tools", "workflows"]
MAX_QUEUED_TURNS = 5  # per session in this process: running plus waiting
RESUME_BATCH = 200
REMEMBERED_IDS = 512  # message ids this socket got directly, so fan-out does not repeat them

Handler = Callable[["ChatConsumer", dict[str, Any], str | None], Awaitable[None]]


async def dispatch_without_closing_connections(self: Any, message: dict[str, Any]) -> None:
    """Channels' dispatch without its ``close_old_connections`` before every message (the
    ``dispatch`` of every socket consumer here).

    With ``CONN_MAX_AGE=0`` that closed the shared sync thread's database connection before
    every frame and every fan-out message, so each turn reopened it several times (a sixth of
    the server's CPU under load) for a thread that lives as long as the process; and each of
    those was a trip to that thread, so a fan-out message waited behind every query queued
    there. The database work of sockets runs on that thread and keeps its connection; each turn
    starts with ``supportbot.db.refresh_kept_connections``, which replaces it if it broke.
    """
    handler = getattr(self, get_handler_name(message), None)
    if handler is None:
        raise ValueError(f"No handler for message type {message['type']}")
    await handler(message)


class ChatConsumer(AsyncWebsocketConsumer):
    session_id: str = ""
    watcher: bool = False
    slot: sockets.Slot | None = None

    dispatch = dispatch_without_closing_connections

    # --- sending ---------------------------------------------------------------------------

    async def send_frame(self, type_: str, data: Any, request_id: Any = None) -> None:
        if type_ in ("message_received", "ai_response", "message"):
            self._remember(data.get("messageId"))
        await self.send(text_data=frames.encode(type_, data, request_id))

    async def send_error(self, error: ApiError, request_id: Any = None) -> None:
        metrics.incr("errors", code=error.code, transport="ws")
        await self.send_frame("error", error.payload(), request_id)

    def _remember(self, message_id: Any) -> None:
        if not isinstance(message_id, str):
            return
        self.delivered[message_id] = None
        if len(self.delivered) > REMEMBERED_IDS:
            self.delivered.popitem(last=False)

    # --- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        self.delivered: OrderedDict[str, None] = OrderedDict()
        self.joined: list[str] = []
        self.expiry_task: asyncio.Task[None] | None = None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        session_id = (query.get("sessionId") or [""])[0]
        self.watcher = (query.get("watch") or [""])[0] in ("1", "true")
        await self.accept()
        if self.watcher and not await self._may_watch():
            await self.send_error(
                ApiError("ACCESS_DENIED", "Watching needs a staff login that may view sessions.")
            )
            await self.close(code=CLOSE_ACCESS_DENIED)
            return
        try:
            session = await sync_to_async(session_get)(session_id=session_id, allow_ended=False)
        except ApiError:
            await self.send_error(ApiError("INVALID_SESSION", "Unknown, expired or ended session."))
            await self.close(code=CLOSE_INVALID_SESSION)
            return
        try:
            self.slot = await sockets.admit(
                session_id=session.id,
                client=scope_client_ip(self.scope),
                watcher=self.watcher,
                member=self.channel_name,
            )
        except ApiError as refused:
            await self.send_error(refused)
            await self.close(code=sockets.CLOSE_TOO_MANY_SOCKETS)
            return
        self.session_id = session.id
        groups = [events.session_group(session.id)]
        if self.watcher:
            groups.append(events.watchers_group(session.id))
        if self.channel_layer is not None:
            for group in groups:
                await self.channel_layer.group_add(group, self.channel_name)
                self.joined.append(group)
        await self.send_frame(
            "connection_established", wire.connection_established(self.session_id, CAPABILITIES)
        )
        self.expiry_task = asyncio.ensure_future(
            watch_expiry(
                session.id,
                (session.status, session.expires_at),
                warn=lambda remaining, expires_at: self.send_frame(
                    "system_notification", wire.expiry_warning(remaining, expires_at)
                ),
                gone=lambda: self._close_ended("This conversation has ended or expired."),
            )
        )
        if session.handoff_status:
            status = await sync_to_async(handoff_status)(session_id=session.id)
            await self.send_frame("handoff_status", status)

    async def _may_watch(self) -> bool:
        user = await get_user(self.scope)
        if not (user.is_active and user.is_staff):
            return False
        return bool(await sync_to_async(user.has_perm)("chat.view_chatsession"))

    async def disconnect(self, code: int) -> None:
        registry.detach(self)
        if self.slot is not None:
            slot, self.slot = self.slot, None
            await sockets.release(slot)
        if self.expiry_task is not None:
            self.expiry_task.cancel()
        if self.channel_layer is not None:
            for group in self.joined:
                await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []

    async def _close_ended(self, message: str) -> None:
        await self.send_error(ApiError("INVALID_SESSION", message))
        await self.close(code=CLOSE_INVALID_SESSION)

    # --- receiving -------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request_id: str | None = None
        try:
            frame: dict[str, Any] | None = None
            bad_frame: ApiError | None = None
            try:
                frame = frames.parse(text_data)
            except ApiError as unreadable:
                bad_frame = unreadable
            else:
                with contextlib.suppress(ApiError):
                    request_id = frames.request_id_of(frame)
                try:
                    frames.refuse_unstorable_fields(frame, text_data or "")
                except ApiError as unstorable:
                    frame, bad_frame = None, unstorable
            if self.session_id and not self.watcher:
                # Every frame counts, readable or not, before anything is done with it.
                ratelimit.hit(
                    ("session_ws_messages", self.session_id),
                    session_id=self.session_id,
                    client_ip=scope_client_ip(self.scope),
                )
            if frame is None:
                assert bad_frame is not None
                raise bad_frame
            if not self.session_id:
                raise ApiError("INVALID_SESSION", "This socket has no session.")
            request_id = frames.request_id_of(frame)
            handler = HANDLERS.get(frame["type"])
            if handler is None:
                raise ApiError(
                    "INVALID_REQUEST_FORMAT",
                    "Unknown frame type.",
                    details={"type": frame["type"][:64]},
                )
            if self.watcher and frame["type"] not in ("ping", "resume"):
                raise ApiError("ACCESS_DENIED", "Staff watchers may only ping and resume.")
            await handler(self, frame, request_id)
        except ApiError as error:
            await self.send_error(error, request_id)
        except Exception:
            log.exception("frame_failed", session_id=self.session_id)
            await self.send_error(
                ApiError("INTERNAL_ERROR", "The frame could not be handled."), request_id
            )

    # --- frame handlers --------------------------------------------------------------------

    async def on_ping(self, frame: dict[str, Any], request_id: str | None) -> None:
        await self.send_frame("pong", {}, request_id)

    async def on_chat_message(self, frame: dict[str, Any], request_id: str | None) -> None:
        if request_id is None:
            raise ApiError(
                "MISSING_REQUIRED_FIELD",
                "chat_message needs a requestId.",
                details={"field": "requestId"},
            )
        data = frames.data_of(frame)
        content = frames.field(data, "content", str, "a string")
        session_id = frames.field(data, "sessionId", str, "a string")
        if session_id != self.session_id:
            raise ApiError(
                "INVALID_SESSION",
                "data.sessionId is not this socket's session.",
                details={"field": "sessionId"},
            )
        running = registry.running(self.session_id, request_id)
        if running is not None:
            await running.attach(self)
            return
        if registry.queued(self.session_id) >= MAX_QUEUED_TURNS:
            raise ApiError(
                "CONCURRENT_LIMIT_EXCEEDED",
                "Too many messages of this conversation are waiting for an answer.",
                retry_after=5,
            )
        registry.start(
            session_id=self.session_id,
            content=content,
            request_id=request_id,
            metadata=data.get("metadata"),
            client_ip=scope_client_ip(self.scope),
            listener=self,
        )

    async def on_typing(self, frame: dict[str, Any], request_id: str | None) -> None:
        is_typing = frames.field(frames.data_of(frame), "isTyping", bool, "true or false")
        await events.publish_typing(self.session_id, is_typing=is_typing, origin=self.channel_name)

    async def on_resume(self, frame: dict[str, Any], request_id: str | None) -> None:
        last_seq = frames.field(frames.data_of(frame), "lastSeq", int, "a whole number")
        if last_seq < 0:
            raise ApiError(
                "INVALID_FIELD_VALUE",
                "data.lastSeq must be 0 or more.",
                details={"field": "lastSeq"},
            )
        cursor = last_seq
        while True:
            batch = await sync_to_async(messages_after)(self.session_id, cursor, RESUME_BATCH)
            for message in batch:
                await self.send_frame("message", wire.message(message), request_id)
            if batch:
                cursor = batch[-1].seq
            if len(batch) < RESUME_BATCH:
                break
        if cursor == last_seq and last_seq > 0:
            # Nothing after it: report the session's real last seq, never a number the client
            # made up (a client ahead of the server learns where the conversation really is).
            cursor = min(last_seq, await sync_to_async(last_stored_seq)(self.session_id))
        await self.send_frame("resume_complete", wire.resume_complete(cursor), request_id)

    async def on_handoff_request(self, frame: dict[str, Any], request_id: str | None) -> None:
        """The customer asks for a person (or changes the request: a contact address, whether
        the bot should keep answering meanwhile)."""
        data = frames.data_of(frame, required=False)
        reason = data.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ApiError(
                "INVALID_FIELD_VALUE", "data.reason must be a string.", details={"field": "reason"}
            )
        stop_bot = data.get("stopBot")
        if stop_bot is not None and not isinstance(stop_bot, bool):
            raise ApiError(
                "INVALID_FIELD_VALUE",
                "data.stopBot must be true or false.",
                details={"field": "stopBot"},
            )
        result = await sync_to_async(request_handoff)(
            session_id=self.session_id,
            reason=Handoff.Reason.CUSTOMER,
            note=reason or "",
            contact_email=data.get("contactEmail"),
            stop_bot=stop_bot,
        )
        await self.send_frame("handoff_status", result.status, request_id)

    async def on_voice_input(self, frame: dict[str, Any], request_id: str | None) -> None:
        ratelimit.hit(
            ("session_voice", self.session_id),
            session_id=self.session_id,
            client_ip=scope_client_ip(self.scope),
        )
        duration = frames.data_of(frame).get("duration")
        limit = settings.RATE_LIMIT_VOICE_MAX_SECONDS
        if (
            isinstance(duration, int | float)
            and not isinstance(duration, bool)
            and not 0 < duration <= limit
        ):
            raise ApiError(
                "INVALID_FIELD_VALUE",
                f"A voice input lasts at most {limit:g} seconds.",
                details={"field": "duration", "max": limit},
            )
        raise ApiError(
            "SERVICE_DEGRADED", "Voice input is not available on this server yet; type instead."
        )

    # --- channel-layer events (from chat.events only) --------------------------------------

    async def session_message(self, event: dict[str, Any]) -> None:
        message = event["message"]
        if event.get("origin") == self.channel_name or message["messageId"] in self.delivered:
            return
        await self.send_frame("message", message)

    async def session_typing(self, event: dict[str, Any]) -> None:
        if event.get("origin") != self.channel_name:
            await self.send_frame("typing", wire.peer_typing(self.session_id, event["isTyping"]))

    async def session_notice(self, event: dict[str, Any]) -> None:
        if event.get("origin") != self.channel_name:
            await self.send_frame(
                "system_notification", wire.notification(event["level"], event["message"])
            )

    async def session_handoff(self, event: dict[str, Any]) -> None:
        await self.send_frame("handoff_status", event["status"])

    async def session_draft(self, event: dict[str, Any]) -> None:
        if self.watcher:  # staff only, and only watchers are in the group that carries it
            await self.send_frame("reply_draft", event["draft"])

    async def session_staff_note(self, event: dict[str, Any]) -> None:
        if self.watcher:
            await self.send_frame("staff_note", event["note"])

    async def session_workflow(self, event: dict[str, Any]) -> None:
        await self.send_frame("workflow_progress", event["body"])

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.send_frame(
            "system_notification", wire.notification("info", wire.SESSION_ENDED_NOTICE)
        )
        await self._close_ended(wire.SESSION_ENDED_NOTICE)


HANDLERS: dict[str, Handler] = {
    "ping": ChatConsumer.on_ping,
    "chat_message": ChatConsumer.on_chat_message,
    "typing": ChatConsumer.on_typing,
    "resume": ChatConsumer.on_resume,
    "voice_input": ChatConsumer.on_voice_input,
    "handoff_request": ChatConsumer.on_handoff_request,
}
