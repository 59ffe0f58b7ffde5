"""Against a real daphne process: what only a real server shows (its frame limit, shutdown)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
import websockets

from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply, Stall


def get_session(server: LiveServer, session_id: str) -> dict:
    with urllib.request.urlopen(f"{server.base_url}/api/session/{session_id}", timeout=10) as r:
        return json.load(r)


async def ask(server: LiveServer, session_id: str, content: str, request_id: str, until: str):
    async with websockets.connect(
        f"{server.ws_url}?sessionId={session_id}", origin=websockets.Origin(server.base_url)
    ) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "chat_message",
                    "data": {"content": content, "sessionId": session_id},
                    "requestId": request_id,
                }
            )
        )
        async with asyncio.timeout(15):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == until:
                    return frame


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[LiveServer, FakeOpenAIServer]]:
    with FakeOpenAIServer() as model:
        server = LiveServer(
            tmp_path_factory.mktemp("live"),
            env={"LLM_BASE_URL": model.base_url, "LLM_MODEL": "fake-model", "LLM_API_KEY": "k"},
        ).prepare()
        try:
            yield server.start(), model
        finally:
            server.close()


@pytest.fixture(scope="module")
def plain_daphne(tmp_path_factory) -> Iterator[LiveServer]:
    """The server started by plain ``daphne`` (DESIGN.md's second way to start it)."""
    server = LiveServer(tmp_path_factory.mktemp("plain"), launcher="daphne").prepare()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.mark.parametrize("launcher", ["supportbot.server", "daphne"])
async def test_a_frame_far_over_the_limit_closes_with_1009(live, plain_daphne, launcher) -> None:
    server = live[0] if launcher == "supportbot.server" else plain_daphne
    session_id = server.create_session()
    async with websockets.connect(
        f"{server.ws_url}?sessionId={session_id}",
        origin=websockets.Origin(server.base_url),
        max_size=None,
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_established"
        await ws.send('{"type": "ping"}' + " " * 100_000)  # over 64 KiB: an error, still open
        error = json.loads(await ws.recv())
        assert error["data"]["code"] == "MESSAGE_TOO_LONG"
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv())["type"] == "pong"
        await ws.send("x" * (2 * 1024 * 1024))
        async with asyncio.timeout(10):
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1009


async def test_a_lone_surrogate_echoed_back_does_not_break_the_socket(live) -> None:
    """The unknown type is echoed in the error's details; daphne must be able to encode it."""
    server, _ = live
    session_id = server.create_session()
    async with websockets.connect(
        f"{server.ws_url}?sessionId={session_id}", origin=websockets.Origin(server.base_url)
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_established"
        await ws.send('{"type": "\\ud800", "data": {}}')
        error = json.loads(await ws.recv())
        assert error["data"]["code"] == "INVALID_REQUEST_FORMAT"
        assert error["data"]["details"]["type"] == "\ud800"
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv())["type"] == "pong"


@pytest.mark.parametrize("path", ["/ws/", "/ws/x", "/other"])
async def test_another_socket_path_is_refused_cleanly(live, path: str) -> None:
    server, _ = live
    url = f"ws://127.0.0.1:{server.port}{path}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin=websockets.Origin(server.base_url)):
            pass
    assert refused.value.response.status_code == 403
    assert "No route found" not in server.log_tail(400)


async def test_stopping_the_server_mid_answer_stores_the_partial_answer(live) -> None:
    server, model = live
    model.script(Stall("Let me look into that for you right away.", chunks_before=3))
    model.set_default(Reply("Fresh answer after the restart."))
    if True:
        try:
            session_id = server.create_session()
            token = await ask(server, session_id, "Where is my order?", "stop-1", "ai_token")
            assert token["data"]["delta"]
            started = time.monotonic()
            server.stop()  # SIGTERM while the model hangs mid-answer
            assert time.monotonic() - started < 15

            server.start()
            messages = get_session(server, session_id)["recentMessages"]
            assert [(m["role"], m["status"]) for m in messages] == [
                ("user", "unanswered"),
                ("assistant", "incomplete"),
            ]
            assert messages[1]["content"].startswith("Let me look")
            # The lease was freed: the next message is answered at once, not after the lease.
            started = time.monotonic()
            answer = await ask(server, session_id, "Hello again", "stop-2", "ai_response")
            assert answer["data"]["content"] == "Fresh answer after the restart."
            assert time.monotonic() - started < 5
        finally:
            if server.process is None:
                server.start()
