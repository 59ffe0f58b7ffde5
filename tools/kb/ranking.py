"""The relevance model both databases rank by, and what their rankings share.

Both databases score the same model: per term, a BM25 term-frequency saturation over weighted
title/tags/body occurrences times a Lucene-style IDF, plus a bonus for title and tag hits, summed
over the question's words. FTS5's bm25() (``tools.kb.sqlite``) and PostgreSQL's ts_rank_cd()
(``tools.kb.postgres``) supply the per-term frequencies; the IDF comes from per-term match
counts. Up to ``CANDIDATE_BUDGET`` matching articles every match is ranked; past it each
database ranks the most promising candidates (see ``candidate_terms``).

Relevance (0..1) is the article's BM25-style score divided by the best score any article could
reach for the same query (every term saturated, ``max_score_of``): "how much of what was asked
this article covers, and how strongly". It is comparable across queries, which a
best-hit-is-1.0 scaling is not, so callers can apply one threshold ("nothing relevant") whatever
the query length.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools.kb.query import Term

CANDIDATE_BUDGET = 500  # see candidate_terms

# BM25 saturation constant, as in FTS5's built-in bm25() (k1 = 1.2, b = 0.75).
K1 = 1.2
# What the title-and-tags bonus adds relative to the main score.
TITLE_BONUS = 1.5

# The article columns a ranking returns, in this order, before its score.
COLUMNS = ("id", "title", "url", "category", "tags", "language", "updated", "content")


@dataclass(frozen=True)
class Filters:
    """The search's restrictions on the articles, normalised (lower case, sorted tags)."""

    category: str | None
    language: str | None
    tags: list[str]
    updated_after: dt.date | None = None  # articles updated on or after this day

    @property
    def active(self) -> bool:
        return bool(self.category or self.language or self.tags or self.updated_after)


def bm25_idf(*, docs: int, matching: int) -> float:
    """Lucene's BM25 IDF of a term that ``matching`` of ``docs`` articles hold."""
    # Always positive. FTS5's own bm25() floors the IDF of a word found in more than half the
    # articles to nearly zero, which on a 40-article knowledge base silences "sign" and
    # "email"; its per-term output is rescaled to this IDF instead.
    return math.log(1 + (docs - matching + 0.5) / (matching + 0.5))


def max_score_of(terms: list[Term], idfs: list[float]) -> float:
    """The best score an article could reach for ``terms``: every word group saturated."""
    best: dict[int, float] = {}
    for term, idf in zip(terms, idfs, strict=True):
        if term.bonus:
            continue
        best[term.group] = max(best.get(term.group, 0.0), term.weight * idf)
    return sum(best.values()) * (K1 + 1) * (1 + TITLE_BONUS)


def candidate_terms(*, frequencies: list[int], present: list[int]) -> list[int] | None:
    """The rarest terms whose articles are the only ones ranked, or None to rank all.

    Scoring every article that shares one common word ("file") with the question costs a
    ranking call per article and term: 30 ms on SQLite and far more on PostgreSQL at 10,000
    articles. Past CANDIDATE_BUDGET matches, SQLite ranks only the articles holding one of the
    rarest words (together about CANDIDATE_BUDGET of them; the best-ranked ones when even the
    rarest word is that common), each by all the words. An article with none of those words
    lacks the question's most specific words, and its score is bounded by the common ones.
    Below the budget, which covers the whole starter knowledge base, ranking is exhaustive.
    PostgreSQL makes the same choice, then pools more candidates (see ``tools.kb.postgres``).
    """
    if sum(frequencies[i] for i in present) <= CANDIDATE_BUDGET:
        return None
    rarest = sorted(present, key=lambda i: (frequencies[i], i))
    chosen = rarest[:1]
    for i in rarest[1:]:
        if sum(frequencies[c] for c in chosen) + frequencies[i] > CANDIDATE_BUDGET:
            break
        chosen.append(i)
    return chosen


def hit_rows(raw: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Ranked raw rows (``COLUMNS``, then the score) as dicts with typed values and a score."""
    n = len(COLUMNS)
    return [_row(r[:n], score=float(r[n])) for r in raw]


def _row(values: Sequence[Any], *, score: float) -> dict[str, Any]:
    row = dict(zip(COLUMNS, values, strict=True))
    # Raw SQL bypasses the model's field conversion: JSON arrives as text, SQLite dates as ISO.
    tags = json.loads(row["tags"]) if isinstance(row["tags"], str) else row["tags"]
    row["tags"] = list(tags or [])
    if isinstance(row["updated"], str):
        row["updated"] = dt.date.fromisoformat(row["updated"])
    row["score"] = score
    return row
