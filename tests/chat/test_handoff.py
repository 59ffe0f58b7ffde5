"""Hand-offs end to end on the real stack: the customer asks (REST, WebSocket, the offline
assistant's tool), an agent takes over through the staff API, replies reach the customer's socket,
the bot stays silent while a person holds the conversation and answers again once handed back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group, User
from django.test import AsyncClient

from chat import presence
from chat.models import ChatSession, Handoff, Message
from chat.turns import registry
from tests.chat.conftest import new_session, send
from tests.chat.test_consumer import HEADERS, chat, frames_until, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_state():
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    presence.clear()
    yield
    presence.clear()
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
async def _drain_turns():
    yield
    async with asyncio.timeout(10):
        await registry.drain()


def make_user(username: str, group: str | None, first_name: str = "") -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=True)
    user.first_name = first_name
    user.save()
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
async def agent() -> User:
    return await database_sync_to_async(make_user)("alice", "Support agents", "Alice")


@pytest.fixture
async def colleague() -> User:
    return await database_sync_to_async(make_user)("bob", "Support agents", "Bob")


async def staff_client(user: User) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def post(client: AsyncClient, path: str, body: Any = None):
    data = json.dumps(body if body is not None else {})
    return await client.post(path, data=data, content_type="application/json")


async def online(user: User) -> None:
    """The agent's staff socket is open (the real presence store)."""
    await database_sync_to_async(presence.mark_online)(
        user_id=user.pk, name=user.first_name, socket=f"test-{user.pk}"
    )


async def ask(api, session_id: str, **body: Any):
    return await post(api, f"/api/session/{session_id}/handoff", body)


async def item_of(session_id: str) -> Handoff:
    return await Handoff.objects.select_related("assignee").aget(session_id=session_id)


# --- asking ------------------------------------------------------------------------------------


async def test_asking_twice_makes_one_item_and_says_who_can_answer(api, agent) -> None:
    session_id = await new_session(api)
    await online(agent)
    first = await ask(api, session_id, reason="My invoice is wrong")
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "waiting" and body["position"] == 1
    assert body["availability"] == {
        "open": True,
        "agentsOnline": 1,
        "humansAvailable": True,
        "nextOpenAt": None,
        "nextOpenText": None,
        "timezone": "UTC",
    }
    assert body["ticketOffered"] is False and body["handoffId"].startswith("hof_")
    again = await ask(api, session_id)
    assert again.status_code == 200 and again.json()["handoffId"] == body["handoffId"]
    assert await Handoff.objects.filter(session_id=session_id).acount() == 1
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.handoff_status == "waiting"


async def test_with_nobody_online_a_ticket_is_offered_and_opened_for_the_address(api) -> None:
    session_id = await new_session(api)
    body = (await ask(api, session_id)).json()
    assert body["availability"]["humansAvailable"] is False
    assert body["ticketOffered"] is True and body["ticketId"] is None
    given = await ask(api, session_id, contactEmail="pat@example.com")
    assert given.status_code == 200
    ticket_id = given.json()["ticketId"]
    assert ticket_id and ticket_id.startswith("TKT-") and given.json()["contactGiven"] is True
    # Giving it again opens no second ticket.
    assert (await ask(api, session_id, contactEmail="pat@example.com")).json()[
        "ticketId"
    ] == ticket_id


async def test_the_item_names_the_topic_or_else_the_article_cited_last(api, kb) -> None:
    cited_only = await new_session(api)
    response = await send(api, cited_only, "How do I fix error NB-1042 on Windows?")
    assert response.status_code == 200
    answer = await Message.objects.filter(session_id=cited_only, role="assistant").alast()
    assert answer is not None and answer.metadata["citations"]
    await ChatSession.objects.filter(pk=cited_only).aupdate(active_topics=[])
    await ask(api, cited_only)
    assert (await item_of(cited_only)).topic == answer.metadata["citations"][0]["title"]

    with_topics = await new_session(api)
    await ChatSession.objects.filter(pk=with_topics).aupdate(active_topics=["billing", "sync"])
    await ask(api, with_topics)
    assert (await item_of(with_topics)).topic == "billing"  # the newest


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contactEmail": "not an address"}, "contactEmail"),
        ({"contactEmail": 42}, "contactEmail"),
        ({"stopBot": "yes"}, "stopBot"),
        ({"reason": "x" * 1001}, "reason"),
        ({"reason": "nul\u0000byte"}, "reason"),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(api, body, field) -> None:
    session_id = await new_session(api)
    response = await ask(api, session_id, **body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "INVALID_FIELD_VALUE" and error["details"]["field"] == field
    assert await Handoff.objects.filter(session_id=session_id).acount() == 0


async def test_an_ended_or_unknown_session_cannot_ask(api) -> None:
    session_id = await new_session(api)
    await api.delete(f"/api/session/{session_id}")
    assert (await ask(api, session_id)).status_code == 409
    missing = await ask(api, "sess_" + "A" * 32)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert (await ask(api, "nonsense")).status_code == 400


async def test_the_offline_assistant_asks_for_a_person_when_the_customer_does(api, kb, agent):
    session_id = await new_session(api)
    await online(agent)
    response = await send(api, session_id, "I want to talk to a human please")
    assert response.status_code == 200
    answer = response.json()
    assert [call["tool"] for call in answer["toolCalls"]] == ["request_human"]
    assert "queue" in answer["response"]
    assert (await item_of(session_id)).reason == "customer"


# --- taking over, replying, handing back --------------------------------------------------------


async def test_agent_takes_over_replies_and_hands_back(api, kb, agent) -> None:
    session_id = await new_session(api)
    customer = await open_socket(session_id)
    await ask(api, session_id)
    assert (await customer.receive_json_from(timeout=5))["type"] == "handoff_status"
    staff = await staff_client(agent)
    item = await item_of(session_id)

    taken = await post(staff, f"/api/staff/handoffs/hof_{item.pk}/take")
    assert taken.status_code == 200 and taken.json()["status"] == "with_agent"
    notice = await customer.receive_json_from(timeout=5)
    assert notice["type"] == "system_notification"
    assert notice["data"]["message"] == "Alice joined the conversation."
    status = await customer.receive_json_from(timeout=5)
    assert status["data"]["status"] == "with_agent" and status["data"]["agent"] == {"name": "Alice"}

    # The bot is silent: the message goes to the person.
    held = await send(api, session_id, "Are you a real person?")
    assert held.status_code == 200
    assert held.json()["response"] == ""
    assert held.json()["metadata"]["heldByHuman"] is True
    assert held.json()["metadata"]["agentName"] == "Alice"
    forwarded = await customer.receive_json_from(timeout=5)
    assert forwarded["data"]["role"] == "user" and forwarded["data"]["status"] == "forwarded"

    reply = await post(staff, f"/api/staff/handoffs/hof_{item.pk}/reply", {"text": "Yes, I am."})
    assert reply.status_code == 201
    frame = await customer.receive_json_from(timeout=5)
    assert frame["type"] == "message"
    assert (frame["data"]["role"], frame["data"]["content"]) == ("staff", "Yes, I am.")
    assert frame["data"]["metadata"] == {"agentName": "Alice"}

    back = await post(staff, f"/api/staff/handoffs/hof_{item.pk}/release")
    assert back.status_code == 200 and back.json()["status"] == "assigned"
    answered = await send(api, session_id, "How do I reset my password?")
    assert answered.json()["response"] and "heldByHuman" not in answered.json()["metadata"]
    roles = [m.role async for m in Message.objects.filter(session_id=session_id).order_by("seq")]
    assert roles == ["user", "staff", "user", "assistant"]
    await customer.disconnect()


async def test_a_second_agent_cannot_take_a_held_conversation(api, agent, colleague) -> None:
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    first, second = await staff_client(agent), await staff_client(colleague)
    assert (await post(first, f"/api/staff/handoffs/hof_{item.pk}/take")).status_code == 200
    refused = await post(second, f"/api/staff/handoffs/hof_{item.pk}/take")
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["heldBy"] == "Alice"
    replied = await post(second, f"/api/staff/handoffs/hof_{item.pk}/reply", {"text": "Hi"})
    assert replied.status_code == 409
    assert (await item_of(session_id)).assignee_id == agent.pk


async def test_customers_behind_in_the_queue_move_up_when_one_is_taken(api, agent) -> None:
    first, second, third = [await new_session(api) for _ in range(3)]
    for session_id in (first, second, third):
        await ask(api, session_id)
    assert (await ask(api, third)).json()["position"] == 3
    ws = await open_socket(third)
    await frames_until(ws, "handoff_status")  # its state on connecting
    item = await item_of(first)
    staff = await staff_client(agent)
    assert (await post(staff, f"/api/staff/handoffs/hof_{item.pk}/take")).status_code == 200
    moved = (await frames_until(ws, "handoff_status"))[-1]["data"]
    assert (moved["status"], moved["position"]) == ("waiting", 2)
    assert (await ask(api, third)).json()["position"] == 2  # the same place, asked again
    await ws.disconnect()


async def test_two_agents_racing_get_exactly_one_claim(api, agent, colleague) -> None:
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    clients = [await staff_client(agent), await staff_client(colleague)]
    results = await asyncio.gather(
        *(post(c, f"/api/staff/handoffs/hof_{item.pk}/take") for c in clients)
    )
    assert sorted(r.status_code for r in results) == [200, 409]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "MISSING_REQUIRED_FIELD"),
        ({"text": "   "}, 400, "MISSING_REQUIRED_FIELD"),
        ({"text": 5}, 400, "INVALID_FIELD_VALUE"),
        ({"text": "x" * 4001}, 400, "MESSAGE_TOO_LONG"),
        ({"text": "ok", "draftId": 999}, 400, "INVALID_FIELD_VALUE"),
    ],
)
async def test_bad_replies_are_refused_and_store_nothing(api, agent, body, status, code) -> None:
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    staff = await staff_client(agent)
    await post(staff, f"/api/staff/handoffs/hof_{item.pk}/take")
    response = await post(staff, f"/api/staff/handoffs/hof_{item.pk}/reply", body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert not await Message.objects.filter(session_id=session_id, role="staff").aexists()


async def test_a_reply_to_an_ended_session_is_refused(api, agent) -> None:
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    staff = await staff_client(agent)
    await post(staff, f"/api/staff/handoffs/hof_{item.pk}/take")
    await api.delete(f"/api/session/{session_id}")
    response = await post(staff, f"/api/staff/handoffs/hof_{item.pk}/reply", {"text": "Hello?"})
    assert response.status_code == 409
    assert not await Message.objects.filter(session_id=session_id, role="staff").aexists()


async def test_resolving_asks_the_customer_for_a_rating(api, agent) -> None:
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    staff = await staff_client(agent)
    await post(staff, f"/api/staff/handoffs/hof_{item.pk}/take")
    assert (await post(staff, f"/api/staff/handoffs/hof_{item.pk}/resolve")).status_code == 200
    status = (await api.get(f"/api/session/{session_id}/handoff")).json()
    assert status["status"] == "resolved" and status["ratingRequested"] is True
    again = await post(staff, f"/api/staff/handoffs/hof_{item.pk}/resolve")
    assert again.status_code == 409


# --- permissions -------------------------------------------------------------------------------


async def test_staff_without_the_permission_are_refused(api) -> None:
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    plain = await database_sync_to_async(make_user)("carol", None)
    client = await staff_client(plain)
    refused = await post(client, f"/api/staff/handoffs/hof_{item.pk}/take")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ACCESS_DENIED"
    assert (await client.get("/api/staff/inbox")).status_code == 403
    anonymous = await post(AsyncClient(), f"/api/staff/handoffs/hof_{item.pk}/take")
    assert anonymous.status_code == 401
    assert (await item_of(session_id)).status == "waiting"


async def test_the_staff_socket_is_refused_without_the_permission(client) -> None:
    plain = await database_sync_to_async(make_user)("dave", None)
    await database_sync_to_async(client.force_login)(plain)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    from channels.testing import WebsocketCommunicator

    from supportbot.asgi import application

    ws = WebsocketCommunicator(application, "/ws/staff", headers=[*HEADERS, (b"cookie", cookie)])
    await ws.connect()
    assert (await ws.receive_json_from())["data"]["code"] == "ACCESS_DENIED"
    assert (await ws.receive_output())["code"] == 4003


async def test_the_staff_socket_makes_the_agent_online_and_streams_items(api, client, agent):
    await database_sync_to_async(client.force_login)(agent)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    from channels.testing import WebsocketCommunicator

    from supportbot.asgi import application

    ws = WebsocketCommunicator(application, "/ws/staff", headers=[*HEADERS, (b"cookie", cookie)])
    assert (await ws.connect())[0]
    hello = await ws.receive_json_from(timeout=5)
    assert hello["type"] == "presence" and hello["data"]["agents"][0]["name"] == "Alice"
    session_id = await new_session(api)
    body = (await ask(api, session_id)).json()
    assert body["availability"]["humansAvailable"] is True
    frame = await ws.receive_json_from(timeout=5)
    while frame["type"] != "inbox_item":
        frame = await ws.receive_json_from(timeout=5)
    assert frame["data"]["sessionId"] == session_id and frame["data"]["status"] == "waiting"
    await ws.disconnect()
    later = (await api.get(f"/api/session/{session_id}/handoff")).json()
    assert later["availability"]["agentsOnline"] == 0


# --- the WebSocket side --------------------------------------------------------------------------


async def test_asking_over_the_socket_answers_handoff_status(api) -> None:
    session_id = await new_session(api)
    ws = await open_socket(session_id)
    await ws.send_json_to({"type": "handoff_request", "data": {}, "requestId": "h1"})
    frames = await frames_until(ws, "handoff_status")
    assert frames[-1]["data"]["status"] == "waiting"
    await ws.send_json_to({"type": "handoff_request", "data": {"stopBot": "no"}, "requestId": "h2"})
    error = await frames_until(ws, "error")
    assert error[-1]["data"]["details"]["field"] == "stopBot"
    await ws.disconnect()


async def test_a_paused_bot_stays_silent_while_the_customer_waits(api, kb) -> None:
    session_id = await new_session(api)
    await ask(api, session_id, stopBot=True)
    ws = await open_socket(session_id)
    await ws.receive_json_from(timeout=5)  # handoff_status on connect
    await ws.send_json_to(chat(session_id, "Still there?", "p1"))
    frames = await frames_until(ws, "ai_response")
    answer = frames[-1]["data"]
    assert answer["content"] == "" and answer["metadata"]["heldByHuman"] is True
    assert answer["metadata"]["agentName"] is None
    await ws.disconnect()


# --- floods ------------------------------------------------------------------------------------


@pytest.fixture
def memory_limits(settings):
    from supportbot import ratelimit

    settings.REDIS_URL = ""
    ratelimit.reset_backend()
    yield
    ratelimit.reset_backend()


async def test_a_handoff_flood_counts_against_the_session_and_changes_nothing(
    api, settings, memory_limits
) -> None:
    from supportbot import ratelimit

    setattr(settings, ratelimit.configured_limits()["session_requests"].setting, 3)
    session_id = await new_session(api)
    codes = [(await ask(api, session_id, stopBot=i % 2 == 0)).status_code for i in range(6)]
    assert codes[:3] == [201, 200, 200] and set(codes[3:]) == {429}
    refused = await ask(api, session_id, stopBot=False)
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert refused.json()["error"]["details"]["name"] == "session_requests"
    assert await Handoff.objects.filter(session_id=session_id).acount() == 1
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.bot_paused is True  # the third request's, not a refused one's


async def test_a_socket_flood_of_handoff_requests_is_limited_like_any_frame(
    api, settings, memory_limits
) -> None:
    from supportbot import ratelimit

    setattr(settings, ratelimit.configured_limits()["session_ws_messages"].setting, 3)
    session_id = await new_session(api)
    ws = await open_socket(session_id)
    for i in range(5):
        await ws.send_json_to({"type": "handoff_request", "data": {}, "requestId": f"f{i}"})
    answers: list[dict[str, Any]] = []
    while len([f for f in answers if f.get("requestId")]) < 5:
        answers.append(await ws.receive_json_from(timeout=5))
    mine = [f for f in answers if f.get("requestId")]
    assert [f["type"] for f in mine[:3]] == ["handoff_status"] * 3
    assert [f["data"]["code"] for f in mine[3:]] == ["RATE_LIMIT_EXCEEDED"] * 2
    assert await Handoff.objects.filter(session_id=session_id).acount() == 1
    await ws.disconnect()


# --- more of the contract ----------------------------------------------------------------------


async def test_a_streamed_turn_held_by_a_person_ends_with_its_final_event(api, agent) -> None:
    from tests.chat.conftest import parse_sse

    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    await post(await staff_client(agent), f"/api/staff/handoffs/hof_{item.pk}/take")
    response = await api.post(
        "/api/chat",
        data=json.dumps({"message": "Still there?", "sessionId": session_id}),
        content_type="application/json",
        headers={"Accept": "text/event-stream"},
    )
    body = b"".join([chunk async for chunk in response.streaming_content])
    events = parse_sse(body)
    assert [name for name, _ in events] == ["message_received", "ai_response"]
    final = events[-1][1]
    assert final["response"] == "" and final["metadata"]["heldByHuman"] is True
    assert final["metadata"]["agentName"] == "Alice"


async def test_a_supervisor_assigns_and_an_agent_cannot(api, agent, colleague) -> None:
    boss = await database_sync_to_async(make_user)("sue", "Supervisors", "Sue")
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    url = f"/api/staff/handoffs/hof_{item.pk}/assign"
    refused = await post(await staff_client(agent), url, {"agentId": colleague.pk})
    assert refused.status_code == 403
    nobody = await post(await staff_client(boss), url, {"agentId": 99999})
    assert nobody.status_code == 400 and nobody.json()["error"]["details"]["field"] == "agentId"
    given = await post(await staff_client(boss), url, {"agentId": colleague.pk})
    assert given.status_code == 200 and given.json()["assignee"]["name"] == "Bob"
    assert given.json()["status"] == "assigned"
    # Assigned to Bob: Alice cannot take it, Bob can.
    take = f"/api/staff/handoffs/hof_{item.pk}/take"
    assert (await post(await staff_client(agent), take)).status_code == 409
    assert (await post(await staff_client(colleague), take)).status_code == 200
    # Reassigning a held conversation passes it on: Alice now holds it.
    moved = await post(await staff_client(boss), url, {"agentId": agent.pk})
    assert moved.json()["status"] == "with_agent" and moved.json()["assignee"]["name"] == "Alice"
    held = await send(api, session_id, "hello?")
    assert held.json()["metadata"]["agentName"] == "Alice"


async def test_unknown_hand_off_ids_are_not_found(api, agent) -> None:
    staff = await staff_client(agent)
    for handoff_id in ("hof_999999", "nope", "hof_", "hof_1e3", "hof_" + "9" * 40):
        response = await post(staff, f"/api/staff/handoffs/{handoff_id}/take")
        assert response.status_code == 404, handoff_id
        assert response.json()["error"]["code"] == "NOT_FOUND"
