"""Two daphne processes on one REDIS_URL: a session's messages reach sockets on both."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import websockets

from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply


@pytest.fixture
def two_servers(tmp_path, redis_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    with FakeOpenAIServer() as model:
        model.set_default(Reply("Seen by both processes."))
        env = {
            "REDIS_URL": redis_url,
            "LLM_BASE_URL": model.base_url,
            "LLM_MODEL": "fake-model",
            "LLM_API_KEY": "test-key",
        }
        # One data directory: both processes share the SQLite database, as they would share
        # PostgreSQL in production; what crosses between them here is the Redis channel layer.
        first = LiveServer(tmp_path, env=env).prepare()
        second = LiveServer(tmp_path, env=env)
        try:
            first.start()
            second.start()
            yield first, second
        finally:
            first.close()
            second.close()


async def connect(server: LiveServer, session_id: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"{server.ws_url}?sessionId={session_id}", origin=websockets.Origin(server.base_url)
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "connection_established"
    return ws


async def next_of(ws: websockets.ClientConnection, type_: str) -> dict:
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == type_:
                return frame


async def test_messages_reach_sockets_on_both_processes(two_servers) -> None:
    first, second = two_servers
    session_id = first.create_session()
    on_first = await connect(first, session_id)
    other_tab_on_first = await connect(first, session_id)
    on_second = await connect(second, session_id)
    await on_first.send(
        json.dumps(
            {
                "type": "chat_message",
                "data": {"content": "Hello from process one", "sessionId": session_id},
                "requestId": "two-1",
            }
        )
    )
    answer = await next_of(on_first, "ai_response")
    for ws in (on_second, other_tab_on_first):
        user = await next_of(ws, "message")
        assistant = await next_of(ws, "message")
        assert (user["data"]["seq"], user["data"]["content"]) == (1, "Hello from process one")
        assert assistant["data"]["messageId"] == answer["data"]["messageId"]
        assert assistant["data"]["content"] == "Seen by both processes."

    # And back: a turn asked on the second process reaches the first.
    await on_second.send(
        json.dumps(
            {
                "type": "chat_message",
                "data": {"content": "And from process two", "sessionId": session_id},
                "requestId": "two-2",
            }
        )
    )
    await next_of(on_second, "ai_response")
    seqs = [(await next_of(on_first, "message"))["data"]["seq"] for _ in range(2)]
    assert seqs == [3, 4]
    for ws in (on_first, other_tab_on_first, on_second):
        await ws.close()
