"""Clients of the fault suite: real sockets to a live server (WebSocket, REST JSON, REST SSE),
each call bounded in time and timed, so a test can state what a client waited."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from tests.fakes.live_server import LiveServer


async def ws_connect(server: LiveServer, session_id: str, **options: Any) -> Any:
    """A socket of the session, past ``connection_established``."""
    ws = await websockets.connect(
        f"{server.ws_url}?sessionId={session_id}",
        origin=websockets.Origin(server.base_url),
        open_timeout=5,
        proxy=None,
        **options,
    )
    try:
        async with asyncio.timeout(5):
            hello = json.loads(await ws.recv())
    except BaseException:
        await ws.close()
        raise
    assert hello["type"] == "connection_established", hello
    return ws


def chat_frame(session_id: str, content: str, request_id: str) -> str:
    return json.dumps(
        {
            "type": "chat_message",
            "data": {"content": content, "sessionId": session_id},
            "requestId": request_id,
        }
    )


async def next_frame(ws: Any, *types: str, within: float = 10.0) -> dict[str, Any]:
    """The next frame of one of ``types`` (others are skipped)."""
    async with asyncio.timeout(within):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] in types:
                return dict(frame)


@dataclass
class WsTurn:
    """What one ``chat_message`` got back on a socket."""

    received: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    tokens: list[str] = field(default_factory=list)
    closed: int | None = None  # the close code when the socket went away mid-turn
    waited: float = 0.0


async def ws_chat(
    ws: Any, session_id: str, content: str, request_id: str, *, within: float = 15.0
) -> WsTurn:
    """Send a chat message and read until ``ai_response`` or ``error`` (or the socket closes)."""
    turn = WsTurn()
    started = time.monotonic()
    try:
        await ws.send(chat_frame(session_id, content, request_id))
        async with asyncio.timeout(within):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message_received":
                    turn.received = frame["data"]
                elif frame["type"] == "ai_token":
                    turn.tokens.append(frame["data"]["delta"])
                elif frame["type"] == "ai_response":
                    turn.response = frame["data"]
                    break
                elif frame["type"] == "error" and frame.get("requestId") == request_id:
                    turn.error = frame["data"]
                    break
    except websockets.ConnectionClosed as closed:
        turn.closed = closed.rcvd.code if closed.rcvd else 1006
    finally:
        turn.waited = time.monotonic() - started
    return turn


@dataclass
class RestTurn:
    """What one ``POST /api/chat`` got back (JSON or SSE)."""

    status: int | None = None  # None: no HTTP answer at all (connection refused, cut)
    body: dict[str, Any] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failure: str = ""
    waited: float = 0.0

    def event(self, name: str) -> dict[str, Any] | None:
        return next((data for event, data in self.events if event == name), None)


async def rest_chat(
    client: httpx.AsyncClient,
    session_id: str,
    message: str,
    request_id: str,
    *,
    stream: bool = False,
    within: float = 15.0,
) -> RestTurn:
    """``POST /api/chat``; with ``stream`` as SSE (every event read until the stream ends)."""
    turn = RestTurn()
    started = time.monotonic()
    payload = {"sessionId": session_id, "message": message, "requestId": request_id}
    headers = {"Accept": "text/event-stream"} if stream else {}
    try:
        async with asyncio.timeout(within):
            async with client.stream(
                "POST", "/api/chat", json=payload, headers=headers
            ) as response:
                turn.status = response.status_code
                if stream and response.status_code == 200:
                    turn.events = await _read_sse(response)
                else:
                    raw = await response.aread()
                    try:
                        turn.body = json.loads(raw)
                    except ValueError:
                        turn.failure = f"not JSON: {raw[:200]!r}"
    except (httpx.HTTPError, TimeoutError) as exc:
        turn.failure = f"{type(exc).__name__}: {exc}"
    finally:
        turn.waited = time.monotonic() - started
    return turn


async def _read_sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            events.append((name, json.loads(data)))
            name, data = "message", ""
    return events


def stored_messages(server: LiveServer, session_id: str) -> list[dict[str, Any]]:
    """Every stored message of the session, oldest first, as ``GET /api/session/{id}`` pages
    them (call it once the session's traffic has stopped)."""
    messages: list[dict[str, Any]] = []
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        offset = 0
        while True:
            response = client.get(
                f"/api/session/{session_id}", params={"limit": 100, "offset": offset}
            )
            response.raise_for_status()
            page = response.json()["recentMessages"]
            messages.extend(page)
            if len(page) < 100:
                break
            offset += 100
    return sorted(messages, key=lambda message: message["seq"])
