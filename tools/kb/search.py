"""Knowledge search's public entry, ``search_articles``: the question parsed (``tools.kb.query``),
ranked in the database (``tools.kb.sqlite`` or ``tools.kb.postgres``), optionally fused with the
embedding ranking (``tools.embeddings``), and each hit given its best passage.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from django.db import connection

from tools import embeddings
from tools.kb.passages import PASSAGE_CHARS, best_passage, shorten
from tools.kb.postgres import search_postgres
from tools.kb.query import Term, corrected_text, corrections, query_terms, with_corrections
from tools.kb.ranking import Filters
from tools.kb.sqlite import search_sqlite
from tools.models import Article

log = structlog.get_logger("tools.kb")

MAX_RESULTS_LIMIT = 20
# Below this relevance a hit is noise: off-topic questions top out around 0.09 on the starter
# knowledge base, while the weakest right answer of its ranking tests scores about 0.13.
RELEVANCE_FLOOR = 0.12


@dataclass(frozen=True)
class ArticleHit:
    """One article found: its fields, its relevance (0..1) and the passage that answers."""

    id: str
    title: str
    url: str
    category: str
    tags: list[str]
    language: str
    updated: dt.date
    relevance: float
    content: str
    passage: str


@dataclass(frozen=True)
class SearchResult:
    """The best hits, best first, and how many articles matched in all."""

    hits: list[ArticleHit]
    total: int


def search_articles(
    *,
    query: str,
    max_results: int = 5,
    category: str | None = None,
    language: str | None = None,
    tags: list[str] | None = None,
    updated_after: dt.date | None = None,
    semantic: bool = True,
) -> SearchResult:
    """Rank articles for a natural-language query; the best ``max_results`` with passages.

    With ``EMBEDDINGS_MODEL`` set (and ``semantic``), the full-text ranking is fused with the
    embedding ranking (``tools.embeddings``); if the embedder fails, full-text answers alone.
    """
    if not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise ValueError(f"max_results must be within 1..{MAX_RESULTS_LIMIT}")
    embedder = embeddings.get_embedder() if semantic else None
    asked = query_terms(query)
    fixes = corrections(asked)
    terms = with_corrections(asked, fixes)
    if not terms and embedder is None:
        return SearchResult(hits=[], total=0)
    filters = Filters(
        category=category.strip().lower() if category else None,
        language=language.strip().lower() if language else None,
        tags=sorted({t.strip().lower() for t in tags or [] if t.strip()}),
        updated_after=updated_after,
    )
    if embedder is None:
        ranking = _full_text(terms=terms, filters=filters, limit=max_results)
        hits = [_hit(row, ranking.relevance(row), terms) for row in ranking.rows]
        return SearchResult(hits=hits, total=ranking.total)
    text = corrected_text(query, fixes)
    # The question's embedding is computed on another thread while the database ranks.
    pending = embeddings.embed_soon(text)
    depth = max(max_results, embeddings.FUSION_DEPTH)
    ranking = _full_text(terms=terms, filters=filters, limit=depth)
    return _fused(
        ranking, text=text, pending=pending, terms=terms, filters=filters, limit=max_results
    )


@dataclass(frozen=True)
class _FullText:
    """The full-text ranking: the best rows (with a score), the match count, and the best score
    any article could reach."""

    rows: list[dict[str, Any]]
    total: int
    max_score: float

    def relevance(self, row: dict[str, Any]) -> float:
        if self.max_score <= 0:
            return 0.0
        return round(min(1.0, row["score"] / self.max_score), 4)


def _full_text(*, terms: list[Term], filters: Filters, limit: int) -> _FullText:
    if not terms:
        return _FullText(rows=[], total=0, max_score=0.0)
    if connection.vendor == "postgresql":
        return _FullText(*search_postgres(terms=terms, filters=filters, limit=limit))
    return _FullText(*search_sqlite(terms=terms, filters=filters, limit=limit))


def _fused(
    ranking: _FullText,
    *,
    text: str,
    pending: Future[np.ndarray] | None,
    terms: list[Term],
    filters: Filters,
    limit: int,
) -> SearchResult:
    """The best ``limit`` of ``ranking`` and the embedding ranking, by reciprocal rank fusion.

    An article found only by meaning is fetched here, scored by its similarity and given the
    chunk that matched as its passage.
    """
    semantic_hits = _semantic_hits(text=text, pending=pending, filters=filters)
    by_id = {row["id"]: row for row in ranking.rows}
    meaning = {hit.article_id: hit for hit in semantic_hits}
    order = embeddings.fuse(
        [[row["id"] for row in ranking.rows], [h.article_id for h in semantic_hits]]
    )
    order = order[:limit]
    fetched = _article_rows([article_id for article_id in order if article_id not in by_id])
    hits = []
    for article_id in order:
        if article_id in by_id:
            row = by_id[article_id]
            hits.append(_hit(row, ranking.relevance(row), terms))
        elif article_id in fetched:
            found = meaning[article_id]
            chunk = found.chunk.split("\n", 1)[-1]  # without the title line
            hits.append(
                _hit(
                    fetched[article_id],
                    embeddings.similarity_relevance(found.similarity),
                    terms,
                    passage=shorten(" ".join(chunk.split()), PASSAGE_CHARS),
                )
            )
    return SearchResult(hits=hits, total=max(ranking.total, len(set(by_id) | set(meaning))))


def _semantic_hits(
    *, text: str, pending: Future[np.ndarray] | None, filters: Filters
) -> list[embeddings.SemanticHit]:
    """The embedding ranking of ``text``, or nothing when the embedder fails."""
    try:
        return embeddings.semantic_search(
            text,
            limit=embeddings.FUSION_DEPTH,
            allowed=_allowed_ids(filters),
            vector=pending,
        )
    except Exception:
        log.warning("search.embeddings_failed", exc_info=True)
        return []


def _article_rows(article_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {
        row["id"]: dict(row)
        for row in Article.objects.filter(pk__in=article_ids).values(
            "id", "title", "url", "category", "tags", "language", "updated", "content"
        )
    }


def _hit(
    row: dict[str, Any], relevance: float, terms: list[Term], passage: str | None = None
) -> ArticleHit:
    return ArticleHit(
        id=row["id"],
        title=row["title"],
        url=row["url"],
        category=row["category"],
        tags=row["tags"],
        language=row["language"],
        updated=row["updated"],
        relevance=relevance,
        content=row["content"],
        passage=passage
        if passage is not None
        else best_passage(content=row["content"], terms=terms),
    )


def _allowed_ids(filters: Filters) -> set[str] | None:
    """The articles the filters admit (None: all), for the embedding ranking."""
    if not filters.active:
        return None
    articles = Article.objects.all()
    if filters.category:
        articles = articles.filter(category=filters.category)
    if filters.language:
        articles = articles.filter(language=filters.language)
    if filters.updated_after:
        articles = articles.filter(updated__gte=filters.updated_after)
    wanted = set(filters.tags)
    return {
        article_id
        for article_id, tags in articles.values_list("id", "tags")
        if not wanted or wanted & {str(t).lower() for t in tags or []}
    }
