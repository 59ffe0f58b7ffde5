"""PostgreSQL word statistics for knowledge search: the article count and, per term query, its
tsquery and the articles matching it, cached per database until an article changes (the
articles' search stamp, migration 0003, tells when). ``tools.kb.postgres`` ranks with them.
"""

# The SQL below is assembled from constants and %s placeholders only; user text is always a
# bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection


@dataclass
class _Statistics:
    """The articles, and per term query its tsquery and the articles matching it, as of one
    index stamp. Matches are bitmaps (ints) over the articles' positions."""

    stamp: str
    positions: dict[str, int]  # article id -> bit
    terms: dict[tuple[str, ...], tuple[str, int]]  # _pg_key(query) -> (tsquery text, matches)


class _Inconsistent(Exception):
    """Term matches name an article the cached article list lacks (a write bypassed the
    stamp trigger): everything is fetched again."""


# Per database alias. Counting a common word reads thousands of rows (a phrase, thousands of
# vectors), and so does counting the articles matching a whole question; yet the matches
# change only when articles do, and questions share their words: cached per word, a
# question's match count is the union of its words' bitmaps, counted in Python.
_PG_STATISTICS: dict[str, _Statistics] = {}
_PG_STATISTICS_MAX_BYTES = 32 << 20  # then start over: a knowledge base's vocabulary fits
# The articles' search stamp, read by primary key: under enable_seqscan=off a sequential scan
# of this one-row table would be priced at 1e10, which also wakes the JIT compiler.
STAMP_SQL = "SELECT stamp::text FROM tools_article_search_stamp WHERE id"


def _pg_key(query: tuple[str, list[str]]) -> tuple[str, ...]:
    return (query[0], *query[1])


def term_statistics(
    cursor: Any, *, queries: list[tuple[str, list[str]]], stamp: str | None
) -> tuple[int, list[tuple[str, int]]]:
    """The article count, and each query's tsquery (as text) and matches (a bitmap).

    ``stamp`` was read earlier in this transaction. Matches are only ever stored under the
    stamp read by the statement that found them (one snapshot), and any write to the articles
    gives them a new stamp (migration 0003), so cached matches never outlive the articles.
    """
    keys = [_pg_key(q) for q in queries]
    known = _PG_STATISTICS.get(connection.alias)
    if known is not None and stamp is not None and known.stamp == stamp:
        if all(k in known.terms for k in keys):
            return len(known.positions), [known.terms[k] for k in keys]
        wanted = {k: q for k, q in zip(keys, queries, strict=True) if k not in known.terms}
        try:
            found_stamp, _, found = _pg_matches(cursor, wanted=wanted, positions=known.positions)
        except _Inconsistent:
            found_stamp = ""
        if found_stamp == known.stamp:
            terms = {k: known.terms[k] for k in keys if k in known.terms} | found
            width = (len(known.positions) + 7) // 8 + 100
            if (len(known.terms) + len(found)) * width > _PG_STATISTICS_MAX_BYTES:
                known.terms = {}
            known.terms.update(found)
            return len(known.positions), [terms[k] for k in keys]
        # An article changed after the stamp was read: fetch everything again.
    found_stamp, positions, found = _pg_matches(
        cursor, wanted=dict(zip(keys, queries, strict=True)), positions=None
    )
    if found_stamp is not None:  # no stamp row (deleted by hand): nothing can be cached
        _PG_STATISTICS[connection.alias] = _Statistics(
            stamp=found_stamp, positions=positions, terms=found
        )
    return len(positions), [found[k] for k in keys]


def _pg_matches(
    cursor: Any,
    *,
    wanted: dict[tuple[str, ...], tuple[str, list[str]]],
    positions: dict[str, int] | None,
) -> tuple[str | None, dict[str, int], dict[tuple[str, ...], tuple[str, int]]]:
    """The stamp, the articles' positions (``positions`` if given), and the ``wanted`` queries'
    tsqueries and matches, all from one statement, so from one snapshot."""
    columns = "".join(
        f", (SELECT array_agg(id) FROM tools_article WHERE search_vector @@ {q}), {q}::text"
        for q, _ in wanted.values()
    )
    articles = "(SELECT array_agg(id) FROM tools_article)" if positions is None else "NULL"
    cursor.execute(
        f"SELECT ({STAMP_SQL}), {articles}{columns}",
        [p for _, params in wanted.values() for p in params * 2],
    )
    stamp, ids, *values = cursor.fetchone()
    if positions is None:
        positions = {article: n for n, article in enumerate(ids or ())}
    found = {
        k: (values[2 * n + 1], _bitmap(values[2 * n] or (), positions))
        for n, k in enumerate(wanted)
    }
    return stamp, positions, found


def _bitmap(ids: Sequence[str], positions: dict[str, int]) -> int:
    bits = bytearray((len(positions) + 7) // 8)
    for article in ids:
        bit = positions.get(article)
        if bit is None:
            raise _Inconsistent(article)
        bits[bit >> 3] |= 1 << (bit & 7)
    return int.from_bytes(bits, "little")
