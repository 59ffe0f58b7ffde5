from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat.consumers import CLOSE_INVALID_SESSION
from chat.sessions import session_create
from supportbot.asgi import application

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def communicator(session_id: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws?sessionId={session_id}", headers=HEADERS)


@pytest.mark.django_db(transaction=True)
async def test_connect_sends_connection_established_and_answers_ping() -> None:
    session = await database_sync_to_async(session_create)()
    ws = communicator(session.id)
    connected, _ = await ws.connect()
    assert connected
    hello = await ws.receive_json_from()
    assert hello["type"] == "connection_established"
    assert hello["data"]["sessionId"] == session.id
    assert hello["data"]["capabilities"] == ["chat", "voice", "tools", "workflows"]
    assert isinstance(hello["timestamp"], int)
    await ws.send_json_to({"type": "ping", "requestId": "r1"})
    pong = await ws.receive_json_from()
    assert pong["type"] == "pong" and pong["requestId"] == "r1"
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", ["not json", "[1]", '{"type": "_x"}', '{"type": "a.b"}'])
async def test_bad_frames_get_error_and_socket_stays_usable(frame: str) -> None:
    session = await database_sync_to_async(session_create)()
    ws = communicator(session.id)
    await ws.connect()
    await ws.receive_json_from()
    await ws.send_to(text_data=frame)
    error = await ws.receive_json_from()
    assert error["type"] == "error" and error["data"]["code"] == "INVALID_REQUEST_FORMAT"
    await ws.send_to(bytes_data=b"\x00")
    assert (await ws.receive_json_from())["data"]["code"] == "INVALID_REQUEST_FORMAT"
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_unknown_session_gets_invalid_session_and_close_4004() -> None:
    ws = communicator("sess_nope")
    await ws.connect()
    error = await ws.receive_json_from()
    assert error["type"] == "error" and error["data"]["code"] == "INVALID_SESSION"
    assert await ws.receive_output() == {"type": "websocket.close", "code": CLOSE_INVALID_SESSION}
