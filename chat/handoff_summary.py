"""What a person picking up a conversation reads first: the customer's problem.

Written by the model when one answers (``summarise_with_model``, run by a task once the hand-off
exists, so asking for a person never waits on a model); until then, and whenever no model answers,
extractive:

whole sentences of the customer's own messages (never the bot's, so no disclaimers and
no pasted articles), greetings, thanks and bare "talk to a human" requests left out, repeated
sentences once, at most ``MAX_CHARS``. The opening messages say what the problem is and the last
ones where it stands, so when there is too much the middle goes first. Used for the inbox item and
the ticket a hand-off opens.
"""

from __future__ import annotations

import re

from asgiref.sync import async_to_sync

from chat import events, wire
from chat.llm.offline import detect_intents, search_text
from chat.memory import summarize_on_own_loop
from chat.models import Handoff, Message
from supportbot.db import write_transaction
from tools.kb.query import query_terms

MAX_CHARS = 800
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+|\n+")
MIN_WORDS = 2  # a one-word sentence ("Hi", "Yes") says nothing to the agent
MODEL_MESSAGES = 60  # the model reads the latest messages of a long conversation


def customer_sentences(texts: list[str]) -> list[str]:
    """The sentences worth keeping of the customer's messages, in order, each once."""
    seen: set[str] = set()
    kept: list[str] = []
    for text in texts:
        intents = detect_intents(text)
        if intents.small_talk_only:
            continue
        for sentence in _SENTENCE_END_RE.split(text):
            sentence = " ".join(sentence.split())
            if len(sentence.split()) < MIN_WORDS:
                continue
            if detect_intents(sentence).human and not query_terms(search_text(sentence)):
                continue  # only "can I talk to a person": the hand-off itself says that
            key = sentence.casefold().rstrip(".!?… ")
            if key in seen:
                continue
            seen.add(key)
            kept.append(sentence)
    return kept


def summarise_sentences(sentences: list[str], *, max_chars: int = MAX_CHARS) -> str:
    """Whole sentences within ``max_chars``: the first ones, then as many of the last as fit."""
    if not sentences:
        return ""
    if len(sentences[0]) > max_chars:  # one huge sentence: cut at a word, and say so
        return sentences[0][: max_chars - 1].rsplit(" ", 1)[0] + "…"
    head: list[str] = []
    tail: list[str] = []
    used = 0
    low, high = 0, len(sentences) - 1
    take_head = True
    while low <= high:
        sentence = sentences[low] if take_head else sentences[high]
        cost = len(sentence) + (1 if used else 0)
        if used + cost > max_chars:
            break
        used += cost
        if take_head:
            head.append(sentence)
            low += 1
        else:
            tail.insert(0, sentence)
            high -= 1
        # Two from the start for each one from the end: the problem matters most.
        take_head = len(head) < 2 * (len(tail) + 1)
    gap = " … " if low <= high and tail else " "
    return (" ".join(head) + (gap + " ".join(tail) if tail else "")).strip()


def handoff_summary(*, session_id: str, max_chars: int = MAX_CHARS) -> str:
    """The extractive summary of the session's customer messages."""
    texts = list(
        Message.objects.filter(session_id=session_id, role=Message.Role.USER)
        .order_by("seq")
        .values_list("content", flat=True)[:200]
    )
    return summarise_sentences(customer_sentences(texts), max_chars=max_chars)


def summarise_with_model(*, session_id: str, max_chars: int = MAX_CHARS) -> str | None:
    """The model's briefing for the agent (None when no model answers: keep the extractive one).
    Synchronous: for a Celery worker or a workflow step, never a request."""
    messages = list(
        Message.objects.filter(session_id=session_id).order_by("-seq")[:MODEL_MESSAGES]
    )[::-1]
    if not messages:
        return None
    text = async_to_sync(summarize_on_own_loop)("", messages, prompt="handoff")
    if not text:
        return None
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(". ", 1)[0]  # whole sentences when the model wrote too much
    return cut + "." if len(cut) > max_chars // 2 else text[: max_chars - 1] + "…"


def summarise_handoff(*, handoff_id: int) -> bool:
    """Give a hand-off the model's summary when a model answers; the inbox shows it at once."""
    handoff = Handoff.objects.filter(pk=handoff_id).first()
    if handoff is None:
        return False
    text = summarise_with_model(session_id=handoff.session_id)
    if not text:
        return False
    with write_transaction():
        updated = Handoff.objects.filter(pk=handoff_id).update(summary=text)
        item = Handoff.objects.select_related("session", "assignee").filter(pk=handoff_id).first()
        if updated and item is not None:
            events.inbox_changed_on_commit(wire.inbox_item(item))
    return bool(updated)
