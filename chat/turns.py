"""WebSocket turns, owned by the process rather than by the socket that asked.

A ``chat_message`` becomes a ``SocketTurn``: an asyncio task that drives ``pipeline.run_turn`` and
relays its events to the socket attached to it, if any. The socket may go away mid-answer: the
turn keeps running, the answer is stored (and fanned out by ``chat.events``), and the client gets
it on ``resume``. The same ``requestId`` sent again while the turn runs in this process attaches
the new socket to it (it receives what was streamed so far as one ``ai_token``, then the rest);
sent again after it ended, the pipeline replays the stored answer — never a second answer.

Token deltas are coalesced: at most one ``ai_token`` frame per ``TOKEN_FRAME_INTERVAL`` per
socket (the first one goes out at once), so a fast model cannot flood a slow client.

Turns of one session in this process run one after another in arrival order (across processes
the pipeline's lease serialises them).

When daphne shuts down (SIGTERM, Ctrl-C), running turns get ``SHUTDOWN_GRACE_SECONDS`` to finish;
the rest are cancelled, which stores what was streamed as an incomplete answer (or marks the
message unanswered) and frees the session's lease, so the next process can answer at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Protocol

import structlog
from twisted.internet.defer import Deferred

from chat import wire
from chat.pipeline import run_turn
from chat.turn_events import TokenDelta, ToolStarted, TurnDone, TurnFailed, UserMessageStored
from supportbot.errors import ApiError

log = structlog.get_logger("chat.turns")

TOKEN_FRAME_INTERVAL = 0.05  # seconds: at most ~20 ai_token frames a second per socket
SHUTDOWN_GRACE_SECONDS = 5.0


class Listener(Protocol):
    """What a turn needs of a socket (the consumer)."""

    channel_name: str

    async def send_frame(self, type_: str, data: Any, request_id: Any = None) -> None: ...


class SocketTurn:
    def __init__(
        self,
        *,
        session_id: str,
        content: str,
        request_id: str,
        metadata: Any,
        client_ip: str,
        listener: Listener,
        after: asyncio.Task[None] | None,
    ) -> None:
        self.session_id = session_id
        self.content = content
        self.request_id = request_id
        self.metadata = metadata
        self.client_ip = client_ip
        self.listener: Listener | None = listener
        self.origin = listener.channel_name
        self.after = after
        self.received: dict[str, Any] | None = None  # the message_received data, once stored
        self.answer_id: str | None = None
        self.streamed: list[str] = []
        self.pending: list[str] = []
        self.last_flush = 0.0
        self.flush_timer: asyncio.TimerHandle | None = None
        self.send_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.flush_task: asyncio.Future[None] | None = None

    # --- the socket side -------------------------------------------------------------------

    async def _emit(self, type_: str, data: Any) -> None:
        listener = self.listener
        if listener is None:
            return
        try:
            await listener.send_frame(type_, data, self.request_id)
        except Exception:
            # The socket closed under us: the turn goes on without it.
            log.info("turn_listener_lost", session_id=self.session_id, exc_info=True)
            if self.listener is listener:
                self.listener = None

    def detach(self, listener: Listener) -> None:
        if self.listener is listener:
            self.listener = None

    async def attach(self, listener: Listener) -> None:
        """A resent ``requestId``: this socket now gets the turn, caught up first."""
        async with self.send_lock:
            self.listener = listener
            if self.received is None:
                return
            await self._emit("message_received", self.received)
            await self._emit("ai_typing", wire.typing())
            if self.answer_id and self.streamed:
                self.pending.clear()
                await self._emit("ai_token", wire.token(self.answer_id, "".join(self.streamed)))

    # --- coalescing ------------------------------------------------------------------------

    async def _flush(self) -> None:
        async with self.send_lock:
            if self.flush_timer is not None:
                self.flush_timer.cancel()
                self.flush_timer = None
            if not self.pending or self.answer_id is None:
                return
            delta = "".join(self.pending)
            self.pending.clear()
            self.last_flush = time.monotonic()
            await self._emit("ai_token", wire.token(self.answer_id, delta))

    def _flush_later(self) -> None:
        self.flush_timer = None
        if self.task is not None and not self.task.done():
            # Referenced here so it is not collected; the turn flushes again before it ends.
            self.flush_task = asyncio.ensure_future(self._flush())

    async def _on_delta(self, event: TokenDelta) -> None:
        self.answer_id = event.message_id
        self.streamed.append(event.delta)
        self.pending.append(event.delta)
        wait = TOKEN_FRAME_INTERVAL - (time.monotonic() - self.last_flush)
        if wait <= 0:
            await self._flush()
        elif self.flush_timer is None:
            self.flush_timer = asyncio.get_running_loop().call_later(wait, self._flush_later)

    # --- the turn --------------------------------------------------------------------------

    async def run(self) -> None:
        if self.after is not None:
            # Earlier turns of this session go first; how they ended does not matter here.
            await asyncio.wait([self.after])
        try:
            async for event in run_turn(
                session_id=self.session_id,
                content=self.content,
                request_id=self.request_id,
                metadata=self.metadata,
                client_ip=self.client_ip,
                transport="websocket",
                origin=self.origin,
            ):
                if isinstance(event, UserMessageStored):
                    self.received = wire.message_received(event)
                    async with self.send_lock:
                        await self._emit("message_received", self.received)
                        await self._emit("ai_typing", wire.typing())
                elif isinstance(event, TokenDelta):
                    await self._on_delta(event)
                elif isinstance(event, ToolStarted):
                    await self._flush()
                    async with self.send_lock:
                        await self._emit("ai_typing", wire.typing(event))
                elif isinstance(event, TurnDone):
                    await self._flush()
                    async with self.send_lock:
                        await self._emit("ai_response", wire.answer_ws(event))
                elif isinstance(event, TurnFailed):
                    await self._flush()
                    async with self.send_lock:
                        await self._emit("error", event.error.payload())
        except ApiError as exc:
            await self._emit("error", exc.payload())
        except Exception:
            log.exception("turn_crashed", session_id=self.session_id)
            error = ApiError("INTERNAL_ERROR", "The message could not be answered; try again.")
            await self._emit("error", error.payload())
        finally:
            if self.flush_timer is not None:
                self.flush_timer.cancel()


class TurnRegistry:
    """The running turns of this process, by session and requestId."""

    def __init__(self) -> None:
        self.turns: dict[tuple[str, str], SocketTurn] = {}
        self.last_by_session: dict[str, asyncio.Task[None]] = {}
        self.shutdown_hooked = False

    def running(self, session_id: str, request_id: str) -> SocketTurn | None:
        return self.turns.get((session_id, request_id))

    def queued(self, session_id: str) -> int:
        return sum(1 for key in self.turns if key[0] == session_id)

    def start(
        self,
        *,
        session_id: str,
        content: str,
        request_id: str,
        metadata: Any,
        client_ip: str,
        listener: Listener,
    ) -> SocketTurn:
        self._hook_shutdown()
        key = (session_id, request_id)
        turn = SocketTurn(
            session_id=session_id,
            content=content,
            request_id=request_id,
            metadata=metadata,
            client_ip=client_ip,
            listener=listener,
            after=self.last_by_session.get(session_id),
        )
        task = asyncio.get_running_loop().create_task(turn.run())
        turn.task = task
        self.turns[key] = turn
        self.last_by_session[session_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self.turns.get(key) is turn:
                del self.turns[key]
            if self.last_by_session.get(session_id) is task:
                del self.last_by_session[session_id]

        task.add_done_callback(done)
        return turn

    def detach(self, listener: Listener) -> None:
        for turn in list(self.turns.values()):
            turn.detach(listener)

    def _hook_shutdown(self) -> None:
        """Under daphne (Twisted's reactor), finish or cancel running turns before it exits."""
        if self.shutdown_hooked:
            return
        self.shutdown_hooked = True
        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is None:
            return

        def before_shutdown() -> Deferred[None]:
            return Deferred.fromFuture(asyncio.ensure_future(self.shutdown()))

        reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)

    async def shutdown(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        tasks = [turn.task for turn in self.turns.values() if turn.task is not None]
        if not tasks:
            return
        log.info("turns_draining", running=len(tasks))
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            log.warning("turns_cancelled_at_shutdown", count=len(late))
            # Cancelled turns record what they have (shielded database writes); wait for that.
            await asyncio.wait(late, timeout=grace)

    async def drain(self) -> None:
        """Wait for the running turns (tests, graceful shutdown; callers bound the wait)."""
        tasks = [turn.task for turn in self.turns.values() if turn.task is not None]
        if tasks:
            await asyncio.wait(tasks)


registry = TurnRegistry()
