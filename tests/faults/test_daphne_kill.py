"""daphne SIGKILLed mid-stream and restarted on the same port, on PostgreSQL and Redis: what was
acknowledged stays stored once, the killed turn is answered when its message is sent again (or
left unanswered, never pending), the sessions answer again within the turn lease, and ``resume``
gives every message after the client's last seq exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.faults.clients import next_frame, stored_messages, ws_chat, ws_connect
from tests.faults.conftest import RedisProcess, kill_server, live_env, running_server

TURN_LEASE_SECONDS = 3.0
QUICK = "Short answer from the model."
# 40 words a tenth of a second apart: the kill lands mid-stream.
SLOW = " ".join(f"word{n}" for n in range(40))


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        server.set_default(Reply(QUICK))
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    fault_database: str,
    redis_process: RedisProcess,
    model: FakeOpenAIServer,
) -> Iterator[LiveServer]:
    env = live_env(
        database_url=fault_database,
        redis_url=redis_process.url,
        model_url=model.base_url,
        TURN_LEASE_SECONDS=f"{TURN_LEASE_SECONDS:g}",
    )
    with running_server(tmp_path_factory, env) as live:
        yield live


async def resume(server: LiveServer, session_id: str, last_seq: int) -> list[dict[str, Any]]:
    """The ``message`` frames a fresh socket gets for ``resume`` after ``last_seq``."""
    ws = await ws_connect(server, session_id)
    try:
        await ws.send(json.dumps({"type": "resume", "data": {"lastSeq": last_seq}}))
        messages: list[dict[str, Any]] = []
        while True:
            frame = await next_frame(ws, "message", "resume_complete", within=5)
            if frame["type"] == "resume_complete":
                return messages
            messages.append(frame["data"])
    finally:
        await ws.close()


async def start_slow_turn(ws: Any, session_id: str, content: str, request_id: str) -> int:
    """Send a message whose answer streams slowly; return its seq once tokens are flowing."""
    await ws.send(
        json.dumps(
            {
                "type": "chat_message",
                "data": {"content": content, "sessionId": session_id},
                "requestId": request_id,
            }
        )
    )
    received = await next_frame(ws, "message_received", within=10)
    for _ in range(3):
        await next_frame(ws, "ai_token", within=10)
    return int(received["data"]["seq"])


async def test_daphne_killed_mid_stream_and_restarted(
    server: LiveServer, model: FakeOpenAIServer, figure: Any
) -> None:
    # Two sessions, each with an answered turn, then a slowly streamed one when daphne dies:
    # the client of "resent" sends its message again after the restart, the one of "moved_on"
    # sends a new one instead.
    sessions = {}
    for name in ("resent", "moved_on"):
        sessions[name] = await asyncio.to_thread(server.create_session)
    sockets = {name: await ws_connect(server, sid) for name, sid in sessions.items()}
    last_seen = {}
    for name, ws in sockets.items():
        first = await ws_chat(ws, sessions[name], f"{name}: first question", f"{name}-1")
        assert first.response is not None
        last_seen[name] = first.response["seq"]

    model.script(Reply(SLOW, delay=0.1), Reply(SLOW, delay=0.1))
    killed_seq = {}
    for name, ws in sockets.items():
        killed_seq[name] = await start_slow_turn(
            ws, sessions[name], f"{name}: the question daphne dies on", f"{name}-2"
        )
    kill_server(server)
    close_codes = {}
    for name, ws in sockets.items():
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        close_codes[name] = int(ws.close_code or 0)

    killed_at = time.monotonic()
    await asyncio.to_thread(server.start)
    back_at = time.monotonic()
    restarted = back_at - killed_at

    # Both clients come back at once; each must be answered within the lease of the dead turn.
    async def come_back(name: str) -> tuple[float, Any]:
        ws = await ws_connect(server, sessions[name])
        try:
            if name == "resent":
                content, request_id = f"{name}: the question daphne dies on", f"{name}-2"
            else:
                content, request_id = f"{name}: a new question after the restart", f"{name}-3"
            turn = await ws_chat(ws, sessions[name], content, request_id, within=20)
            return time.monotonic() - back_at, turn
        finally:
            await ws.close()

    back = dict(zip(sessions, await asyncio.gather(*(come_back(n) for n in sessions)), strict=True))
    resent_wait, resent = back["resent"]
    moved_wait, moved_on = back["moved_on"]

    # The resent message is the stored one (same id and seq), answered once.
    assert resent.received is not None and resent.response is not None, resent
    assert resent.received["seq"] == killed_seq["resent"]
    assert resent.response["content"] == QUICK
    assert moved_on.response is not None and moved_on.response["content"] == QUICK, moved_on

    # A client that resumes from the last seq it saw gets everything after it exactly once.
    resumed = {name: await resume(server, sid, last_seen[name]) for name, sid in sessions.items()}
    stored = {}
    for name, sid in sessions.items():
        stored[name] = await asyncio.to_thread(stored_messages, server, sid)

    figure("daphne restart (kill to /health answering)", f"{restarted:.1f} s")
    figure("close code seen by the streaming clients", close_codes)
    figure(
        "resent message answered after the restart (wait; lease)",
        f"{resent_wait:.1f} s; {TURN_LEASE_SECONDS:g} s",
    )
    figure(
        "new message answered after the restart (wait; lease)",
        f"{moved_wait:.1f} s; {TURN_LEASE_SECONDS:g} s",
    )
    for name in sessions:
        figure(
            f"{name}: stored after the restart (seq role status)",
            [(m["seq"], m["role"], m["status"]) for m in stored[name]],
        )

    for name in sessions:
        messages = stored[name]
        seqs = [m["seq"] for m in messages]
        assert seqs == list(range(1, len(seqs) + 1)), f"{name}: seqs {seqs}"
        users = Counter(m["content"] for m in messages if m["role"] == "user")
        assert all(count == 1 for count in users.values()), f"{name}: {users}"
        # Everything acknowledged before the kill is stored, once.
        assert users[f"{name}: first question"] == 1
        assert users[f"{name}: the question daphne dies on"] == 1
        by_seq = {m["seq"]: m for m in messages}
        # No message is left pending for ever.
        assert [m for m in messages if m["status"] == "pending"] == [], name
        assert [m["seq"] for m in resumed[name]] == seqs[last_seen[name] :], name
        assert [m["messageId"] for m in resumed[name]] == [
            m["messageId"] for m in messages[last_seen[name] :]
        ]
        killed = by_seq[killed_seq[name]]
        # The killed turn's partial answer is kept as incomplete, or the turn is answered.
        answers = [m for m in messages if m["seq"] > killed["seq"] and m["role"] == "assistant"]
        if name == "resent":
            assert killed["status"] == "answered"
            assert [m["content"] for m in answers] == [QUICK]
            assert seqs == [1, 2, 3, 4]
        else:
            assert killed["status"] in ("answered", "unanswered"), killed
            assert answers[-1]["content"] == QUICK
    # Answered within the lease of the dead turn (plus a turn's own time).
    assert resent_wait <= TURN_LEASE_SECONDS + 2
    assert moved_wait <= TURN_LEASE_SECONDS + 2
