"""Memory: summary at the threshold keeps the last 20; nothing is dropped unsummarised."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat.memory import build_context
from chat.models import ChatSession, Message
from tests.chat.conftest import completions, new_session, send
from tests.fakes.openai_server import Custom, Reply

pytestmark = pytest.mark.django_db(transaction=True)

SUMMARY_MARK = "maintain the memory of a customer-support conversation"


def summary_or_answer(body: dict) -> str | Reply:
    if SUMMARY_MARK in body["messages"][0]["content"]:
        return "SUMMARY: the customer asked about topics 1 to 16."
    return Reply("Noted.")


async def chat_turns(api, session_id: str, count: int) -> None:
    for i in range(1, count + 1):
        response = await send(api, session_id, f"question number q{i:02d} about syncing")
        assert response.status_code == 200, response.content


async def test_summary_by_the_model_folds_all_but_the_last_20(api, primary, kb):
    primary.set_default(Custom(summary_or_answer))
    session_id = await new_session(api)
    await chat_turns(api, session_id, 25)  # 50 messages: at the threshold, not past it
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.summarized_through_seq == 0 and session.summary == ""

    await chat_turns(api, session_id, 1)  # 52 messages: past 50
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.summarized_through_seq == 32  # 52 - 20 kept
    assert session.summary == "SUMMARY: the customer asked about topics 1 to 16."
    summary_requests = [
        r for r in completions(primary) if SUMMARY_MARK in r.body["messages"][0]["content"]
    ]
    assert len(summary_requests) == 1
    transcript = summary_requests[0].body["messages"][1]["content"]
    assert "q01" in transcript and "q16" in transcript  # seq 31 is question 16
    assert "q17" not in transcript  # seq 33 stays verbatim

    # The next turn's context: summary + the 20 kept messages + the new question.
    await send(api, session_id, "question number q27 about syncing")
    messages = completions(primary)[-1].body["messages"]
    assert "SUMMARY: the customer asked" in messages[1]["content"]
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users[0].startswith("question number q17") and users[-1].endswith("q27 about syncing")
    assert len(messages) == 2 + 20 + 1  # system, summary, 20 kept, the new question


async def test_offline_summary_is_extractive_and_covers_everything_folded(api, kb):
    session_id = await new_session(api)
    await chat_turns(api, session_id, 26)
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.summarized_through_seq == 32
    for i in range(1, 17):
        assert f"q{i:02d}" in session.summary
    assert "q17" not in session.summary


async def test_context_never_drops_unsummarised_messages(api, settings, kb):
    settings.MEMORY_CONTEXT_TOKENS = 600
    session_id = await new_session(api)
    for i in range(1, 6):
        await send(api, session_id, f"marker{i} " + "lorem ipsum dolor " * 30)
    session = await ChatSession.objects.aget(pk=session_id)
    current = await Message.objects.filter(session=session, role="user").order_by("-seq").afirst()
    assert current is not None
    context = await sync_to_async(build_context)(session_id=session_id, current=current)
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.summarized_through_seq > 0
    text = str(context)
    for i in range(1, 6):
        assert f"marker{i}" in text  # either verbatim or in the summary
    assert context[-1]["content"].startswith("marker5")


async def test_a_fold_leaves_headroom_so_the_next_turn_does_not_fold_again(
    api, settings, primary, kb
):
    """Folding only what overflows would fold again on the very next turn (and on every turn
    after it), re-reading the whole history each time."""
    settings.MEMORY_CONTEXT_TOKENS = 3000
    # Answers much longer than their one-line summaries, as real answers are.
    primary.set_default(Reply("Here is how that works. " + "Step by step it goes on. " * 25))
    session_id = await new_session(api)
    folded_through = 0
    for i in range(1, 60):
        await send(api, session_id, f"marker{i} " + "lorem ipsum dolor " * 5)
        session = await ChatSession.objects.aget(pk=session_id)
        if session.summarized_through_seq:
            folded_through = session.summarized_through_seq
            break
    assert folded_through > 0
    await send(api, session_id, "marker-next " + "lorem ipsum dolor " * 5)
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.summarized_through_seq == folded_through
