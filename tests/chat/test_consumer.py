"""The WebSocket consumer over the real ASGI stack (origin check, sessions, channel layer) and the
real pipeline, with only the model's HTTP server faked."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from chat.consumers import CLOSE_ACCESS_DENIED, CLOSE_INVALID_SESSION
from chat.models import ChatSession, Message
from chat.sessions import session_create
from chat.turns import registry
from supportbot.asgi import application
from tests.chat.conftest import send, use_models
from tests.fakes.openai_server import Reply

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_layer():
    """Each test gets its own channel layer (the in-memory one is bound to one event loop)."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
async def _drain_turns():
    yield
    async with asyncio.timeout(10):
        await registry.drain()


def communicator(session_id: str, query: str = "", headers=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws?sessionId={session_id}{query}", headers=headers or HEADERS
    )


async def open_socket(session_id: str, **kwargs: Any) -> WebsocketCommunicator:
    ws = communicator(session_id, **kwargs)
    connected, _ = await ws.connect()
    assert connected
    hello = await ws.receive_json_from()
    assert hello["type"] == "connection_established", hello
    return ws


async def new_session() -> str:
    return (await database_sync_to_async(session_create)()).id


def chat(session_id: str, content: str, request_id: str = "r1", **data: Any) -> dict[str, Any]:
    return {
        "type": "chat_message",
        "data": {"content": content, "sessionId": session_id, **data},
        "requestId": request_id,
        "timestamp": 1,
    }


async def frames_until(ws: WebsocketCommunicator, *types: str) -> list[dict]:
    """Every frame up to and including the first whose type is one of ``types``."""
    frames = []
    while True:
        frame = await ws.receive_json_from(timeout=5)
        frames.append(frame)
        if frame["type"] in types:
            return frames


def of_type(frames: list[dict], type_: str) -> list[dict]:
    return [f for f in frames if f["type"] == type_]


async def stored(session_id: str) -> list[Message]:
    return await database_sync_to_async(
        lambda: list(Message.objects.filter(session_id=session_id).order_by("seq"))
    )()


# --- connecting --------------------------------------------------------------------------------


async def test_connect_sends_connection_established_and_answers_ping() -> None:
    session_id = await new_session()
    ws = communicator(session_id)
    connected, _ = await ws.connect()
    assert connected
    hello = await ws.receive_json_from()
    assert hello["type"] == "connection_established"
    assert hello["data"]["sessionId"] == session_id
    assert hello["data"]["capabilities"] == ["chat", "voice", "tools", "workflows"]
    assert isinstance(hello["data"]["serverTime"], int) and isinstance(hello["timestamp"], int)
    await ws.send_json_to({"type": "ping", "requestId": "r1"})
    pong = await ws.receive_json_from()
    assert pong["type"] == "pong" and pong["requestId"] == "r1"
    await ws.disconnect()


@pytest.mark.parametrize("session_id", ["sess_nope", "", "sess_" + "a" * 30])
async def test_unknown_session_gets_invalid_session_and_close_4004(session_id: str) -> None:
    ws = communicator(session_id)
    await ws.connect()
    error = await ws.receive_json_from()
    assert error["type"] == "error" and error["data"]["code"] == "INVALID_SESSION"
    assert await ws.receive_output() == {"type": "websocket.close", "code": CLOSE_INVALID_SESSION}


async def test_ended_session_is_refused_with_4004(api) -> None:
    session_id = await new_session()
    assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    ws = communicator(session_id)
    await ws.connect()
    assert (await ws.receive_json_from())["data"]["code"] == "INVALID_SESSION"
    assert (await ws.receive_output())["code"] == CLOSE_INVALID_SESSION


@pytest.mark.parametrize(
    "origin", [b"http://evil.example", b"null", b"http://localhost.evil.example"]
)
async def test_a_foreign_origin_is_refused(origin: bytes) -> None:
    session_id = await new_session()
    ws = communicator(session_id, headers=[(b"origin", origin), (b"host", b"localhost")])
    connected, _ = await ws.connect()
    assert not connected


async def test_a_client_without_origin_is_not_a_browser_and_may_connect() -> None:
    session_id = await new_session()
    ws = await open_socket(session_id, headers=[(b"host", b"localhost")])
    await ws.disconnect()


# --- a turn ------------------------------------------------------------------------------------


async def test_chat_message_streams_tokens_then_stores_and_sends_the_answer(primary, kb) -> None:
    primary.script(Reply("Open Settings, then Security, then Reset password.", delay=0.01))
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "How do I reset my password?", "req-1"))
    frames = await frames_until(ws, "ai_response")
    kinds = [f["type"] for f in frames]
    assert kinds[:2] == ["message_received", "ai_typing"]
    assert kinds[-1] == "ai_response" and "ai_token" in kinds
    assert all(k == "ai_token" for k in kinds[2:-1])
    received, response = frames[0], frames[-1]
    assert received["requestId"] == "req-1"
    assert received["data"]["seq"] == 1 and received["data"]["requestId"] == "req-1"
    data = response["data"]
    assert response["requestId"] == "req-1"
    assert data["content"] == "Open Settings, then Security, then Reset password."
    assert data["seq"] == 2 and data["sessionId"] == session_id
    assert data["toolCalls"] == []
    assert data["metadata"]["aiModel"] == "fake-model"
    assert isinstance(data["metadata"]["processingTime"], int)
    tokens = of_type(frames, "ai_token")
    assert {t["data"]["messageId"] for t in tokens} == {data["messageId"]}
    assert "".join(t["data"]["delta"] for t in tokens) == data["content"]
    messages = await stored(session_id)
    assert [(m.seq, m.role, m.status) for m in messages] == [
        (1, "user", "answered"),
        (2, "assistant", "complete"),
    ]
    assert messages[0].content == "How do I reset my password?"
    assert messages[1].id == data["messageId"]
    await ws.disconnect()


async def test_token_frames_are_coalesced_to_about_20_a_second(primary, kb) -> None:
    words = " ".join(f"w{i}" for i in range(80))
    primary.script(Reply(words, delay=0.004))  # ~250 chunks a second from the model
    session_id = await new_session()
    ws = await open_socket(session_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await ws.send_json_to(chat(session_id, "Tell me a lot."))
    frames = await frames_until(ws, "ai_response")
    elapsed = loop.time() - started
    tokens = of_type(frames, "ai_token")
    assert "".join(t["data"]["delta"] for t in tokens) == words
    # 80 model chunks in ~0.35 s; at most one frame per 50 ms, plus the first and the last.
    assert len(tokens) <= elapsed / 0.05 + 2
    assert len(tokens) < 40
    await ws.disconnect()


async def test_model_down_gives_error_frame_keeps_the_message_and_the_socket(settings, kb):
    from tests.chat.conftest import closed_port_url

    use_models(settings, primary=closed_port_url())
    settings.OFFLINE_FALLBACK = False
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "Is anyone there?", "r-down"))
    frames = await frames_until(ws, "error")
    error = frames[-1]
    assert error["requestId"] == "r-down"
    assert error["data"]["code"] == "AI_SERVICE_UNAVAILABLE" and error["data"]["retryable"]
    assert [(m.role, m.status) for m in await stored(session_id)] == [("user", "unanswered")]
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    await ws.disconnect()


# --- no loss, no duplicates --------------------------------------------------------------------


async def test_resent_request_id_is_answered_once(primary, kb) -> None:
    primary.script(Reply("First and only answer."))
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "Hello?", "same-id"))
    first = (await frames_until(ws, "ai_response"))[-1]
    await ws.send_json_to(chat(session_id, "Hello?", "same-id"))
    again = await frames_until(ws, "ai_response")
    assert again[-1]["data"]["messageId"] == first["data"]["messageId"]
    assert again[-1]["data"]["content"] == "First and only answer."
    assert of_type(again, "message_received")[0]["data"]["seq"] == 1
    assert len(primary.chat_requests) == 1
    assert len(await stored(session_id)) == 2
    await ws.disconnect()


async def test_turn_survives_the_socket_and_resume_delivers_it(primary, kb) -> None:
    primary.script(Reply("An answer nobody was waiting for.", first_delay=0.3))
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "Are you there?", "r-gone"))
    assert (await ws.receive_json_from())["type"] == "message_received"
    await ws.disconnect()  # mid-turn: the model has not answered yet

    async with asyncio.timeout(5):
        await registry.drain()
    messages = await stored(session_id)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "answered"),
        ("assistant", "complete"),
    ]

    ws2 = await open_socket(session_id)
    await ws2.send_json_to({"type": "resume", "data": {"lastSeq": 0}, "requestId": "res1"})
    frames = await frames_until(ws2, "resume_complete")
    replayed = of_type(frames, "message")
    assert [(f["data"]["seq"], f["data"]["role"]) for f in replayed] == [
        (1, "user"),
        (2, "assistant"),
    ]
    assert replayed[1]["data"]["content"] == "An answer nobody was waiting for."
    assert set(replayed[1]["data"]) >= {"messageId", "seq", "role", "content", "timestamp"}
    assert frames[-1]["data"] == {"lastSeq": 2}
    await ws2.send_json_to({"type": "resume", "data": {"lastSeq": 1}})
    frames = await frames_until(ws2, "resume_complete")
    assert [f["data"]["seq"] for f in of_type(frames, "message")] == [2]
    await ws2.send_json_to({"type": "resume", "data": {"lastSeq": 2}})
    assert await frames_until(ws2, "resume_complete") == [
        {"type": "resume_complete", "data": {"lastSeq": 2}, "timestamp": pytest.approx(0, abs=1e13)}
    ]
    # A client ahead of the server (its seq from a conversation the server no longer has) is
    # told the real last seq, not its own number back.
    await ws2.send_json_to({"type": "resume", "data": {"lastSeq": 10**30}})
    assert (await frames_until(ws2, "resume_complete"))[-1]["data"] == {"lastSeq": 2}
    await ws2.disconnect()


async def test_resending_a_running_request_attaches_the_new_socket(primary, kb) -> None:
    primary.script(Reply("one two three four five six seven eight", delay=0.05))
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "Count for me", "r-run"))
    first = await frames_until(ws, "ai_token")
    answer_id = first[-1]["data"]["messageId"]
    await ws.disconnect()

    ws2 = await open_socket(session_id)
    await ws2.send_json_to(chat(session_id, "Count for me", "r-run"))
    frames = await frames_until(ws2, "ai_response")
    assert of_type(frames, "message_received")[0]["data"]["seq"] == 1
    tokens = of_type(frames, "ai_token")
    assert all(t["data"]["messageId"] == answer_id for t in tokens)
    assert "".join(t["data"]["delta"] for t in tokens) == "one two three four five six seven eight"
    assert frames[-1]["data"]["messageId"] == answer_id
    assert len(primary.chat_requests) == 1
    assert len(await stored(session_id)) == 2
    await ws2.disconnect()


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@pytest.fixture
def test_thread_backend(primary) -> int:
    """This thread's PostgreSQL backend (the test's own teardown needs it alive)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs a server that can drop a connection (PostgreSQL)")
    return _backend_pid()


async def test_sockets_keep_their_database_connection_between_frames(primary, kb) -> None:
    """Channels would close (and the next query reopen) the connection before every message."""
    from django.db.backends.signals import connection_created

    primary.script(Reply("First answer."), Reply("Second answer."))
    opened: list[object] = []

    def count(sender: object, connection: object, **kwargs: object) -> None:
        opened.append(connection)

    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "How do I reset my password?", "r1"))
    await frames_until(ws, "ai_response")
    connection_created.connect(count)
    try:
        for _ in range(5):
            await ws.send_json_to({"type": "ping"})
            assert (await ws.receive_json_from())["type"] == "pong"
        await ws.send_json_to(chat(session_id, "And how do I change my email?", "r2"))
        assert (await frames_until(ws, "ai_response"))[-1]["data"]["content"] == "Second answer."
    finally:
        connection_created.disconnect(count)
    await ws.disconnect()
    assert opened == []


async def test_a_dropped_database_connection_is_replaced_and_the_turn_still_runs(
    primary, kb, test_thread_backend
) -> None:
    """The sockets' thread keeps its connection; the database drops it (a restart, a failover)."""
    from django.db import connection

    primary.script(Reply("First answer."), Reply("Second answer."))
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "How do I reset my password?", "r1"))
    await frames_until(ws, "ai_response")

    def drop_all() -> int:
        # On a thread of its own: the sockets' shared thread is the one whose connection goes.
        try:
            spared = {test_thread_backend, _backend_pid()}
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                )
                pids = {row[0] for row in cursor.fetchall()} - spared
                for pid in pids:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            return len(pids)
        finally:
            connection.close()

    assert await sync_to_async(drop_all, thread_sensitive=False)() >= 1
    await ws.send_json_to(chat(session_id, "And how do I change my email?", "r2"))
    frames = await frames_until(ws, "ai_response", "error")
    assert frames[-1]["type"] == "ai_response", frames[-1]
    assert frames[-1]["data"]["content"] == "Second answer."
    await ws.disconnect()
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(session_id=session_id).values_list("seq", "status"))
    )()
    assert sorted(stored) == [(1, "answered"), (2, "complete"), (3, "answered"), (4, "complete")]


async def test_messages_of_one_socket_are_answered_in_order(primary, kb) -> None:
    primary.script(Reply("Answer one.", first_delay=0.2), Reply("Answer two."))
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "Question one", "q1"))
    await ws.send_json_to(chat(session_id, "Question two", "q2"))
    frames = await frames_until(ws, "ai_response")
    frames += await frames_until(ws, "ai_response")
    responses = of_type(frames, "ai_response")
    assert [(r["requestId"], r["data"]["seq"]) for r in responses] == [("q1", 2), ("q2", 4)]
    contents = [(m.seq, m.content) for m in await stored(session_id)]
    assert contents == [
        (1, "Question one"),
        (2, "Answer one."),
        (3, "Question two"),
        (4, "Answer two."),
    ]
    await ws.disconnect()


async def test_too_many_waiting_messages_are_refused(primary, kb) -> None:
    primary.set_default(Reply("slow", first_delay=0.3))
    session_id = await new_session()
    ws = await open_socket(session_id)
    for i in range(6):
        await ws.send_json_to(chat(session_id, f"message {i}", f"m{i}"))
    frames = await frames_until(ws, "error")
    error = frames[-1]
    assert error["requestId"] == "m5"
    assert error["data"]["code"] == "CONCURRENT_LIMIT_EXCEEDED"
    assert error["data"]["retryAfter"] == 5
    await ws.disconnect()


# --- fan-out -----------------------------------------------------------------------------------


async def test_every_socket_of_the_session_gets_the_new_messages(primary, kb) -> None:
    primary.script(Reply("Both tabs see this."))
    session_id = await new_session()
    asker = await open_socket(session_id)
    other = await open_socket(session_id)
    await asker.send_json_to(chat(session_id, "Hello from tab one", "tab1"))
    await frames_until(asker, "ai_response")
    user = await other.receive_json_from(timeout=5)
    answer = await other.receive_json_from(timeout=5)
    assert (user["type"], user["data"]["role"], user["data"]["seq"]) == ("message", "user", 1)
    assert user["data"]["content"] == "Hello from tab one"
    assert (answer["type"], answer["data"]["role"], answer["data"]["seq"]) == (
        "message",
        "assistant",
        2,
    )
    assert answer["data"]["content"] == "Both tabs see this."
    # The asker got its own frames, not copies.
    assert await asker.receive_nothing(timeout=0.2)
    await asker.disconnect()
    await other.disconnect()


async def test_rest_turns_reach_the_sockets(api, primary, kb) -> None:
    primary.script(Reply("Answered over REST."))
    session_id = await new_session()
    ws = await open_socket(session_id)
    response = await send(api, session_id, "Asked over REST")
    assert response.status_code == 200
    frames = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    assert [(f["type"], f["data"]["seq"]) for f in frames] == [("message", 1), ("message", 2)]
    assert frames[1]["data"]["content"] == "Answered over REST."
    await ws.disconnect()


async def test_ending_the_session_tells_and_closes_its_sockets(api) -> None:
    session_id = await new_session()
    ws = await open_socket(session_id)
    assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    notice = await ws.receive_json_from(timeout=5)
    assert notice["type"] == "system_notification" and notice["data"]["level"] == "info"
    assert (await ws.receive_json_from())["data"]["code"] == "INVALID_SESSION"
    assert (await ws.receive_output())["code"] == CLOSE_INVALID_SESSION


async def test_staff_watcher_sees_messages_and_typing(client, admin_user, primary, kb) -> None:
    await database_sync_to_async(client.force_login)(admin_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    session_id = await new_session()
    user_ws = await open_socket(session_id)
    staff = await open_socket(session_id, query="&watch=1", headers=[*HEADERS, (b"cookie", cookie)])
    # Watching is silent: the customer is told an agent joined only when one takes over.
    assert await user_ws.receive_nothing(timeout=0.2)

    await user_ws.send_json_to({"type": "typing", "data": {"isTyping": True}})
    typing = await staff.receive_json_from(timeout=5)
    assert typing["type"] == "typing" and typing["data"]["isTyping"] is True
    await user_ws.send_json_to(chat(session_id, "Hi staff", "w1"))
    await frames_until(user_ws, "ai_response")
    seen = [await staff.receive_json_from(timeout=5) for _ in range(2)]
    assert [(f["type"], f["data"]["role"]) for f in seen] == [
        ("message", "user"),
        ("message", "assistant"),
    ]
    await staff.send_json_to(chat(session_id, "I am staff", "w2"))
    assert (await staff.receive_json_from())["data"]["code"] == "ACCESS_DENIED"
    await user_ws.disconnect()
    await staff.disconnect()


async def test_watching_without_staff_login_is_refused() -> None:
    session_id = await new_session()
    ws = communicator(session_id, query="&watch=1")
    await ws.connect()
    assert (await ws.receive_json_from())["data"]["code"] == "ACCESS_DENIED"
    assert (await ws.receive_output())["code"] == CLOSE_ACCESS_DENIED


# --- expiry ------------------------------------------------------------------------------------


async def test_expiry_warning_then_close(settings) -> None:
    settings.SESSION_EXPIRY_WARNING_SECONDS = 300
    session_id = await new_session()
    await database_sync_to_async(
        lambda: ChatSession.objects.filter(pk=session_id).update(
            expires_at=timezone.now() + timedelta(seconds=1.5)
        )
    )()
    ws = await open_socket(session_id)
    warning = await ws.receive_json_from(timeout=3)
    assert warning["type"] == "system_notification"
    assert warning["data"]["level"] == "warning" and warning["data"]["actionRequired"] is True
    assert isinstance(warning["data"]["expiresAt"], int)
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["data"]["code"] == "INVALID_SESSION"
    assert (await ws.receive_output())["code"] == CLOSE_INVALID_SESSION


async def test_no_warning_while_far_from_expiry(settings) -> None:
    settings.SESSION_EXPIRY_WARNING_SECONDS = 300
    ws = await open_socket(await new_session())
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


# --- bad frames --------------------------------------------------------------------------------

SID = "__SID__"


def cm(data: Any = None, request_id: Any = "r", **fields: Any) -> str:
    """A raw chat_message frame; ``data`` defaults to a good one with ``fields`` merged in."""
    frame: dict[str, Any] = {"type": "chat_message"}
    if request_id is not None:
        frame["requestId"] = request_id
    frame["data"] = {"content": "hi", "sessionId": SID, **fields} if data is None else data
    return json.dumps(frame)


BAD_FRAMES = [
    ("not json", "INVALID_REQUEST_FORMAT"),
    ("[1]", "INVALID_REQUEST_FORMAT"),
    ('"chat_message"', "INVALID_REQUEST_FORMAT"),
    ("{}", "MISSING_REQUIRED_FIELD"),
    ('{"type": 5}', "INVALID_REQUEST_FORMAT"),
    ('{"type": "_private"}', "INVALID_REQUEST_FORMAT"),
    ('{"type": "\\ud800"}', "INVALID_REQUEST_FORMAT"),
    ('{"type": "session.message"}', "INVALID_REQUEST_FORMAT"),
    ('{"type": "websocket.disconnect"}', "INVALID_REQUEST_FORMAT"),
    ('{"type": "nope"}', "INVALID_REQUEST_FORMAT"),
    ('{"type": "ping", "x": NaN}', "INVALID_REQUEST_FORMAT"),
    ("[" * 5000 + "]" * 5000, "INVALID_REQUEST_FORMAT"),
    ('{"type": "chat_message", "requestId": "r"}', "MISSING_REQUIRED_FIELD"),
    (cm(data=[]), "INVALID_FIELD_VALUE"),
    (cm(data={"sessionId": SID}), "MISSING_REQUIRED_FIELD"),
    (cm(content=5), "INVALID_FIELD_VALUE"),
    (cm(data={"content": "hi"}), "MISSING_REQUIRED_FIELD"),
    (cm(sessionId=7), "INVALID_FIELD_VALUE"),
    (cm(sessionId="sess_other000000000000000000"), "INVALID_SESSION"),
    (cm(request_id=None), "MISSING_REQUIRED_FIELD"),
    (cm(request_id=5), "INVALID_FIELD_VALUE"),
    (cm(request_id="a b"), "INVALID_FIELD_VALUE"),
    (cm(content=""), "INVALID_FIELD_VALUE"),
    (cm(content="a\x00b"), "INVALID_FIELD_VALUE"),
    (cm(content="\ud800"), "INVALID_FIELD_VALUE"),
    # The API's one rule: a NUL or lone surrogate anywhere in a frame (supportbot.storable).
    ('{"type": "typing", "data": {"isTyping": true, "note": "a\\u0000"}}', "INVALID_FIELD_VALUE"),
    ('{"type": "ping", "data": {"\\udc00": 1}}', "INVALID_FIELD_VALUE"),
    (cm(metadata=3), "INVALID_FIELD_VALUE"),
    (cm(content="x" * 4001), "MESSAGE_TOO_LONG"),
    ('{"type": "ping", "pad": "' + "x" * (64 * 1024) + '"}', "MESSAGE_TOO_LONG"),
    ('{"type": "resume", "data": {}}', "MISSING_REQUIRED_FIELD"),
    ('{"type": "resume", "data": {"lastSeq": "3"}}', "INVALID_FIELD_VALUE"),
    ('{"type": "resume", "data": {"lastSeq": true}}', "INVALID_FIELD_VALUE"),
    ('{"type": "resume", "data": {"lastSeq": -1}}', "INVALID_FIELD_VALUE"),
    ('{"type": "resume", "data": {"lastSeq": 1.5}}', "INVALID_FIELD_VALUE"),
    ('{"type": "typing", "data": {"isTyping": "yes"}}', "INVALID_FIELD_VALUE"),
    ('{"type": "typing"}', "MISSING_REQUIRED_FIELD"),
    ('{"type": "voice_input", "data": {}}', "SERVICE_DEGRADED"),
]


async def test_an_unstorable_character_is_refused_with_the_frames_request_id(primary) -> None:
    # The client must be able to tell which of its messages was refused.
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_json_to(chat(session_id, "a\x00b", "nul-1"))
    error = await ws.receive_json_from(timeout=5)
    assert (error["type"], error["data"]["code"]) == ("error", "INVALID_FIELD_VALUE")
    assert error["requestId"] == "nul-1"
    assert await stored(session_id) == []
    await ws.disconnect()


@pytest.mark.parametrize(
    ("raw", "code"), BAD_FRAMES, ids=[f"{i}-{code}" for i, (_, code) in enumerate(BAD_FRAMES)]
)
async def test_bad_frame_gets_error_stores_nothing_and_socket_stays_usable(
    raw: str, code: str, primary
) -> None:
    session_id = await new_session()
    ws = await open_socket(session_id)
    await ws.send_to(text_data=raw.replace(SID, session_id))
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error", error
    assert error["data"]["code"] == code, error
    assert isinstance(error["data"]["message"], str) and "Traceback" not in json.dumps(error)
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    assert await stored(session_id) == []
    assert primary.chat_requests == []
    await ws.disconnect()


async def test_binary_frames_get_an_error() -> None:
    ws = await open_socket(await new_session())
    await ws.send_to(bytes_data=b"\x00\x01")
    error = await ws.receive_json_from()
    assert error["data"]["code"] == "INVALID_REQUEST_FORMAT"
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    await ws.disconnect()


@pytest.mark.parametrize(
    ("host", "origin", "https", "cors", "allowed"),
    [
        # Same origin as the page: the scheme and port the socket came in on.
        (b"localhost:8000", b"http://localhost:8000", False, [], True),
        (b"localhost:8000", b"http://127.0.0.1:8000", False, [], True),  # another allowed host
        (b"localhost", b"http://localhost:80", False, [], True),
        (b"example.test", b"https://example.test", True, [], True),  # behind TLS (HTTPS=true)
        # Another port or scheme of an allowed host is another site.
        (b"localhost:8000", b"http://localhost:1", False, [], False),
        (b"localhost:8000", b"http://localhost", False, [], False),
        (b"localhost:8000", b"https://localhost:8000", False, [], False),
        (b"example.test", b"http://example.test", True, [], False),
        (b"localhost:8000", b"http://localhost:8000/page", False, [], False),  # not an origin
        (b"localhost:8000", b"ftp://localhost:8000", False, [], False),
        (b"localhost:8000", b"http://localhost:x", False, [], False),
        # CORS_ALLOWED_ORIGINS: exactly as listed.
        (b"localhost:8000", b"https://shop.example", False, ["https://shop.example"], True),
        (b"localhost:8000", b"https://shop.example:8443", False, ["https://shop.example"], False),
        (b"localhost:8000", b"http://shop.example", False, ["https://shop.example"], False),
    ],
)
async def test_a_browser_origin_must_match_scheme_and_port_too(
    settings, host: bytes, origin: bytes, https: bool, cors: list[str], allowed: bool
) -> None:
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "example.test"]
    settings.HTTPS = https
    settings.CORS_ALLOWED_ORIGINS = cors
    session_id = await new_session()
    ws = communicator(session_id, headers=[(b"origin", origin), (b"host", host)])
    connected, _ = await ws.connect()
    assert connected is allowed
    if connected:
        assert (await ws.receive_json_from())["type"] == "connection_established"
        await ws.disconnect()
