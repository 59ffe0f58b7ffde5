"""Knowledge search on SQLite (the embedded default): the ranking model of ``tools.kb.ranking``
computed with FTS5's ``bm25()`` over the ``tools_article_fts`` index.

Past ``CANDIDATE_BUDGET`` matches only the articles holding the question's rarest words are
ranked (see ``tools.kb.ranking.candidate_terms``).
"""

# The SQL below is assembled from constants and %s placeholders only; user text is always a
# bound parameter (and reaches FTS5 only as quoted letters and digits, see _fts5_phrase).
# ruff: noqa: S608

from __future__ import annotations

import math
from typing import Any

from django.db import connection

from tools.kb.query import Term
from tools.kb.ranking import (
    CANDIDATE_BUDGET,
    COLUMNS,
    TITLE_BONUS,
    Filters,
    bm25_idf,
    candidate_terms,
    hit_rows,
    max_score_of,
)

# Per-occurrence weights (title, tags, body): a title hit counts as ten body hits.
_SQLITE_WEIGHTS = "10.0, 5.0, 1.0"
# The title-and-tags bonus's weights.
_SQLITE_TITLE_WEIGHTS = "1.0, 1.0, 0.0"


def _fts5_phrase(term: Term) -> str:
    # Tokens hold only letters and digits, so this double-quoted FTS5 string is always
    # well-formed and can carry no operator, column filter or syntax error.
    return '"' + " ".join(term.tokens) + '"'


def search_sqlite(
    *, terms: list[Term], filters: Filters, limit: int
) -> tuple[list[dict[str, Any]], int, float]:
    """The best ``limit`` articles for ``terms`` (rows with a score), the match count, and the
    best score any article could reach."""
    phrases = [_fts5_phrase(t) for t in terms]
    counts = ", ".join(
        "(SELECT count(*) FROM tools_article_fts WHERE tools_article_fts MATCH %s)" for _ in terms
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT (SELECT count(*) FROM tools_article), {counts}", phrases)
        docs, *frequencies = cursor.fetchone()
    present = [i for i, n in enumerate(frequencies) if n]
    if not present:
        return [], 0, 0.0
    idfs = [bm25_idf(docs=docs, matching=n) for n in frequencies]
    max_score = max_score_of(terms, idfs)

    chosen = candidate_terms(frequencies=frequencies, present=present)
    candidates = " OR ".join(phrases[i] for i in chosen) if chosen else None
    raw, total = _rank_sqlite(
        terms=terms,
        phrases=phrases,
        docs=docs,
        frequencies=frequencies,
        idfs=idfs,
        present=present,
        candidates=candidates,
        filters=filters,
        limit=limit,
    )
    return hit_rows(raw), total, max_score


def _sqlite_filters(filters: Filters) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if filters.category:
        where.append("a.category = %s")
        params.append(filters.category)
    if filters.language:
        where.append("a.language = %s")
        params.append(filters.language)
    if filters.tags:
        marks = ", ".join(["%s"] * len(filters.tags))
        where.append(f"EXISTS (SELECT 1 FROM json_each(a.tags) WHERE value IN ({marks}))")
        params.extend(filters.tags)
    if filters.updated_after:
        where.append("a.updated >= %s")
        params.append(filters.updated_after.isoformat())
    return " AND ".join(where), params


def _rank_sqlite(
    *,
    terms: list[Term],
    phrases: list[str],
    docs: int,
    frequencies: list[int],
    idfs: list[float],
    present: list[int],
    candidates: str | None,
    filters: Filters,
    limit: int,
) -> tuple[list[tuple[Any, ...]], int]:
    """The best ``limit`` rows (columns, score) and the match count; all articles, or only
    those matching the FTS5 expression ``candidates``."""
    condition, filter_params = _sqlite_filters(filters)
    join = "JOIN tools_article a ON a.rowid = tools_article_fts.rowid" if condition else ""
    ctes, params = _candidate_ctes(
        candidates=candidates, join=join, condition=condition, filter_params=filter_params
    )
    source = "tools_article_fts"
    if ctes:
        # The FTS table first, the candidates looked up by row id: bm25() then runs only for
        # the rows that survive the join.
        source += " CROSS JOIN cand ON cand.rid = tools_article_fts.rowid"
    matches, match_params = _term_matches(
        terms=terms,
        phrases=phrases,
        docs=docs,
        frequencies=frequencies,
        idfs=idfs,
        present=present,
        source=source,
    )
    ctes.append(matches)
    params += match_params
    if candidates is None:
        total_sql, total_params = "(SELECT count(*) FROM scored)", []
    else:
        total_sql = (
            f"(SELECT count(*) FROM tools_article_fts {join} WHERE tools_article_fts MATCH %s"
            f"{' AND ' + condition if condition else ''})"
        )
        total_params = [" OR ".join(phrases[i] for i in present), *filter_params]
    # Rank on row ids alone and join the few winners to their rows last, so neither the
    # grouping nor the sort ever carries article bodies.
    sql = f"""
        WITH {", ".join(ctes)},
        best AS (SELECT rid, grp, max(s) AS s FROM matches GROUP BY rid, grp),
        scored AS MATERIALIZED (SELECT rid, sum(s) AS score FROM best GROUP BY rid),
        top AS (SELECT rid, score FROM scored ORDER BY score DESC, rid LIMIT %s)
        SELECT {", ".join("a." + c for c in COLUMNS)}, top.score, {total_sql}
        FROM top JOIN tools_article a ON a.rowid = top.rid
        ORDER BY top.score DESC, a.id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit, *total_params])
        raw = cursor.fetchall()
    return raw, (raw[0][len(COLUMNS) + 1] if raw else 0)


def _candidate_ctes(
    *, candidates: str | None, join: str, condition: str, filter_params: list[Any]
) -> tuple[list[str], list[Any]]:
    """The ``cand`` CTE of the row ids to rank (and its parameters), or none to rank all."""
    if candidates is not None:
        cte = (
            "cand AS MATERIALIZED (SELECT tools_article_fts.rowid AS rid FROM tools_article_fts"
            f" {join} WHERE tools_article_fts MATCH %s{' AND ' + condition if condition else ''}"
            # Even the rarest word can be common: then its best-ranked articles stand for it.
            f" ORDER BY bm25(tools_article_fts, {_SQLITE_WEIGHTS}) LIMIT {CANDIDATE_BUDGET})"
        )
        return [cte], [candidates, *filter_params]
    if condition:
        cte = f"cand AS MATERIALIZED (SELECT a.rowid AS rid FROM tools_article a WHERE {condition})"
        return [cte], list(filter_params)
    return [], []


def _term_matches(
    *,
    terms: list[Term],
    phrases: list[str],
    docs: int,
    frequencies: list[int],
    idfs: list[float],
    present: list[int],
    source: str,
) -> tuple[str, list[Any]]:
    """The ``matches`` CTE: per article of ``source`` and present term, its group and score.

    One bm25() per term (a single-phrase query), divided by FTS5's own IDF for that phrase to
    get the saturated term frequency back, times our IDF; the best term of each synonym group
    counts. The second bm25() sees only title and tags: a word there adds a bonus, because
    with saturation a body that repeats a word would otherwise tie with a title naming it.
    """
    selects = []
    params: list[Any] = []
    for i in present:
        fts5_idf = max(1e-6, math.log((docs - frequencies[i] + 0.5) / (frequencies[i] + 0.5)))
        score = f"-bm25(tools_article_fts, {_SQLITE_WEIGHTS})"
        if not terms[i].bonus:
            score += f" - {TITLE_BONUS} * bm25(tools_article_fts, {_SQLITE_TITLE_WEIGHTS})"
        selects.append(
            f"SELECT tools_article_fts.rowid AS rid, %s AS grp, %s * ({score}) AS s"
            f" FROM {source} WHERE tools_article_fts MATCH %s"
        )
        params += [terms[i].group, terms[i].weight * idfs[i] / fts5_idf, phrases[i]]
    return f"matches AS MATERIALIZED ({' UNION ALL '.join(selects)})", params
