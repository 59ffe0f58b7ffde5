"""Knowledge search on PostgreSQL: the ranking model of ``tools.kb.ranking`` computed with
``ts_rank_cd()`` over the articles' ``search_vector`` and ``title_vector`` (built by
``tools/migrations/0002_search_index.py`` and ``0003``).

Up to ``CANDIDATE_BUDGET`` matching articles every match is ranked. Past it, the most promising
of the articles naming a weighty question word in their title or tags or holding the rarest
words are ranked (see ``_rank_pool``), with per-word match sets from
``tools.kb.postgres_statistics``.
"""

# The SQL below is assembled from constants and %s placeholders only; user text is always a
# bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from tools.kb.postgres_statistics import STAMP_SQL, term_statistics
from tools.kb.query import Term
from tools.kb.ranking import (
    CANDIDATE_BUDGET,
    COLUMNS,
    K1,
    TITLE_BONUS,
    Filters,
    bm25_idf,
    candidate_terms,
    hit_rows,
    max_score_of,
)

# Past CANDIDATE_BUDGET (see _rank_pool): how many of the pool are ranked, and how weighty a
# word must be, relative to the question's weightiest, to pool titles naming it.
POOL_RANKED = 200
TITLE_POOL_SHARE = 0.3
MAX_OUTSIDE_SETS = 64  # see _PgPlan.outside
# Per-occurrence weights as ts_rank_cd weights, ordered {D, C, B, A} = {-, tags, body, title}:
# a title hit counts as ten body hits (as on SQLite). The second: the title-and-tags bonus.
_PG_WEIGHTS = "{0.0, 0.5, 0.1, 1.0}"
_PG_TITLE_WEIGHTS = "{0.0, 0.1, 0.0, 0.1}"


def _pg_tsquery(term: Term) -> tuple[str, list[str]]:
    spaced = " ".join(term.tokens)
    if term.text == spaced:
        return "phraseto_tsquery('english', %s)", [spaced]
    # PostgreSQL reads "nb-1042" as 'nb' and '-1042' but "sign-in" as 'sign-in' and 'sign':
    # query the hyphen group as written (its own parse) or as separate words.
    return (
        "(phraseto_tsquery('english', %s) || phraseto_tsquery('english', %s))",
        [term.text, spaced],
    )


# The score of one term, f(x) = x / (x + K1) of a weighted occurrence count x, is below 1, and
# at least f(1) when the term occurs once.
_F1 = 1 / (1 + K1)
_ONE_LEXEME_RE = re.compile(r"'(?:[^']|'')+'")  # a tsquery that is a single lexeme, as text


@dataclass(frozen=True)
class _PgTerm:
    """One term of the question that some article holds, ready for SQL."""

    tsquery: str  # as text, bound as %s::tsquery (parsed once, not re-stemmed per use)
    group: int
    coefficient: float  # weight * IDF * (K1 + 1): what a saturated term frequency is worth
    bonus: bool  # a word pair: no title-and-tags part, not part of the maximum
    one_lexeme: bool  # absent from a vector exactly when ``@@`` says so
    matches: int  # bitmap of the articles holding it (see tools.kb.postgres_statistics)


@dataclass(frozen=True)
class _PgPlan:
    """The SQL of one PostgreSQL search, built from the question's terms and filters."""

    terms: list[_PgTerm]
    filters: Filters
    limit: int

    def any_of(self, terms: list[_PgTerm]) -> tuple[str, list[Any]]:
        return "(" + " || ".join(["%s::tsquery"] * len(terms)) + ")", [t.tsquery for t in terms]

    def filter_sql(self) -> tuple[str, list[Any]]:
        """`` AND`` the filters on article ``a``, or nothing."""
        where: list[str] = []
        params: list[Any] = []
        if self.filters.category:
            where.append(" AND a.category = %s")
            params.append(self.filters.category)
        if self.filters.language:
            where.append(" AND a.language = %s")
            params.append(self.filters.language)
        if self.filters.tags:
            where.append(" AND a.tags ?| %s")
            params.append(self.filters.tags)
        if self.filters.updated_after:
            where.append(" AND a.updated >= %s")
            params.append(self.filters.updated_after)
        return "".join(where), params

    def where(self, column: str, terms: list[_PgTerm]) -> tuple[str, list[Any]]:
        """Article ``a``'s ``column`` matches one of ``terms``, and the filters hold."""
        query, params = self.any_of(terms)
        filters, filter_params = self.filter_sql()
        return f"a.{column} @@ {query}{filters}", [*params, *filter_params]

    def groups(self, *, bonus: bool) -> list[list[int]]:
        members: dict[int, list[int]] = {}
        for n, term in enumerate(self.terms):
            if term.bonus == bonus:
                members.setdefault(term.group, []).append(n)
        return list(members.values())

    def score(self, *, bonus: bool) -> tuple[str, str, list[Any]]:
        """Columns over one candidate's ``sv`` and ``tv``, and the score summed from them: of
        the question's words (``bonus`` False) or of its word pairs.

        ts_rank_cd of one term, with weights scaled to 10 per title occurrence, 5 per tag and
        1 per body occurrence, is the term frequency; it is saturated BM25-style, multiplied by
        the IDF, plus the title-and-tags bonus counted in the small title vector, and the best
        term of each synonym group counts. Unlike FTS5's bm25() it skips length normalisation:
        the average vector length would cost a scan of every article per query, and
        help-centre articles are of similar length (the ranking tests pass on both databases
        either way). A one-word term absent from a vector is not ranked in it: that is 0.
        """
        columns: list[str] = []
        params: list[Any] = []
        sums: list[str] = []
        for members in self.groups(bonus=bonus):
            best = []
            for n in members:
                term = self.terms[n]
                parts = [("sv", _PG_WEIGHTS, 1.0)]
                if not term.bonus:
                    parts.append(("tv", _PG_TITLE_WEIGHTS, TITLE_BONUS))
                saturated = []
                for vector, weights, factor in parts:
                    name = f"{vector}{n}"
                    rank = f"10 * ts_rank_cd('{weights}', {vector}, %s::tsquery, 0)"
                    params.append(term.tsquery)
                    if term.one_lexeme:
                        rank = f"CASE WHEN {vector} @@ %s::tsquery THEN {rank} ELSE 0 END"
                        params.append(term.tsquery)  # the same value: order does not matter
                    columns.append(f"{rank} AS {name}")
                    coefficient = term.coefficient * factor
                    saturated.append(f"{coefficient!r} * {name} / ({name} + {K1})")
                best.append(" + ".join(saturated))
            sums.append(f"greatest({', '.join(best)})")
        return ", ".join(columns), " + ".join(sums) or "0", params

    def lower_bound(self) -> tuple[str, list[Any]]:
        """A lower bound of article ``a``'s score from match checks alone, which orders the
        pool of candidates.

        A one-lexeme term that the article holds occurs at least once, so it scores at least
        c f(1) (c: its coefficient), and at least 2.5 c f(1) when its title or tags hold it
        too. Phrases, a rare kind of word here, count for nothing.
        """
        params: list[Any] = []
        lower: list[str] = []
        for members in self.groups(bonus=False):
            lows = []
            for n in members:
                term = self.terms[n]
                if not term.one_lexeme:
                    continue
                # 1e-4 below: ts_rank_cd computes in single precision.
                low = term.coefficient * _F1 * (1 - 1e-4)
                # In the title or tags means in the article too: the greatest is the bound.
                lows.append(
                    f"(a.title_vector @@ %s::tsquery)::int * {low * (1 + TITLE_BONUS)!r}::float8"
                )
                lows.append(f"(a.search_vector @@ %s::tsquery)::int * {low!r}::float8")
                params += [term.tsquery, term.tsquery]
            if lows:
                lower.append(f"greatest({', '.join(lows)})")
        return " + ".join(lower) or "0", params

    def outside(
        self, *, titled: list[_PgTerm], rare: list[_PgTerm], threshold: float
    ) -> list[list[list[_PgTerm]]] | None:
        """The sets of word groups an article outside the pool (none of the ``titled`` words in
        its title or tags, none of the ``rare`` words at all) must hold to beat ``threshold``;
        None when there are too many such sets to spell out.

        Such an article scores below c per word group it holds (f < 1), or 2.5 c for a word too
        common to pool titles by: to beat ``threshold`` it must hold groups whose bounds add up
        to more. Word pairs are left out: they only add to words, and an article holding them
        holds the words too.
        """
        groups: list[tuple[float, list[_PgTerm]]] = []
        for members in self.groups(bonus=False):
            terms = [self.terms[n] for n in members if self.terms[n] not in rare]
            if terms:
                bounds = [t.coefficient * (1 if t in titled else 1 + TITLE_BONUS) for t in terms]
                groups.append((max(bounds), terms))
        groups.sort(key=lambda group: -group[0])
        rest = [sum(g[0] for g in groups[n:]) for n in range(len(groups) + 1)]
        sets: list[list[list[_PgTerm]]] = []

        def walk(start: int, chosen: list[list[_PgTerm]], bound: float) -> None:
            if bound > threshold:
                sets.append(list(chosen))
            elif bound + rest[start] > threshold:
                for n in range(start, len(groups)):
                    chosen.append(groups[n][1])
                    walk(n + 1, chosen, bound + groups[n][0])
                    chosen.pop()
                    if len(sets) > MAX_OUTSIDE_SETS:
                        return

        walk(0, [], 0.0)
        return None if len(sets) > MAX_OUTSIDE_SETS else sets

    def holding(self, sets: list[list[list[_PgTerm]]]) -> tuple[str, list[Any], int]:
        """Article ``a`` holds every group of one of the ``sets`` (SQL), and how many
        articles do, filters aside (from the cached match bitmaps)."""
        alternatives: list[str] = []
        params: list[Any] = []
        matches = 0
        for groups in sets:
            alternatives.append(
                "("
                + " && ".join("(" + " || ".join(["%s::tsquery"] * len(g)) + ")" for g in groups)
                + ")"
            )
            params += [t.tsquery for g in groups for t in g]
            every = -1
            for g in groups:
                every &= functools.reduce(operator.or_, (t.matches for t in g), 0)
            matches |= every
        filters, filter_params = self.filter_sql()
        sql = f"a.search_vector @@ ({' || '.join(alternatives)}){filters}"
        return sql, [*params, *filter_params], matches.bit_count()

    def ranked(
        self, *, candidates: str, params: list[Any], total: tuple[str, list[Any]] | None
    ) -> tuple[str, list[Any]]:
        """The statement ranking the ``cand`` ids (defined by ``candidates``, CTEs using
        ``params``).

        Each candidate's words are ranked first. Word pairs only add a bonus worth at most the
        pairs' coefficients, so they are ranked only for the candidates that this bonus could
        lift to the top; the rest cannot be among the best ``limit``. Rows are joined last, so
        no sort or join ever carries article bodies. The statement returns the best ``limit``
        rows (columns, score), then the match count (all candidates when ``total`` is None),
        the number of candidates and the limit-th best score: at least one row, hits or not.
        """
        k = self.limit
        columns, score, score_params = self.score(bonus=False)
        pair_columns, pair_score, pair_params = self.score(bonus=True)
        pairs = sum(t.coefficient for t in self.terms if t.bonus)
        if pair_columns:
            paired = f"""
            paired AS MATERIALIZED (
                SELECT id, words + {pair_score} AS score FROM (
                    SELECT id, words, {pair_columns} FROM (
                        SELECT w.id, w.score AS words, a.search_vector AS sv
                        FROM words w JOIN tools_article a ON a.id = w.id
                        WHERE w.score + {pairs!r} >= coalesce(
                            (SELECT score FROM words ORDER BY score DESC LIMIT 1 OFFSET {k - 1}),
                            0)
                    ) a
                ) p
            ),"""
            final = "paired"
        else:
            paired, pair_params, final = "", [], "words"
        total_sql, total_params = total or ("(SELECT count(*) FROM words)", [])
        sql = f"""
            WITH {candidates},
            words AS MATERIALIZED (
                SELECT id, {score} AS score FROM (
                    SELECT a.id, {columns} FROM (
                        SELECT a.id, a.search_vector AS sv, a.title_vector AS tv
                        FROM cand JOIN tools_article a ON a.id = cand.id
                    ) a
                ) r
            ),{paired}
            top AS (SELECT id, score FROM {final} ORDER BY score DESC, id LIMIT {k})
            SELECT {", ".join("a." + c for c in COLUMNS)}, top.score, m.*
            FROM (
                SELECT {total_sql} AS total, (SELECT count(*) FROM words) AS ranked,
                (SELECT score FROM {final} ORDER BY score DESC, id LIMIT 1 OFFSET {k - 1})
                    AS threshold
            ) m
            LEFT JOIN (top JOIN tools_article a ON a.id = top.id) ON true
            ORDER BY top.score DESC, a.id
        """
        return sql, [*params, *score_params, *pair_params, *total_params]


def search_postgres(
    *, terms: list[Term], filters: Filters, limit: int
) -> tuple[list[dict[str, Any]], int, float]:
    """The best ``limit`` articles for ``terms`` (rows with a score), the match count, and the
    best score any article could reach."""
    queries = [_pg_tsquery(t) for t in terms]
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner prices a sequential scan's ``@@`` as cheap, but it reads every vector;
        # the GIN indexes answer the same from a few pages. The JIT compiler costs more than
        # these queries run. Transaction-local; read with the statistics stamp in one trip.
        cursor.execute(
            "SELECT current_setting('enable_seqscan'), current_setting('jit'),"
            " set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true),"
            f" ({STAMP_SQL})"
        )
        seqscan, jit, _, _, stamp = cursor.fetchone()
        docs, statistics = term_statistics(cursor, queries=queries, stamp=stamp)
        result = _rank_postgres(
            cursor, terms=terms, docs=docs, statistics=statistics, filters=filters, limit=limit
        )
        if nested:
            # An outer transaction goes on: give it its planner settings back.
            cursor.execute(
                "SELECT set_config('enable_seqscan', %s, true), set_config('jit', %s, true)",
                [seqscan, jit],
            )
    return result


def _rank_postgres(
    cursor: Any,
    *,
    terms: list[Term],
    docs: int,
    statistics: list[tuple[str, int]],
    filters: Filters,
    limit: int,
) -> tuple[list[dict[str, Any]], int, float]:
    """``search_postgres`` once the statistics are read: every match ranked when they are few,
    else a pool of candidates (``_rank_pool``)."""
    frequencies = [matches.bit_count() for _, matches in statistics]
    present = [i for i, n in enumerate(frequencies) if n]
    if not present:
        return [], 0, 0.0
    idfs = [bm25_idf(docs=docs, matching=n) for n in frequencies]
    max_score = max_score_of(terms, idfs)
    by_index = _pg_terms(terms=terms, statistics=statistics, idfs=idfs, present=present)
    plan = _PgPlan(terms=list(by_index.values()), filters=filters, limit=limit)
    # An article holding a word pair holds both words: the words alone find every match,
    # without checking word positions.
    words = [t for t in plan.terms if not t.bonus]
    all_where, all_params = plan.where("search_vector", words)
    count = (f"(SELECT count(*) FROM tools_article a WHERE {all_where})", all_params)
    if not filters.active:
        union = functools.reduce(operator.or_, (statistics[i][1] for i in present), 0)
        count = ("%s::bigint", [union.bit_count()])
    if candidate_terms(frequencies=frequencies, present=present) is None:
        # Few matches (the whole starter knowledge base): rank every one of them.
        sql, params = plan.ranked(
            candidates=f"cand AS (SELECT a.id FROM tools_article a WHERE {all_where})",
            params=all_params,
            total=None,
        )
        raw, total, _, _ = _pg_fetch(cursor, sql, params)
        return hit_rows(raw), total, max_score
    word_indexes = [i for i in present if not terms[i].bonus]
    chosen = candidate_terms(frequencies=frequencies, present=word_indexes) or word_indexes
    rarest = [by_index[i] for i in chosen]
    raw, total = _rank_pool(
        cursor,
        plan=plan,
        rarest=rarest,
        rare=rarest if sum(frequencies[i] for i in chosen) <= CANDIDATE_BUDGET else [],
        matching=(all_where, all_params),
        count=count,
    )
    return hit_rows(raw), total, max_score


def _pg_terms(
    *, terms: list[Term], statistics: list[tuple[str, int]], idfs: list[float], present: list[int]
) -> dict[int, _PgTerm]:
    """The present terms, by their index in ``terms``, ready for SQL."""
    return {
        i: _PgTerm(
            tsquery=statistics[i][0],
            group=terms[i].group,
            coefficient=terms[i].weight * idfs[i] * (K1 + 1),
            bonus=terms[i].bonus,
            one_lexeme=bool(_ONE_LEXEME_RE.fullmatch(statistics[i][0])),
            matches=statistics[i][1],
        )
        for i in present
    }


def _rank_pool(
    cursor: Any,
    *,
    plan: _PgPlan,
    rarest: list[_PgTerm],
    rare: list[_PgTerm],
    matching: tuple[str, list[Any]],
    count: tuple[str, list[Any]],
) -> tuple[list[tuple[Any, ...]], int]:
    """Many matches: the best rows (columns, score) and the match count.

    The pool of candidates: the articles naming a weighty question word in their title or tags
    (from the small title index), and the articles holding the ``rare`` words (the ``rarest``
    when those are few). The pool is ordered by a lower bound of the score computed from
    match checks alone, and its first POOL_RANKED are ranked. An article outside the pool
    holds the question's words only in its body (or common ones in its title), and only
    common words: it is ranked in a second statement only if it holds enough of them to
    possibly beat the limit-th best of the pool (see _PgPlan.outside), which the title and
    rare-word evidence usually rules out.
    """
    words = [t for t in plan.terms if not t.bonus]
    # A common word in a title adds at most 2.5 times its small coefficient, less than the
    # weighty words in a body, yet it would bring thousands of articles into the pool.
    weighty = max(t.coefficient for t in words) * TITLE_POOL_SHARE
    titled = [t for t in words if t.coefficient >= weighty]
    ctes, params, best, count = _pool(
        plan, titled=titled, rare=rare, matching=matching, count=count
    )
    sql, sql_params = plan.ranked(
        candidates=", ".join([*ctes, f"cand AS ({best})"]), params=params, total=count
    )
    raw, total, ranked, threshold = _pg_fetch(cursor, sql, sql_params)
    if ranked >= total:
        return raw, total
    sets = None
    if threshold is not None:
        sets = plan.outside(titled=titled, rare=rare, threshold=threshold)
        if sets == []:
            return raw, total  # no article outside the pool can beat it
    if sets:
        return _with_outside(cursor, plan=plan, sets=sets, raw=raw, total=total), total
    # Too few in the pool to know what to beat (a filter, or words in no title), or too many
    # ways to beat it: the best-ranked articles of the rarest word join the pool.
    return _with_best_of_rarest(
        cursor, plan=plan, rarest=rarest, ctes=ctes, params=params, count=count
    )


def _pool(
    plan: _PgPlan,
    *,
    titled: list[_PgTerm],
    rare: list[_PgTerm],
    matching: tuple[str, list[Any]],
    count: tuple[str, list[Any]],
) -> tuple[list[str], list[Any], str, tuple[str, list[Any]]]:
    """The ``pool`` and ``best`` CTEs (and ``few`` under a filter), their parameters, the
    query of the candidates to rank, and the match count's SQL."""
    all_where, all_params = matching
    source, source_params = plan.any_of(titled)
    source = f"a.title_vector @@ {source}"
    if rare:
        rare_query, rare_params = plan.any_of(rare)
        source = f"({source} OR a.search_vector @@ {rare_query})"
        source_params += rare_params
    filter_where, filter_params = plan.filter_sql()
    lower, lower_params = plan.lower_bound()
    ctes = [
        f"""pool AS MATERIALIZED (
            SELECT a.id, {lower} AS lb FROM tools_article a WHERE {source}{filter_where}
        )""",
        f"best AS (SELECT id FROM pool ORDER BY lb DESC, id LIMIT "
        f"{max(POOL_RANKED, 10 * plan.limit)})",
    ]
    params = [*lower_params, *source_params, *filter_params]
    best = "SELECT id FROM best"
    if filter_where:
        # A filter may leave fewer matches than the words' frequencies suggest: up to
        # CANDIDATE_BUDGET, rank them all. Only the branch that applies runs (one-time filters).
        ctes.append(
            f"""few AS MATERIALIZED (
                SELECT a.id FROM tools_article a WHERE {all_where} LIMIT {CANDIDATE_BUDGET + 1}
            )"""
        )
        params += all_params
        all_few = f"(SELECT count(*) FROM few) <= {CANDIDATE_BUDGET}"
        best = f"SELECT id FROM few WHERE {all_few} UNION ALL {best} WHERE NOT {all_few}"
        count = (
            f"CASE WHEN {all_few} THEN (SELECT count(*) FROM few) ELSE {count[0]} END",
            count[1],
        )
    return ctes, params, best, count


def _with_outside(
    cursor: Any,
    *,
    plan: _PgPlan,
    sets: list[list[list[_PgTerm]]],
    raw: list[tuple[Any, ...]],
    total: int,
) -> list[tuple[Any, ...]]:
    """The pool's best ``raw`` rows merged with the articles outside the pool that hold enough
    of the words (one of ``sets``) to beat the limit-th best.

    The scores are exact in both rankings. Those articles are all ranked when they are few,
    else the POOL_RANKED best by the heaviest words.
    """
    where, where_params, holders = plan.holding(sets)
    outside = f"SELECT a.id FROM tools_article a WHERE {where}"
    if holders > CANDIDATE_BUDGET:
        heaviest, heaviest_params = plan.any_of(sets[0][0])
        outside += (
            f" ORDER BY ts_rank_cd('{_PG_WEIGHTS}', a.search_vector, {heaviest}) DESC, a.id"
            f" LIMIT {max(POOL_RANKED, 10 * plan.limit)}"
        )
        where_params += heaviest_params
    more, _, _, _ = _pg_fetch(
        cursor,
        *plan.ranked(
            candidates=f"cand AS ({outside})",
            params=where_params,
            total=("%s::bigint", [total]),
        ),
    )
    merged = {row[0]: row for row in [*raw, *more]}.values()
    return sorted(merged, key=lambda row: (-row[len(COLUMNS)], row[0]))[: plan.limit]


def _with_best_of_rarest(
    cursor: Any,
    *,
    plan: _PgPlan,
    rarest: list[_PgTerm],
    ctes: list[str],
    params: list[Any],
    count: tuple[str, list[Any]],
) -> tuple[list[tuple[Any, ...]], int]:
    """The pool's ``ctes`` ranked again with the best-ranked articles of the ``rarest`` words
    added: the best rows (columns, score) and the match count."""
    rarest_where, rarest_params = plan.where("search_vector", rarest)
    rarest_query, rarest_query_params = plan.any_of(rarest)
    best_of_rarest = f"""
        SELECT id FROM pool UNION (
            SELECT a.id FROM tools_article a WHERE {rarest_where}
            ORDER BY ts_rank_cd('{_PG_WEIGHTS}', a.search_vector, {rarest_query}) DESC, a.id
            LIMIT {CANDIDATE_BUDGET}
        )"""
    sql, sql_params = plan.ranked(
        candidates=", ".join([*ctes, f"cand AS ({best_of_rarest})"]),
        params=[*params, *rarest_params, *rarest_query_params],
        total=count,
    )
    raw, total, _, _ = _pg_fetch(cursor, sql, sql_params)
    return raw, total


def _pg_fetch(
    cursor: Any, sql: str, params: list[Any]
) -> tuple[list[tuple[Any, ...]], int, int, float | None]:
    """Run a ``_PgPlan.ranked`` statement: hits (columns, score), total, ranked, threshold."""
    cursor.execute(sql, params)
    raw = cursor.fetchall()
    n = len(COLUMNS)
    total, ranked, threshold = raw[0][n + 1 :]
    return [r[: n + 1] for r in raw if r[0] is not None], total, ranked, threshold
