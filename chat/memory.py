"""Conversation memory: what the model sees of a session, and the running summary.

Context = system prompt + running summary + the messages after the summary, newest kept first,
within ``MEMORY_CONTEXT_TOKENS``. Nothing is dropped without being summarised: when the recent
messages do not fit, the oldest are folded into the summary (extractively, at once) before the
context is built. Separately, when more than ``MEMORY_SUMMARY_THRESHOLD`` messages sit outside the
summary, all but the last ``MEMORY_KEEP_RECENT`` are folded by the model (or extractively when no
model answers) in a Celery task.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import structlog
from asgiref.sync import async_to_sync
from django.conf import settings

from chat.llm.base import CompletionRequest, Finish, ProviderError, TextDelta
from chat.llm.chain import close_loop_clients, get_chain
from chat.models import ChatSession, Message
from chat.tokens import count_message_tokens
from supportbot.db import write_transaction
from tools.kb.search import search_articles

log = structlog.get_logger("chat.memory")

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
CONTEXT_ROLES = (Message.Role.USER, Message.Role.ASSISTANT, Message.Role.STAFF)
SUMMARY_MAX_CHARS = 6000
FOLD_TO = 0.75  # share of the context budget (after the fixed parts) history fills after a fold
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@functools.cache
def load_prompt(name: str) -> str:
    """A prompt file of ``chat/prompts/`` (documented in PROMPTS.md)."""
    return (PROMPT_DIR / f"{name}.md").read_text(encoding="utf-8").strip()


def _as_chat_message(role: str, content: str) -> dict[str, Any]:
    if role == Message.Role.USER:
        return {"role": "user", "content": content}
    if role == Message.Role.STAFF:
        return {"role": "assistant", "content": f"[Human support agent] {content}"}
    return {"role": "assistant", "content": content}


def _summary_message(summary: str) -> dict[str, Any]:
    return {
        "role": "system",
        "content": f"<conversation_summary>\n{summary}\n</conversation_summary>",
    }


def _history(session: ChatSession, before_seq: int) -> list[tuple[int, str, str]]:
    """(seq, role, content) of the messages between the summary and ``before_seq``."""
    return list(
        Message.objects.filter(
            session=session,
            seq__gt=session.summarized_through_seq,
            seq__lt=before_seq,
            role__in=CONTEXT_ROLES,
        )
        .exclude(status=Message.Status.INCOMPLETE)
        .order_by("seq")
        .values_list("seq", "role", "content")
    )


def build_context(
    *, session_id: str, current: Message, session: ChatSession | None = None
) -> list[dict[str, Any]]:
    """The messages for the model: the current user turn appears exactly once, last.

    ``session``: the row as the caller just read it (saves reading it again); after a fold the
    row is always read afresh.
    """
    budget = settings.MEMORY_CONTEXT_TOKENS
    for _ in range(2):
        if session is None:
            session = ChatSession.objects.get(pk=session_id)
        system = {"role": "system", "content": load_prompt("system")}
        head = [system] + ([_summary_message(session.summary)] if session.summary else [])
        tail = {"role": "user", "content": current.content}
        fixed = sum(count_message_tokens(m) for m in head) + count_message_tokens(tail)
        # After a fold the history fills only FOLD_TO of what is left, so the next turns fit
        # without folding again (one fold per many turns, not one per turn).
        low_water = fixed + FOLD_TO * max(budget - fixed, 0)
        used = fixed
        history = _history(session, current.seq)
        kept: list[dict[str, Any]] = []
        first_kept = first_low = len(history)
        for index in range(len(history) - 1, -1, -1):
            item = _as_chat_message(history[index][1], history[index][2])
            used += count_message_tokens(item)
            if used > budget:
                break
            kept.append(item)
            first_kept = index
            if used <= low_water:
                first_low = index
        if first_kept == 0:
            return [*head, *reversed(kept), tail]
        # Some history does not fit: fold it into the summary first, then build again.
        fold_extractively(session=session, through_seq=history[first_low - 1][0])
        session = None
    return [*head, *reversed(kept), tail]


def _first_sentences(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentences = _SENTENCE_END.split(cut)
    kept = " ".join(sentences[:-1]) if len(sentences) > 1 else cut.rsplit(" ", 1)[0]
    return kept + " …"


def extractive_summary(previous: str, messages: list[Message]) -> str:
    """Fold ``messages`` into ``previous`` without a model: one short line per message."""
    lines = [previous] if previous else []
    for message in messages:
        if message.role not in CONTEXT_ROLES or not message.content.strip():
            continue
        who = {"user": "Customer", "assistant": "Assistant", "staff": "Agent"}[message.role]
        limit = 240 if message.role == Message.Role.USER else 160
        lines.append(f"- {who}: {_first_sentences(message.content, limit)}")
    summary = "\n".join(lines)
    if len(summary) > SUMMARY_MAX_CHARS:
        # Keep the newest lines: older ones were already compressed into earlier summaries.
        summary = "…\n" + summary[-SUMMARY_MAX_CHARS:].split("\n", 1)[-1]
    return summary


def _save_summary(
    *, session: ChatSession, previous_through: int, through_seq: int, text: str
) -> bool:
    with write_transaction():
        updated = ChatSession.objects.filter(
            pk=session.pk, summarized_through_seq=previous_through
        ).update(summary=text, summarized_through_seq=through_seq)
    return updated == 1


def _folded(session: ChatSession, through_seq: int) -> list[Message]:
    return list(
        Message.objects.filter(
            session=session, seq__gt=session.summarized_through_seq, seq__lte=through_seq
        ).order_by("seq")
    )


def fold_extractively(*, session: ChatSession, through_seq: int) -> None:
    """Fold every message up to ``through_seq`` into the summary now (no model)."""
    text = extractive_summary(session.summary, _folded(session, through_seq))
    _save_summary(
        session=session,
        previous_through=session.summarized_through_seq,
        through_seq=through_seq,
        text=text,
    )


def summary_due(session: ChatSession) -> int | None:
    """The seq to fold through when more than the threshold sits outside the summary."""
    # seq is gap-free from 1 to last_seq: at most this many sit outside (no query needed).
    if session.last_seq - session.summarized_through_seq <= settings.MEMORY_SUMMARY_THRESHOLD:
        return None
    outside = Message.objects.filter(
        session=session, seq__gt=session.summarized_through_seq
    ).order_by("-seq")
    count = outside.count()
    if count <= settings.MEMORY_SUMMARY_THRESHOLD:
        return None
    keep = settings.MEMORY_KEEP_RECENT
    return outside.values_list("seq", flat=True)[keep]


async def summarize_with_model(
    previous: str, messages: list[Message], *, prompt: str = "summarize"
) -> str | None:
    """Ask the configured models (never the offline assistant) for a new summary (``prompt``
    names the instructions: the memory's, or ``handoff`` for the agent taking over)."""
    transcript = "\n".join(f"{m.role}: {m.content}" for m in messages if m.role in CONTEXT_ROLES)
    request = CompletionRequest(
        messages=[
            {"role": "system", "content": load_prompt(prompt)},
            {
                "role": "user",
                "content": (
                    f"<previous_summary>\n{previous or '(none)'}\n</previous_summary>\n"
                    f"<transcript>\n{transcript}\n</transcript>"
                ),
            },
        ],
        max_tokens=512,
        temperature=0.0,
    )
    for link in get_chain().links:
        if link.provider.name == "offline" or not link.breaker.allow():
            continue
        parts: list[str] = []
        try:
            async for event in link.provider.stream(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Finish):
                    link.breaker.record_success()
        except ProviderError as exc:
            link.breaker.record_failure()
            log.warning("summary_model_failed", provider=link.provider.name, kind=exc.kind)
            continue
        text = "".join(parts).strip()
        if text:
            return text
    return None


async def summarize_on_own_loop(
    previous: str, messages: list[Message], *, prompt: str = "summarize"
) -> str | None:
    """``summarize_with_model`` on the loop ``async_to_sync`` makes for it, closing the model
    clients it opened before that loop closes."""
    try:
        return await summarize_with_model(previous, messages, prompt=prompt)
    finally:
        await close_loop_clients()


def summarize_session(*, session_id: str) -> bool:
    """Fold all but the last MEMORY_KEEP_RECENT messages when the threshold is passed."""
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        return False
    through_seq = summary_due(session)
    if through_seq is None:
        return False
    folded = _folded(session, through_seq)
    text = async_to_sync(summarize_on_own_loop)(session.summary, folded)
    source = "model"
    if not text:
        text = extractive_summary(session.summary, folded)
        source = "extractive"
    saved = _save_summary(
        session=session,
        previous_through=session.summarized_through_seq,
        through_seq=through_seq,
        text=text,
    )
    log.info("summary_folded", session_id=session_id, through_seq=through_seq, source=source)
    return saved


# --- topics -----------------------------------------------------------------------------------

MAX_TOPICS = 5
# Relevance is a share of the best score the query could reach (tools.kb); a topic needs a
# clearer match than the offline assistant's "is anything relevant" threshold.
TOPIC_MIN_RELEVANCE = 0.3
_RESOLVED = re.compile(
    r"\b(that|it|this)\s+(fixed|solved|worked|did it)\b"
    r"|\b(problem|issue)\s+(is\s+)?(solved|fixed|resolved)\b|\bworks now\b|\ball (sorted|good)\b",
    re.IGNORECASE,
)


def topic_of(text: str) -> str | None:
    """The knowledge-base category a customer message is about, when one clearly fits."""
    if _RESOLVED.search(text):
        return None
    hits = search_articles(query=text, max_results=1).hits
    if hits and hits[0].relevance >= TOPIC_MIN_RELEVANCE and hits[0].category:
        return hits[0].category
    return None


def track_topics(*, session: ChatSession, user_text: str, topic: str | None) -> None:
    """Keep ``activeTopics`` (newest first) and move a topic to ``resolvedIssues`` when the
    customer says it is fixed (the caller saves the session; ``topic`` is ``topic_of``'s)."""
    topics = list(session.active_topics)
    if _RESOLVED.search(user_text) and topics:
        done = topics.pop(0)
        if done not in session.resolved_issues:
            session.resolved_issues = [*session.resolved_issues, done]
    elif topic:
        topics = [topic] + [t for t in topics if t != topic]
    session.active_topics = topics[:MAX_TOPICS]
