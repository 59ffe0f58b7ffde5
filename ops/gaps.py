"""Knowledge gaps: what customers asked that the help centre did not answer.

A question is a gap when its answer cited no source, when the customer gave the answer a thumbs
down, or when the conversation was handed to a person. Questions are grouped by similarity: by
the search's own key terms (stems, stop words dropped), or by their embeddings when an embedder
is configured. Each group is counted, linked to its conversations, and offered as a new article
pre-filled with the question. This is the page a support lead reads every Monday.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import structlog
from django.db.models import Q

from chat.models import AnswerFeedback, Handoff, Message
from tools.embeddings import get_embedder
from tools.kb.passages import key_terms

log = structlog.get_logger("ops.gaps")

REASONS = {"unsourced": "no source", "thumbs_down": "thumbs down", "handoff": "hand-off"}
PER_SOURCE = 3000  # the newest questions read per source: a week of a busy service
TERM_SIMILARITY = 0.5  # Jaccard of key terms to join a group
EMBEDDING_SIMILARITY = 0.75  # cosine to a group's centroid to join it
MAX_QUESTION_CHARS = 500


@dataclass
class GapQuestion:
    text: str
    session_id: str
    at: datetime
    reasons: set[str]
    terms: frozenset[str] = frozenset()


@dataclass
class Gap:
    """Questions about one thing, newest first."""

    seed: frozenset[str]
    questions: list[GapQuestion] = field(default_factory=list)
    terms: Counter[str] = field(default_factory=Counter)
    centroid: Any = None

    @property
    def count(self) -> int:
        return len(self.questions)

    @property
    def sessions(self) -> int:
        return len({q.session_id for q in self.questions})

    @property
    def last_at(self) -> datetime:
        return max(q.at for q in self.questions)

    @property
    def reasons(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for question in self.questions:
            counts.update(question.reasons)
        return {REASONS[key]: counts[key] for key in REASONS if counts[key]}

    @property
    def label(self) -> str:
        """The group's most common terms, as words to scan."""
        return ", ".join(term for term, _ in self.terms.most_common(4)) or "(no searchable words)"

    @property
    def example(self) -> str:
        """The question that says it best: the shortest of the newest few with the key terms."""
        newest = sorted(self.questions, key=lambda q: q.at, reverse=True)[:10]
        return min(newest, key=lambda q: (len(q.text) < 12, len(q.text))).text


def collect(
    *, since: datetime, until: datetime, reasons: set[str] | None = None
) -> list[GapQuestion]:
    """The gap questions asked in ``[since, until)``, one per customer message."""
    wanted = reasons or set(REASONS)
    found: dict[str, GapQuestion] = {}

    def add(message_id: str, text: str, session_id: str, at: datetime, reason: str) -> None:
        text = " ".join((text or "").split())[:MAX_QUESTION_CHARS]
        if not text:
            return
        question = found.get(message_id)
        if question is None:
            found[message_id] = GapQuestion(text, session_id, at, {reason})
        else:
            question.reasons.add(reason)

    if "unsourced" in wanted:
        answers = (
            Message.objects.filter(
                role=Message.Role.ASSISTANT,
                status=Message.Status.COMPLETE,
                created_at__gte=since,
                created_at__lt=until,
                reply_to__isnull=False,
            )
            .filter(~Q(metadata__has_key="citations"))
            .order_by("-created_at")
            .values_list("reply_to_id", "reply_to__content", "session_id", "reply_to__created_at")
        )[:PER_SOURCE]
        for message_id, text, session_id, at in answers:
            add(message_id, text, session_id, at, "unsourced")
    if "thumbs_down" in wanted:
        votes = (
            AnswerFeedback.objects.filter(
                vote=AnswerFeedback.Vote.DOWN, created_at__gte=since, created_at__lt=until
            )
            .filter(message__reply_to__isnull=False)
            .order_by("-created_at")
            .values_list(
                "message__reply_to_id",
                "message__reply_to__content",
                "session_id",
                "message__reply_to__created_at",
            )
        )[:PER_SOURCE]
        for voted_id, voted_text, voted_session, voted_at in votes:
            add(str(voted_id), voted_text, voted_session, voted_at, "thumbs_down")
    if "handoff" in wanted:
        handoffs = (
            Handoff.objects.filter(requested_at__gte=since, requested_at__lt=until)
            .order_by("-requested_at")
            .values_list(
                "pk", "first_message", "last_customer_message", "session_id", "requested_at"
            )
        )[:PER_SOURCE]
        for pk, first, last, session_id, at in handoffs:
            add(f"handoff:{pk}", first or last, session_id, at, "handoff")
    return sorted(found.values(), key=lambda q: q.at, reverse=True)


def group(questions: list[GapQuestion]) -> list[Gap]:
    """Questions grouped by similarity, the biggest (then the newest) group first."""
    for question in questions:
        question.terms = key_terms(question.text)
    vectors = _embeddings([q.text for q in questions])
    gaps: list[Gap] = []
    for index, question in enumerate(questions):
        vector = vectors[index] if vectors is not None else None
        best = _best_gap(gaps, question, vector)
        if best is None:
            best = Gap(seed=question.terms)
            gaps.append(best)
        best.questions.append(question)
        best.terms.update(question.terms)
        if vector is not None:
            n = len(best.questions)
            best.centroid = (
                vector if best.centroid is None else (best.centroid * (n - 1) + vector) / n
            )
    return sorted(gaps, key=lambda g: (g.count, g.last_at), reverse=True)


def _best_gap(gaps: list[Gap], question: GapQuestion, vector: Any) -> Gap | None:
    best: Gap | None = None
    best_score = 0.0
    for gap in gaps:
        if vector is not None and gap.centroid is not None:
            norm = float(np.linalg.norm(gap.centroid)) or 1.0
            score = float(np.dot(gap.centroid, vector)) / norm
            threshold = EMBEDDING_SIMILARITY
        else:
            score = _jaccard(gap.seed, question.terms)
            threshold = TERM_SIMILARITY
        if score >= threshold and score > best_score:
            best, best_score = gap, score
    return best


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0  # questions with no searchable words share one group
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _embeddings(texts: list[str]) -> Any:
    """One normalised row per question when an embedder is configured, else None."""
    if not texts:
        return None
    embedder = get_embedder()
    if embedder is None:
        return None
    try:
        return embedder.embed(texts)
    except Exception as exc:  # grouping falls back to the search terms
        log.warning("gap_embedding_failed", error=type(exc).__name__)
        return None
