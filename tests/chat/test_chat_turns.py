"""REST chat turns end to end: real pipeline, real openai client, fake model over HTTP."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat.models import ChatSession, Message
from tests.chat.conftest import (
    closed_port_url,
    completions,
    new_session,
    parse_sse,
    send,
    use_models,
)
from tests.fakes.openai_server import HttpError, Reply, Stall

pytestmark = pytest.mark.django_db(transaction=True)


def messages_of(session_id: str) -> list[Message]:
    return list(Message.objects.filter(session_id=session_id).order_by("seq"))


async def test_rest_turn_stores_both_messages_with_consecutive_seq(api, primary, kb):
    primary.script(Reply("Open Settings, then Security."))
    session_id = await new_session(api)
    response = await send(api, session_id, "How do I change my password?")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"] == "Open Settings, then Security."
    assert body["sessionId"] == session_id and body["messageId"].startswith("msg_")
    assert isinstance(body["timestamp"], int) and isinstance(body["processingTime"], int)
    assert body["toolCalls"] == []
    assert body["metadata"]["aiModel"] == "fake-model"
    assert body["metadata"]["fallbackUsed"] is False
    request = completions(primary)[0].body
    assert body["metadata"]["tokensUsed"] > 0
    assert request["max_tokens"] > 0

    stored = await sync_to_async(messages_of)(session_id)
    assert [(m.seq, m.role, m.status) for m in stored] == [
        (1, "user", "answered"),
        (2, "assistant", "complete"),
    ]
    assert stored[0].content == "How do I change my password?"
    assert stored[1].id == body["messageId"] and stored[1].reply_to_id == stored[0].id
    assert stored[1].total_tokens == body["metadata"]["tokensUsed"]
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.message_count == 2 and session.total_tokens == stored[1].total_tokens


async def test_content_is_stored_exactly_as_typed(api, primary, kb):
    text = "<img src=x onerror=alert(1)> & \"quotes\" 'single' — ünïcödé 🙂"
    session_id = await new_session(api)
    assert (await send(api, session_id, text)).status_code == 200
    stored = await sync_to_async(messages_of)(session_id)
    assert stored[0].content == text
    assert completions(primary)[0].body["messages"][-1] == {"role": "user", "content": text}


async def test_sse_delivers_tokens_in_order_then_a_final_event(api, primary, kb):
    primary.script(Reply("one two three four five", delay=0.01))
    session_id = await new_session(api)
    response = await send(api, session_id, "Count to five", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    raw = b"".join([chunk async for chunk in response.streaming_content])
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_received" and names[-1] == "ai_response"
    assert set(names[1:-1]) == {"ai_token"}
    deltas = [data["delta"] for name, data in events if name == "ai_token"]
    assert len(deltas) == 5 and "".join(deltas) == "one two three four five"
    final = events[-1][1]
    assert final["response"] == "one two three four five"
    assert events[0][1]["seq"] == 1 and final["seq"] == 2
    assert {data["messageId"] for name, data in events if name == "ai_token"} == {
        final["messageId"]
    }


async def test_current_turn_reaches_the_model_exactly_once_and_no_ids(api, primary, kb):
    session_id = await new_session(api)
    await send(api, session_id, "first question about sync")
    await send(api, session_id, "second question about billing", requestId="req-two")
    messages = completions(primary)[-1].body["messages"]
    assert messages[0]["role"] == "system"
    assert messages[-1] == {"role": "user", "content": "second question about billing"}
    user_texts = [m["content"] for m in messages if m["role"] == "user"]
    assert user_texts == ["first question about sync", "second question about billing"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    prompt = str(messages)
    assert session_id not in prompt and "req-two" not in prompt


@pytest.mark.parametrize("failure", ["http_500", "timeout", "refused"])
async def test_primary_down_fallback_answers_and_says_so(
    api, settings, fake_llm, fake_llm_fallback, kb, failure
):
    primary_url = fake_llm.base_url
    if failure == "http_500":
        fake_llm.set_default(HttpError(500))
    elif failure == "timeout":
        fake_llm.set_default(Reply("too late", first_delay=3))
    else:
        primary_url = closed_port_url()
    use_models(settings, primary=primary_url, fallback=fake_llm_fallback.base_url)
    fake_llm_fallback.script(Reply("Answer from the fallback."))
    session_id = await new_session(api)
    response = await send(api, session_id, "Where are my invoices?")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"] == "Answer from the fallback."
    assert body["metadata"]["fallbackUsed"] is True
    assert body["metadata"]["aiModel"] == "fake-fallback-model"
    if failure != "refused":
        assert len(completions(fake_llm)) == 2  # one attempt plus LLM_MAX_RETRIES=1


async def test_everything_down_offline_answers_with_a_citation(api, settings, kb):
    use_models(settings, primary=closed_port_url(), fallback=closed_port_url())
    session_id = await new_session(api)
    response = await send(api, session_id, "I forgot my password and cannot sign in")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["metadata"]["fallbackUsed"] is True
    assert body["metadata"]["aiModel"] == "offline-assistant"
    citations = body["metadata"]["citations"]
    assert citations and citations[0]["id"] == "kb_002"
    assert citations[0]["url"] in body["response"]
    assert "without a language model" in body["response"].lower()


async def test_offline_assistant_is_the_embedded_default(api, kb):
    session_id = await new_session(api)
    body = (await send(api, session_id, "What does error NB-1042 mean?")).json()
    assert body["metadata"]["aiModel"] == "offline-assistant"
    assert body["metadata"]["fallbackUsed"] is False
    assert body["metadata"]["citations"][0]["id"] == "kb_036"


async def test_every_model_down_keeps_the_message_and_answers_503(api, settings, kb):
    settings.OFFLINE_FALLBACK = False
    use_models(settings, primary=closed_port_url())
    session_id = await new_session(api)
    response = await send(api, session_id, "Hello?")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AI_SERVICE_UNAVAILABLE"
    assert response.json()["error"]["retryable"] is True
    stored = await sync_to_async(messages_of)(session_id)
    assert [(m.role, m.status, m.content) for m in stored] == [("user", "unanswered", "Hello?")]


async def test_stalled_stream_keeps_the_partial_answer_as_incomplete(api, primary, kb):
    primary.script(Stall(text="Here is the first part of it", chunks_before=3))
    session_id = await new_session(api)
    response = await send(api, session_id, "Tell me everything")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "AI_SERVICE_UNAVAILABLE"
    assert error["details"]["partialResponse"] == "Here is the"
    stored = await sync_to_async(messages_of)(session_id)
    assert [(m.role, m.status) for m in stored] == [
        ("user", "unanswered"),
        ("assistant", "incomplete"),
    ]
    assert stored[1].content == "Here is the" and stored[1].id == error["details"]["messageId"]
    # The lease is free again: the next message is answered.
    primary.script(Reply("Better now."))
    assert (await send(api, session_id, "again?")).json()["response"] == "Better now."


async def test_circuit_opens_and_later_recovers(api, settings, fake_llm, kb):
    use_models(settings, primary=fake_llm.base_url)
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_BREAKER_THRESHOLD = 2
    settings.LLM_BREAKER_RESET_SECONDS = 0.5
    from chat.llm.chain import get_chain, reset_chain

    reset_chain()
    fake_llm.set_default(HttpError(503))
    session_id = await new_session(api)
    for _ in range(2):
        body = (await send(api, session_id, "How do I share a folder?")).json()
        assert body["metadata"]["aiModel"] == "offline-assistant"
    assert len(completions(fake_llm)) == 2
    assert get_chain().breaker_states()[0]["state"] == "open"
    await send(api, session_id, "How do I share a folder?")
    assert len(completions(fake_llm)) == 2  # open: the primary was not called
    await asyncio.sleep(0.6)
    fake_llm.set_default(Reply("Recovered."))
    body = (await send(api, session_id, "How do I share a folder?")).json()
    assert body["response"] == "Recovered." and body["metadata"]["fallbackUsed"] is False
    assert get_chain().breaker_states()[0]["state"] == "closed"


async def test_repeated_request_id_is_answered_once(api, primary, kb):
    session_id = await new_session(api)
    first = (await send(api, session_id, "Refund please", requestId="r-1")).json()
    again = (await send(api, session_id, "Refund please", requestId="r-1")).json()
    assert again == first
    assert len(completions(primary)) == 1
    assert len(await sync_to_async(messages_of)(session_id)) == 2


async def test_concurrent_repeats_of_one_request_id_run_one_turn(api, primary, kb):
    primary.set_default(Reply("slow answer", first_delay=0.3))
    session_id = await new_session(api)
    results = await asyncio.gather(
        *(send(api, session_id, "Same message", requestId="dup") for _ in range(3))
    )
    bodies = [r.json() for r in results]
    assert all(r.status_code == 200 for r in results)
    assert len({b["messageId"] for b in bodies}) == 1
    assert len(completions(primary)) == 1


async def test_two_concurrent_turns_of_one_session_are_serialised(api, primary, kb):
    primary.set_default(Reply("answer in a while", first_delay=0.3))
    session_id = await new_session(api)
    await asyncio.gather(send(api, session_id, "first"), send(api, session_id, "second"))
    stored = await sync_to_async(messages_of)(session_id)
    assert [m.seq for m in stored] == [1, 2, 3, 4]
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1].reply_to_id == stored[0].id and stored[3].reply_to_id == stored[2].id
    # The second turn saw the first one's answer: they did not overlap.
    later = completions(primary)[1].body["messages"]
    assert later[-2] == {"role": "assistant", "content": "answer in a while"}


async def test_different_sessions_run_in_parallel(api, primary, kb):
    primary.set_default(Reply("parallel", first_delay=0.4))
    sessions = [await new_session(api) for _ in range(4)]
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(send(api, s, "hello there") for s in sessions))
    assert asyncio.get_running_loop().time() - started < 1.2


async def test_a_crashed_turns_lease_lapses_and_the_next_turn_runs(api, primary, settings, kb):
    from datetime import timedelta

    from django.utils import timezone

    session_id = await new_session(api)
    # A worker died mid-turn: its lease is still on the row, its user message pending.
    await Message.objects.acreate(
        session_id=session_id, seq=1, role="user", content="lost?", status="pending"
    )
    await ChatSession.objects.filter(pk=session_id).aupdate(
        turn_token="dead",
        turn_lease_until=timezone.now() + timedelta(seconds=0.4),
        last_seq=1,
        message_count=1,
    )
    started = asyncio.get_running_loop().time()
    response = await send(api, session_id, "anyone there?")
    assert response.status_code == 200
    assert asyncio.get_running_loop().time() - started >= 0.3
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.turn_token == "" and session.turn_lease_until is None
    stored = await sync_to_async(messages_of)(session_id)
    assert [(m.seq, m.status) for m in stored] == [
        (1, "unanswered"),
        (2, "answered"),
        (3, "complete"),
    ]


async def test_a_turn_longer_than_its_lease_renews_it_and_keeps_the_session(
    api, primary, settings, kb
):
    settings.TURN_LEASE_SECONDS = 1.0  # renewed every third of a second
    # Six chunks 0.3 s apart: 1.8 s in all, within the test's inter-token timeout.
    primary.set_default(Reply("a long answer told very slowly", delay=0.3))
    session_id = await new_session(api)
    first = asyncio.ensure_future(send(api, session_id, "first"))
    await asyncio.sleep(0.2)
    second = asyncio.ensure_future(send(api, session_id, "second"))
    assert (await first).status_code == 200 and (await second).status_code == 200
    stored = await sync_to_async(messages_of)(session_id)
    # Had the lease lapsed at 1 s, "second" would have been stored before the first answer.
    assert [(m.seq, m.content) for m in stored] == [
        (1, "first"),
        (2, "a long answer told very slowly"),
        (3, "second"),
        (4, "a long answer told very slowly"),
    ]
