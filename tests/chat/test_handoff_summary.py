"""The summary a person reads before picking a conversation up: whole sentences of the customer's
own words, no bot disclaimers, at most ~800 characters; the model's briefing when one answers."""

from __future__ import annotations

import pytest

from chat.handoff_summary import (
    MAX_CHARS,
    customer_sentences,
    handoff_summary,
    summarise_handoff,
    summarise_sentences,
)
from chat.models import ChatSession, Handoff, Message
from tests.chat.conftest import use_models
from tests.fakes.openai_server import Reply


def test_small_talk_and_bare_requests_for_a_person_are_left_out() -> None:
    kept = customer_sentences(
        [
            "Hi there!",
            "My desktop app shows error NB-1042 since this morning. I tried restarting it.",
            "can I talk to a human",
            "I tried restarting it.",
            "Thanks",
        ]
    )
    assert kept == [
        "My desktop app shows error NB-1042 since this morning.",
        "I tried restarting it.",
    ]


def test_the_summary_keeps_whole_sentences_within_the_limit() -> None:
    sentences = [
        f"Sentence number {i} describes one more detail of the problem." for i in range(40)
    ]
    summary = summarise_sentences(sentences)
    assert len(summary) <= MAX_CHARS
    assert summary.startswith("Sentence number 0 ")
    assert "Sentence number 39 " in summary  # the latest news is kept too
    for part in summary.replace(" … ", " ").split(". "):
        assert part.startswith("Sentence number "), part  # nothing cut mid-sentence


def test_one_huge_sentence_is_cut_at_a_word_and_says_so() -> None:
    summary = summarise_sentences(["word " * 400])
    assert len(summary) <= MAX_CHARS and summary.endswith("…") and not summary.endswith(" …")


@pytest.mark.django_db
def test_the_bots_answers_never_reach_the_summary() -> None:
    session = ChatSession.objects.create()
    Message.objects.create(session=session, seq=1, role="user", content="Sync fails on my Mac.")
    Message.objects.create(
        session=session,
        seq=2,
        role="assistant",
        content="I'm the offline assistant, answering without a language model right now.",
    )
    summary = handoff_summary(session_id=session.pk)
    assert summary == "Sync fails on my Mac."


@pytest.mark.django_db(transaction=True)
def test_the_model_rewrites_the_summary_when_one_answers(settings, fake_llm) -> None:
    use_models(settings, primary=fake_llm.base_url)
    fake_llm.script(Reply("The customer cannot sync on macOS 14 since the update."))
    session = ChatSession.objects.create()
    Message.objects.create(session=session, seq=1, role="user", content="sync broke")
    handoff = Handoff.objects.create(session=session, summary="sync broke")
    assert summarise_handoff(handoff_id=handoff.pk) is True
    handoff.refresh_from_db()
    assert handoff.summary == "The customer cannot sync on macOS 14 since the update."
    request = next(r for r in fake_llm.requests if r.path.endswith("/chat/completions"))
    assert "brief a support agent" in request.body["messages"][0]["content"]
