"""Caps on open WebSockets (chat/guards/sockets.py): per session, staff watchers not counted, and
per client address; refused with CONCURRENT_LIMIT_EXCEEDED and close code 4029. On Redis (the
suite's second pass) the slots are shared by every process."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.guards import sockets
from tests.chat.test_consumer import HEADERS, communicator, new_session, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def refused(session_id: str, **kwargs) -> tuple[dict, int]:
    ws = communicator(session_id, **kwargs)
    connected, _ = await ws.connect()
    assert connected  # accepted, told why, then closed
    error = await ws.receive_json_from(timeout=5)
    closed = await ws.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    return error, closed["code"]


async def test_one_socket_over_the_session_cap_is_refused_with_4029(settings) -> None:
    settings.WS_MAX_SOCKETS_PER_SESSION = 3
    session_id = await new_session()
    open_ones = [await open_socket(session_id) for _ in range(3)]
    error, code = await refused(session_id)
    assert code == sockets.CLOSE_TOO_MANY_SOCKETS == 4029
    assert error["type"] == "error"
    assert error["data"]["code"] == "CONCURRENT_LIMIT_EXCEEDED"
    assert error["data"]["details"] == {"scope": "session", "limit": 3}
    assert error["data"]["retryAfter"] > 0

    # A closed socket gives its slot back; the others keep working.
    await open_ones.pop().disconnect()
    replacement = await open_socket(session_id)
    await replacement.send_json_to({"type": "ping"})
    assert (await replacement.receive_json_from(timeout=5))["type"] == "pong"
    for ws in [*open_ones, replacement]:
        await ws.disconnect()


async def test_staff_watchers_do_not_count_against_the_customer(
    settings, client, admin_user
) -> None:
    settings.WS_MAX_SOCKETS_PER_SESSION = 1
    session_id = await new_session()
    customer = await open_socket(session_id)
    await database_sync_to_async(client.force_login)(admin_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    staff = await open_socket(session_id, query="&watch=1", headers=[*HEADERS, (b"cookie", cookie)])
    error, code = await refused(session_id)  # the customer's second tab
    assert (error["data"]["details"]["scope"], code) == ("session", 4029)
    for ws in (customer, staff):
        await ws.disconnect()


async def test_the_client_cap_counts_sockets_of_every_session(settings) -> None:
    settings.WS_MAX_SOCKETS_PER_CLIENT = 2
    first, second, third = [await new_session() for _ in range(3)]
    open_ones = [await open_socket(first), await open_socket(second)]
    error, code = await refused(third)
    assert code == 4029
    assert error["data"]["details"] == {"scope": "client", "limit": 2}
    for ws in open_ones:
        await ws.disconnect()


async def test_an_invalid_session_takes_no_slot(settings) -> None:
    settings.WS_MAX_SOCKETS_PER_CLIENT = 1
    bad = communicator("sess_" + "x" * 32)
    assert (await bad.connect())[0]
    assert (await bad.receive_json_from(timeout=5))["data"]["code"] == "INVALID_SESSION"
    ws = await open_socket(await new_session())
    await ws.disconnect()


async def test_processes_share_the_slots_on_redis(redis_url, settings) -> None:
    settings.REDIS_URL = redis_url
    settings.RATE_LIMIT_STORAGE_URL = ""
    first, second = sockets._Redis(redis_url), sockets._Redis(redis_url)  # two processes
    caps = [sockets.Cap("session", "supportbot:ws:session:shared-test", 2)]
    await first.client().delete(caps[0].key)
    try:
        assert await first.take(caps, "a") is None
        assert await second.take(caps, "b") is None
        assert await second.take(caps, "c") == caps[0]
        assert await first.take(caps, "a") is None  # a socket already holding a slot
        await first.release(sockets.Slot("a", (caps[0].key,)))
        assert await second.take(caps, "c") is None
    finally:
        await first.client().delete(caps[0].key)
        for backend in (first, second):
            for client in backend.clients.values():
                await client.aclose()
