"""Fan-out: the only module that sends to the channel layer.

A session's new messages and state changes reach every socket watching it: all of the user's
tabs and every staff watcher, in this process or, with ``REDIS_URL`` (channels_redis), in any
daphne process. Only whole, committed messages travel here; token deltas go straight from the
turn to the socket that asked (``chat.turns``), never through the layer.

Callers publish after the data is committed: async code awaits the ``publish_*`` coroutines once
its write has returned (our writes commit before they return); sync code inside a transaction
uses ``on_commit``, which waits for the outermost commit.

Groups (names the layer accepts: ASCII letters, digits, ``_.-``):

- ``session.<id>``: every socket of the session (user tabs and staff watchers).
- ``watch.<id>``: staff watchers only (the user's typing indicator, drafts, internal notes).
- ``staff.inbox``: every staff inbox socket (hand-off items, who is online).

Event types are the consumer's handler names (``session.message`` → ``session_message``).
A failed send is logged and counted, never raised, and bounded in time (``SEND_TIMEOUT_SECONDS``):
the message is stored, and a client that missed it gets it on ``resume``. A turn never waits on
its fan-out: ``publish_soon`` sends in the background, in order, while the asking client already
has its answer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat import wire
from chat.models import Message
from supportbot import metrics

log = structlog.get_logger("chat.events")

# Longest a send waits for the channel layer (a hung Redis) before it is given up.
SEND_TIMEOUT_SECONDS = 5.0
# Background sends in flight (the event loop keeps only weak references to tasks).
_background: set[asyncio.Future[None]] = set()


def session_group(session_id: str) -> str:
    return f"session.{session_id}"


def watchers_group(session_id: str) -> str:
    return f"watch.{session_id}"


INBOX_GROUP = "staff.inbox"


async def _send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await layer.group_send(group, event)
    except Exception:
        metrics.incr("fanout_errors")
        # Not ``event=``: structlog's first argument is the event (the log line's name).
        log.warning("fanout_failed", group=group, event_type=event.get("type"), exc_info=True)


async def publish_messages(
    session_id: str, messages: Iterable[Message], *, origin: str | None = None
) -> None:
    """Every socket of the session gets these stored messages as ``message`` frames.

    ``origin`` is the channel name of the socket whose turn produced them: it already has them
    (``message_received``, ``ai_response``) and skips the copy.
    """
    for message in messages:
        event = {"type": "session.message", "message": wire.message(message), "origin": origin}
        await _send(session_group(session_id), event)


def publish_soon(
    session_id: str,
    messages: Iterable[Message],
    *,
    origin: str | None = None,
    after: asyncio.Future[None] | None = None,
) -> asyncio.Future[None]:
    """``publish_messages`` in the background, after ``after`` (an earlier ``publish_soon``, so
    the session's messages go out in order). The caller never waits on the channel layer."""
    messages = list(messages)

    async def send() -> None:
        if after is not None:
            await asyncio.wait([after])  # its outcome is its own; only the order matters here
        await publish_messages(session_id, messages, origin=origin)

    task = asyncio.ensure_future(send())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def publish_typing(session_id: str, *, is_typing: bool, origin: str) -> None:
    """Staff watching the session see whether the user is typing."""
    event = {"type": "session.typing", "isTyping": is_typing, "origin": origin}
    await _send(watchers_group(session_id), event)


async def publish_notice(
    session_id: str, *, level: str, message: str, origin: str | None = None
) -> None:
    """A ``system_notification`` for every socket of the session (e.g. staff joined)."""
    event = {"type": "session.notice", "level": level, "message": message, "origin": origin}
    await _send(session_group(session_id), event)


def session_ended_on_commit(session_id: str) -> None:
    """Once the end is committed, every socket of the session is told and closed."""

    def send() -> None:
        async_to_sync(_send)(session_group(session_id), {"type": "session.ended"})

    transaction.on_commit(send)


def publish_on_commit(session_id: str, messages: list[Message]) -> None:
    """From sync code (a Celery worker): ``publish_messages`` once the write is committed."""

    def send() -> None:
        async_to_sync(publish_messages)(session_id, messages)

    transaction.on_commit(send)


def publish_workflow_progress(session_id: str, body: dict[str, Any]) -> None:
    """Every socket of the session gets the execution's state as ``workflow_progress``.

    From the process that runs the workflow: with ``REDIS_URL`` that reaches every daphne
    process; with the in-memory layer only sockets of the same process (clients can always
    poll ``GET /api/workflow/{id}``).
    """
    async_to_sync(_send)(session_group(session_id), {"type": "session.workflow", "body": body})


# --- hand-offs (chat.handoff, chat.takeover, chat.drafts): all sent once committed --------------


def _after_commit(sends: list[tuple[str, dict[str, Any]]], *, order: str) -> None:
    """Send once the outermost transaction commits. In a server process the sends are handed
    to its event loop and the database thread goes on at once: waiting for them there would
    hold every other request's queries behind the channel layer. They go out after those
    handed over before them under the same ``order`` key (one conversation's state, one inbox
    item), never behind another conversation's. Elsewhere (a Celery worker, a management
    command) they are sent before returning."""

    async def all_of_them() -> None:
        for group, event in sends:
            await _send(group, event)

    def send() -> None:
        loop = _server_loop()
        if loop is None:
            async_to_sync(all_of_them)()
        else:
            loop.call_soon_threadsafe(_send_in_order, order, all_of_them)

    transaction.on_commit(send)


# The last sends handed over per order key, until they are done (touched on the event loop only).
_in_order: dict[str, asyncio.Future[None]] = {}


def _send_in_order(order: str, sends: Callable[[], Awaitable[None]]) -> None:
    """On the event loop: run ``sends`` once those handed over before it under ``order`` are."""
    before = _in_order.get(order)

    async def run() -> None:
        if before is not None and not before.done():
            await asyncio.wait([before])
        await sends()

    task = asyncio.ensure_future(run())
    _background.add(task)
    _in_order[order] = task

    def done(finished: asyncio.Future[None]) -> None:
        _background.discard(finished)
        if _in_order.get(order) is finished:
            del _in_order[order]

    task.add_done_callback(done)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop that called into this thread through ``sync_to_async``, while it runs."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    if loop.is_closed() or not loop.is_running():
        return None
    return loop


def handoff_changed_on_commit(
    session_id: str, *, status: dict[str, Any], notice: str | None = None
) -> None:
    """Every socket of the session gets ``handoff_status`` (and the notice, if any)."""
    sends: list[tuple[str, dict[str, Any]]] = []
    if notice:
        sends.append(
            (
                session_group(session_id),
                {"type": "session.notice", "level": "info", "message": notice},
            )
        )
    sends.append((session_group(session_id), {"type": "session.handoff", "status": status}))
    _after_commit(sends, order=session_group(session_id))


def inbox_changed_on_commit(item: dict[str, Any]) -> None:
    """Every staff inbox socket gets the item as it now is (``inbox_item``)."""
    _after_commit(
        [(INBOX_GROUP, {"type": "inbox.item", "item": item})], order=f"inbox.{item['handoffId']}"
    )


def staff_note_on_commit(session_id: str, note: dict[str, Any]) -> None:
    """Staff watching the session get an internal note (never the customer's sockets)."""
    event = {"type": "session.staff_note", "note": note}
    _after_commit([(watchers_group(session_id), event)], order=watchers_group(session_id))


def draft_on_commit(session_id: str, draft: dict[str, Any]) -> None:
    """Staff watching the session get a drafted reply (never the customer's sockets)."""
    event = {"type": "session.draft", "draft": draft}
    _after_commit([(watchers_group(session_id), event)], order=watchers_group(session_id))


async def publish_presence(agents: list[dict[str, Any]]) -> None:
    """Every staff inbox socket learns who is online now."""
    await _send(INBOX_GROUP, {"type": "inbox.presence", "agents": agents})
