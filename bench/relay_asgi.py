"""The bare relay of ``bench/ws_bench.py``: raw ASGI, no Django, no Channels.

    RELAY_MODEL_URL=http://127.0.0.1:MODEL_PORT/v1 \\
    python -m supportbot.server -b 127.0.0.1 -p PORT bench.relay_asgi:application

On connect it accepts and sends ``connection_established``; a ``chat_message`` frame opens a
streamed chat completion to the fake model (the ``openai`` client, posting plain JSON the way
supportbot's provider does) and forwards the deltas as ``ai_token`` frames coalesced by the same
rule as supportbot (the first at once, then at most one every ``RELAY_COALESCE_MS``, default 50),
then ``ai_response`` with the whole text. Any other frame is ignored (``ping`` gets ``pong``).
Used idle, it is also the bare server of the idle-connection benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

COALESCE = float(os.environ.get("RELAY_COALESCE_MS", "50")) / 1000

_client: Any = None


def _openai() -> Any:
    global _client
    if _client is None:
        from openai import AsyncOpenAI

        _client = AsyncOpenAI(
            base_url=os.environ.get("RELAY_MODEL_URL", "http://127.0.0.1:1/v1"),
            api_key="bench",
            max_retries=0,
        )
    return _client


def _frame(type_: str, data: Any, request_id: str | None) -> str:
    frame: dict[str, Any] = {"type": type_, "data": data, "timestamp": int(time.time() * 1000)}
    if request_id is not None:
        frame["requestId"] = request_id
    return json.dumps(frame)


class _Relay:
    """One turn: the model's deltas to the socket, coalesced."""

    def __init__(self, send: Send, request_id: str | None, message_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.message_id = message_id
        self.pending: list[str] = []
        self.last_flush = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.lock = asyncio.Lock()
        self.flushes: set[asyncio.Task[None]] = set()

    async def flush(self) -> None:
        async with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if not self.pending:
                return
            delta = "".join(self.pending)
            self.pending.clear()
            self.last_flush = time.monotonic()
            text = _frame(
                "ai_token", {"messageId": self.message_id, "delta": delta}, self.request_id
            )
            await self.send({"type": "websocket.send", "text": text})

    def _flush_later(self) -> None:
        self.timer = None
        task = asyncio.ensure_future(self.flush())
        self.flushes.add(task)
        task.add_done_callback(self.flushes.discard)

    async def delta(self, text: str) -> None:
        self.pending.append(text)
        wait = COALESCE - (time.monotonic() - self.last_flush)
        if wait <= 0:
            await self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(wait, self._flush_later)

    async def run(self, content: str) -> None:
        parts: list[str] = []
        stream = await _openai().post(
            "/chat/completions",
            body={
                "model": os.environ.get("RELAY_MODEL", "fake-model"),
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 1024,
                "stream": True,
            },
            cast_to=object,
            stream=True,
            stream_cls=_stream_cls(),
        )
        async for chunk in stream:
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    parts.append(piece)
                    await self.delta(piece)
        await self.flush()
        body = {"content": "".join(parts), "messageId": self.message_id}
        await self.send(
            {"type": "websocket.send", "text": _frame("ai_response", body, self.request_id)}
        )


def _stream_cls() -> Any:
    from openai import AsyncStream

    return AsyncStream[object]


async def _turns(queue: asyncio.Queue[dict[str, Any]], send: Send) -> None:
    """The turns of one socket, one after another (as supportbot runs a session's turns)."""
    number = 0
    while True:
        frame = await queue.get()
        number += 1
        request_id = frame.get("requestId")
        data = frame.get("data") or {}
        relay = _Relay(send, request_id, f"msg_relay_{id(queue):x}_{number}")
        try:
            await relay.run(str(data.get("content", "")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = {"code": "AI_SERVICE_UNAVAILABLE", "message": repr(exc)[:200]}
            with contextlib.suppress(Exception):
                await send({"type": "websocket.send", "text": _frame("error", error, request_id)})


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    established = {"sessionId": "", "serverTime": int(time.time() * 1000), "capabilities": []}
    await send(
        {"type": "websocket.send", "text": _frame("connection_established", established, None)}
    )
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    worker: asyncio.Task[None] | None = None
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event["type"] != "websocket.receive" or not event.get("text"):
                continue
            try:
                frame = json.loads(event["text"])
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            if frame.get("type") == "ping":
                text = _frame("pong", {}, frame.get("requestId"))
                await send({"type": "websocket.send", "text": text})
            elif frame.get("type") == "chat_message":
                if worker is None:
                    worker = asyncio.ensure_future(_turns(queue, send))
                queue.put_nowait(frame)
    finally:
        if worker is not None:
            worker.cancel()
