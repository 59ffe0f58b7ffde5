"""Replies drafted for the agent holding a conversation: made by the model chain from the
conversation, shown only to staff, never sent by themselves, and their outcome kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat.models import Handoff, Message, ReplyDraft
from tests.chat.conftest import closed_port_url, completions, new_session, send, use_models
from tests.chat.test_consumer import HEADERS, open_socket
from tests.chat.test_handoff import ask, item_of, make_user, post, staff_client
from tests.fakes.openai_server import Reply, ToolCall, ToolCallReply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_layer():
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def draft_of(session_id: str, *, count: int = 1) -> list[ReplyDraft]:
    """The session's drafts once ``count`` exist (they are made in the background)."""
    async with asyncio.timeout(10):
        while True:
            drafts = [d async for d in ReplyDraft.objects.filter(session_id=session_id)]
            if len(drafts) >= count:
                return sorted(drafts, key=lambda d: d.pk)
            await asyncio.sleep(0.05)


async def held_by_agent(api, username: str = "alice"):
    """A session whose hand-off an agent has taken over; returns (session id, item, client)."""
    agent = await database_sync_to_async(make_user)(username, "Support agents", username.title())
    session_id = await new_session(api)
    await ask(api, session_id)
    item = await item_of(session_id)
    staff = await staff_client(agent)
    assert (await post(staff, f"/api/staff/handoffs/hof_{item.pk}/take")).status_code == 200
    return session_id, item, staff, agent


async def test_a_draft_reaches_watching_staff_only_and_is_never_sent(api, client, primary, kb):
    session_id, _item, _staff, agent = await held_by_agent(api)
    await database_sync_to_async(client.force_login)(agent)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    watcher = await open_socket(
        session_id, query="&watch=1", headers=[*HEADERS, (b"cookie", cookie)]
    )
    customer = await open_socket(session_id)
    for ws in (watcher, customer):
        await ws.receive_json_from(timeout=5)  # handoff_status on connect
    primary.script(Reply("Try signing out and back in, then check the sync icon."))

    response = await send(api, session_id, "My files do not sync")
    assert response.json()["metadata"]["heldByHuman"] is True
    (draft,) = await draft_of(session_id)
    assert draft.content == "Try signing out and back in, then check the sync icon."
    assert draft.outcome == "pending" and draft.model == "fake-model"
    frames: list[dict[str, Any]] = []
    while not any(f["type"] == "reply_draft" for f in frames):
        frames.append(await watcher.receive_json_from(timeout=5))
    assert frames[-1]["data"]["draftId"] == draft.pk
    seen = [await customer.receive_json_from(timeout=5)]  # the forwarded message only
    assert seen[0]["data"]["role"] == "user"
    assert await customer.receive_nothing(timeout=0.3)
    roles = [m.role async for m in Message.objects.filter(session_id=session_id)]
    assert "assistant" not in roles  # a draft is never a message
    for ws in (watcher, customer):
        await ws.disconnect()


async def test_a_draft_may_search_the_help_centre_and_nothing_else(api, primary, kb):
    session_id, *_ = await held_by_agent(api)
    primary.script(
        ToolCallReply(
            (
                ToolCall("kb_search", {"query": "reset password"}),
                ToolCall("create_ticket", {"title": "x", "description": "y"}),
            )
        ),
        Reply("Use the reset link on the sign-in page."),
    )
    await send(api, session_id, "I forgot my password")
    (draft,) = await draft_of(session_id)
    assert draft.content == "Use the reset link on the sign-in page."
    assert draft.citations and draft.citations[0]["id"] == "kb_002"
    offered = completions(primary)[0].body["tools"]
    assert [t["function"]["name"] for t in offered] == ["kb_search"]
    from tools.models import Ticket

    assert not await Ticket.objects.filter(session_id=session_id).aexists()


async def test_sending_a_draft_as_is_or_edited_or_discarding_it_is_recorded(api, primary, kb):
    session_id, item, staff, _ = await held_by_agent(api)
    primary.script(Reply("First draft."), Reply("Second draft."), Reply("Third draft."))
    await send(api, session_id, "one")
    (first,) = await draft_of(session_id)
    url = f"/api/staff/handoffs/hof_{item.pk}/reply"
    sent = await post(staff, url, {"text": "First draft.", "draftId": first.pk})
    assert sent.status_code == 201
    await send(api, session_id, "two")
    _, second = await draft_of(session_id, count=2)
    assert (
        await post(staff, url, {"text": "Second draft, edited.", "draftId": second.pk})
    ).status_code == 201
    await send(api, session_id, "three")
    *_, third = await draft_of(session_id, count=3)
    discarded = await post(staff, f"/api/staff/drafts/{third.pk}/discard")
    assert discarded.status_code == 200 and discarded.json()["outcome"] == "discarded"
    late = await post(staff, url, {"text": "Third draft.", "draftId": third.pk})
    assert late.status_code == 400 and late.json()["error"]["details"]["field"] == "draftId"
    outcomes = {d.pk: d.outcome async for d in ReplyDraft.objects.all()}
    assert outcomes == {first.pk: "sent", second.pk: "edited", third.pk: "discarded"}


async def test_no_model_means_a_failed_draft_not_an_invented_one(api, settings, kb):
    settings.OFFLINE_FALLBACK = False
    use_models(settings, primary=closed_port_url())
    session_id, *_ = await held_by_agent(api)
    await send(api, session_id, "Anyone?")
    (draft,) = await draft_of(session_id)
    assert (draft.outcome, draft.content) == ("failed", "")


async def test_an_offline_draft_speaks_for_the_agent_or_is_not_made(api, settings, kb):
    use_models(settings, primary=None)  # the offline assistant only
    session_id, *_ = await held_by_agent(api)
    await send(api, session_id, "How do I fix error NB-1042 on Windows?")
    (found,) = await draft_of(session_id)
    assert found.outcome == "pending" and found.model == "offline-assistant"
    assert found.citations and "NB-1042" in found.content
    assert "offline assistant" not in found.content  # the agent is a person
    await send(api, session_id, "Do you sell garden furniture?")
    _, nothing = await draft_of(session_id, count=2)
    # Its fallback would tell the customer to ask for a human, who is already answering.
    assert (nothing.outcome, nothing.content) == ("failed", "")


async def test_drafts_can_be_turned_off(api, settings, primary, kb):
    settings.HANDOFF_DRAFTS_ENABLED = False
    session_id, *_ = await held_by_agent(api)
    await send(api, session_id, "Hello")
    await asyncio.sleep(0.3)
    assert not await ReplyDraft.objects.filter(session_id=session_id).aexists()
    assert await Handoff.objects.filter(session_id=session_id).aexists()
