"""Suggested questions at the start of a conversation: the help centre's most-used articles.

"Most used" is what answers actually cited: every assistant message keeps the articles it used
in ``metadata["citations"]``, so the recent answers say which articles customers needed. An
article needs a few citations before it counts (one curious customer is not a trend). A new
installation has no answers yet; it falls back to a curated list of questions about the starter
knowledge base's articles, each shown only while its article exists, and then to the other
articles' titles. Each suggestion is phrased as the customer would ask it (the curated question
of its article, else the article's title), and clicking it sends exactly that text.

The list is the same for everyone and changes slowly: it is cached for a few minutes, so a page
load costs at most two queries every few minutes.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, TypedDict

from django.core.cache import cache
from django.utils import timezone

from chat.models import Message
from tools.models import Article

COUNT = 4  # shown at once: three to five reads as a choice, more as a menu
WINDOW = timedelta(days=30)
SCAN_LIMIT = 3000  # the newest cited answers read: a month of a busy service
MIN_CITATIONS = 3
CACHE_KEY = "chat:suggestions:v1"
CACHE_SECONDS = 300

# The starter knowledge base's most asked-about articles, in the order offered, as questions.
CURATED: dict[str, str] = {
    "kb_002": "How do I reset my password?",
    "kb_009": "Can I get a refund for my subscription?",
    "kb_035": "What does my sync error code mean?",
    "kb_018": "How do I share a folder with someone?",
    "kb_006": "What plans do you offer and how much do they cost?",
    "kb_004": "I lost my two-step verification device. What now?",
    "kb_022": "How do I recover a deleted file?",
}


class Suggestion(TypedDict):
    question: str
    articleId: str


def suggested_questions(*, count: int = COUNT) -> list[Suggestion]:
    """Up to ``count`` questions for a new conversation, most-used articles first."""
    cached = cache.get(CACHE_KEY)
    if cached is None:
        cached = _compute(limit=max(count, COUNT))
        cache.set(CACHE_KEY, cached, CACHE_SECONDS)
    return list(cached[:count])


def cited_article_counts(*, since: Any, limit: int = SCAN_LIMIT) -> Counter[str]:
    """How many of the newest assistant answers since ``since`` cited each article."""
    counts: Counter[str] = Counter()
    recent = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT, created_at__gte=since, metadata__has_key="citations"
        )
        .order_by("-created_at")
        .values_list("metadata", flat=True)[:limit]
    )
    for metadata in recent:
        citations = metadata.get("citations") if isinstance(metadata, dict) else None
        ids = {c.get("id") for c in citations or () if isinstance(c, dict)}
        counts.update(i for i in ids if isinstance(i, str) and i)
    return counts


def _compute(*, limit: int) -> list[Suggestion]:
    counts = cited_article_counts(since=timezone.now() - WINDOW)
    popular = [a for a, n in counts.most_common() if n >= MIN_CITATIONS]
    order = popular + [a for a in CURATED if a not in popular]
    titles = dict(Article.objects.filter(id__in=order).values_list("id", "title"))
    chosen = [a for a in order if a in titles][:limit]
    if len(chosen) < limit:
        # A knowledge base of its own, not yet used: its first articles, by title.
        rest = Article.objects.exclude(id__in=chosen).order_by("id")[: limit - len(chosen)]
        titles.update((a.id, a.title) for a in rest)
        chosen += [a.id for a in rest]
    suggestions: list[Suggestion] = []
    seen: set[str] = set()
    for article_id in chosen:
        question = CURATED.get(article_id) or titles[article_id]
        if question.lower() not in seen:
            seen.add(question.lower())
            suggestions.append(Suggestion(question=question, articleId=article_id))
    return suggestions
