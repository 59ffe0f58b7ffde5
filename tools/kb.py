"""Knowledge-base services: ranked full-text search over articles, and importing Markdown files.

Search runs in the database: SQLite FTS5 (``bm25``) on the embedded default, PostgreSQL full-text
search in production (the index itself is built by ``tools/migrations/0002_search_index.py``).
User text never reaches a query language verbatim: it is cut into words, stop words are dropped,
each remaining word (or hyphenated group such as ``NB-1042``) becomes one quoted phrase, and the
phrases are OR-ed, so a partial match ranks lower instead of matching nothing. A few support
synonyms ("stolen" -> "lost") and neighbouring word pairs ("public link") are added as evidence.

Both databases score the same model: per term, a BM25 term-frequency saturation over weighted
title/tags/body occurrences times a Lucene-style IDF, plus a bonus for title and tag hits, summed
over the question's words. FTS5's bm25() and PostgreSQL's ts_rank_cd() supply the per-term
frequencies; the IDF comes from per-term match counts. Up to ``CANDIDATE_BUDGET`` matching
articles every match is ranked. Past it SQLite ranks the articles holding the rarest words (see
``_candidate_terms``); PostgreSQL ranks the most promising of the articles naming a weighty
question word in their title or tags or holding the rarest words (see ``_rank_postgres``), and
caches per-word match sets until an article changes (``_pg_statistics``).

Relevance (0..1) is the article's BM25-style score divided by the best score any article could
reach for the same query (every term saturated): "how much of what was asked this article
covers, and how strongly". It is comparable across queries, which a best-hit-is-1.0 scaling is
not, so callers can apply one threshold ("nothing relevant") whatever the query length.
"""

# The SQL below is assembled from constants and %s placeholders only; user text is always a
# bound parameter (and reaches FTS5 only as quoted letters and digits, see _fts5_phrase).
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tools import spelling
from tools.models import ARTICLE_ID_MAX, Article

log = structlog.get_logger("tools.kb")

MAX_RESULTS_LIMIT = 20
# Below this relevance a hit is noise: off-topic questions top out around 0.09 on the starter
# knowledge base, while the weakest right answer of its ranking tests scores about 0.13.
RELEVANCE_FLOOR = 0.12
CANDIDATE_BUDGET = 500  # see _candidate_terms
# PostgreSQL past CANDIDATE_BUDGET (see _rank_postgres): how many of the pool are ranked, and
# how weighty a word must be, relative to the question's weightiest, to pool titles naming it.
POOL_RANKED = 200
TITLE_POOL_SHARE = 0.3
MAX_OUTSIDE_SETS = 64  # see _PgPlan.outside
MAX_QUERY_TERMS = 24  # a 500-character question rarely has more content words; bounds the cost

# BM25 saturation constant, as in FTS5's built-in bm25() (k1 = 1.2, b = 0.75).
_K1 = 1.2
# Per-occurrence weights (title, tags, body): a title hit counts as ten body hits. On
# PostgreSQL the same as ts_rank_cd weights, ordered {D, C, B, A} = {-, tags, body, title}.
_SQLITE_WEIGHTS = "10.0, 5.0, 1.0"
_PG_WEIGHTS = "{0.0, 0.5, 0.1, 1.0}"
# The title-and-tags bonus: its weights, and what it adds relative to the main score.
_SQLITE_TITLE_WEIGHTS = "1.0, 1.0, 0.0"
_PG_TITLE_WEIGHTS = "{0.0, 0.1, 0.0, 0.1}"
_TITLE_BONUS = 1.5
# Support vocabulary that the articles word differently ("stolen" phone, "lost" phone). A
# synonym joins its word's group, which scores its best member, so it never counts twice; keep
# the list short and unsurprising. Word pairs weigh less than words: they only break ties
# between articles that mention the same words apart.
SYNONYM_WEIGHT = 1.0
PAIR_WEIGHT = 0.3
# An error code or identifier ("NB-1042", "HTTP-429", "AES-256") names one thing; in a small
# knowledge base its IDF barely beats a word like "error" that every troubleshooting page uses.
CODE_WEIGHT = 1.5
MAX_PAIRS = 8
SYNONYMS: dict[str, tuple[str, ...]] = {
    "stolen": ("lost",),
    "missing": ("lost",),
    "money": ("refund",),
    "reimburse": ("refund",),
    "close": ("delete",),
    "erase": ("delete",),
    "wipe": ("delete",),
    "undelete": ("restore", "trash"),
    "recover": ("restore",),
    "cost": ("price",),
    "costs": ("price",),
    "expensive": ("price",),
    "cheap": ("price",),
    "bill": ("invoice",),
    "receipt": ("invoice",),
    "login": ("sign in",),
    "logon": ("sign in",),
    "signin": ("sign in",),
    "mfa": ("2fa",),
    "two factor": ("two step", "2fa"),
    "otp": ("authenticator",),
    "unsubscribe": ("cancel",),
    "hacked": ("compromised",),
    "iphone": ("ios",),
    "ipad": ("ios",),
    "pictures": ("photos",),
    "employee": ("user",),
    "employees": ("users",),
    "licence": ("seats",),
    "licences": ("seats",),
    "license": ("seats",),
    "licenses": ("seats",),
    "spreadsheet": ("csv",),
    "excel": ("csv",),
    "macbook": ("macos",),
    "mac": ("macos",),
    "imac": ("macos",),
    "osx": ("macos",),
    "yearly": ("annual",),
    "hotspot": ("metered",),
    "tethering": ("metered",),
}
# Phrases rewritten before the words are looked at: "log in" is about signing in, not about the
# audit log; "is it down" is about an outage ("down" alone may be a direction: "down to Team").
_REWRITES = (
    (re.compile(r"\blog(?:ged|ging|s)?\s+(?:in|into|on)\b"), "sign in"),
    (re.compile(r"\blog(?:ged|ging|s)?\s+(?:out|off)\b"), "sign out"),
    (
        re.compile(
            r"\b(?:is|are|was|were|goes|go|going|went|gone|been)\s+(?:\w+\s+)?down\b(?!\s+to\b)"
        ),
        "outage",
    ),
    (re.compile(r"\bazure\s+(?:ad|active\s+directory)\b"), "entra azure"),
)
# An error code typed without its hyphen ("nb1042") as the two tokens the index holds.
_GLUED_CODE_RE = re.compile(r"([a-z]{1,8})(\d{2,8})")

# English function words plus the filler of support questions ("how do I", "can you help me").
# Dropping them keeps "how do I reset my password?" about passwords, not about "do" and "my".
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any anyone anything are aren as at be
    because been before being below between both but by can cannot cant could couldn did didn do
    does doesn doing don down during each either else even ever every few for from further get
    gets getting got had hadn has hasn have haven having he hello help her here hers herself hey hi
    him himself his how i if in into is isn it its itself just know let like ll m me might mine
    more most much must mustn my myself need needs no nor not now of off on once only or other our
    ours ourselves out over own please possible re really s same shall she should shouldn so some
    someone something still such t tell than thank thanks that the their theirs them themselves
    then there these they thing this those through to too trying try under until up us ve very
    want wants was wasn way we were weren what whats when where which while who whom why will with
    won would wouldn you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_TOKEN_RE = re.compile(r"[^\W_]+")  # what FTS5 unicode61 calls a token: letters and digits
_WORD_RE = re.compile(r"[^\W\d_]+")  # letters only (what typo correction looks at)
_CODE_RE = re.compile(r"(?=.*\d)(?=.*[^\W\d_])[^\W_]+(-[^\W_]+)*|\d{3,}")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


@dataclass(frozen=True)
class ArticleHit:
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
    hits: list[ArticleHit]
    total: int


@dataclass(frozen=True)
class Term:
    """One searchable word (or hyphen group, or a synonym of one) of a query."""

    tokens: tuple[str, ...]  # as FTS5's unicode61 splits it: ("nb", "1042")
    text: str  # as written, lower-case ("nb-1042"): PostgreSQL's parser splits it its own way
    group: int  # the asked word this term stands for; a group scores its best member
    weight: float = 1.0  # multiplies the term's score (word pairs weigh less)
    bonus: bool = False  # extra evidence that does not count toward the maximum score


def query_terms(text: str) -> list[Term]:
    """The searchable terms of free text: stop words dropped, synonyms and word pairs added."""
    terms: dict[tuple[str, ...], Term] = {}
    asked: list[Term] = []
    text = text.translate(_APOSTROPHES).lower()
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    for chunk in text.split():
        # "what's", "don't", "nimbus's": the part before the apostrophe carries the meaning.
        chunk = chunk.split("'", 1)[0]
        found = list(_TOKEN_RE.finditer(chunk))
        tokens = tuple(m.group() for m in found)
        if not tokens or tokens in terms or len(terms) >= MAX_QUERY_TERMS:
            continue
        group = len(asked)
        # A synonym applies even to a stop word: "is it down?" is about an outage.
        synonyms = [tuple(s.split()) for s in SYNONYMS.get(" ".join(tokens), ())]
        if len(tokens) > 1 or (tokens[0] not in STOP_WORDS and len(tokens[0]) > 1):
            written = chunk[found[0].start() : found[-1].end()]
            weight = CODE_WEIGHT if _CODE_RE.fullmatch(written) else 1.0
            terms[tokens] = Term(tokens=tokens, text=written, group=group, weight=weight)
            asked.append(terms[tokens])
        elif synonyms:
            asked.append(Term(tokens=tokens, text="", group=group, weight=0.0))
        # "réset" also as "reset": FTS5 folds diacritics on both sides, PostgreSQL's english
        # configuration on neither, so the folded spelling finds unaccented articles there.
        folded = tuple(spelling.fold(token) for token in tokens)
        if folded != tokens and group < len(asked) and asked[group].weight:
            synonyms.append(folded)
        for key in synonyms:
            terms.setdefault(key, Term(key, " ".join(key), group, SYNONYM_WEIGHT))
        glued = _GLUED_CODE_RE.fullmatch(tokens[0]) if len(tokens) == 1 else None
        if glued and group < len(asked):
            # Weighed, and written for PostgreSQL's parser, as the hyphenated code would be.
            key = glued.groups()
            terms.setdefault(key, Term(key, "-".join(key), group, CODE_WEIGHT))
    # Neighbouring words of the question found side by side in an article ("public link",
    # "close-account") are extra evidence. A bonus only: they do not raise the maximum score.
    pairs = [(a, b) for a, b in itertools.pairwise(asked) if a.weight and b.weight]
    for offset, (first, second) in enumerate(pairs[:MAX_PAIRS]):
        key = first.tokens + second.tokens
        if key not in terms:
            terms[key] = Term(key, " ".join(key), len(asked) + offset, PAIR_WEIGHT, bonus=True)
    return list(terms.values())


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
    from tools import embeddings

    embedder = embeddings.get_embedder() if semantic else None
    asked = query_terms(query)
    fixes = corrections(asked)
    terms = with_corrections(asked, fixes)
    if not terms and embedder is None:
        return SearchResult(hits=[], total=0)
    filters = _Filters(
        category=category.strip().lower() if category else None,
        language=language.strip().lower() if language else None,
        tags=sorted({t.strip().lower() for t in tags or [] if t.strip()}),
        updated_after=updated_after,
    )
    depth = max(max_results, embeddings.FUSION_DEPTH) if embedder else max_results
    # The question's embedding is computed on another thread while the database ranks.
    pending = embeddings.embed_soon(corrected_text(query, fixes)) if embedder else None
    rows: list[dict[str, Any]] = []
    total, max_score = 0, 0.0
    if terms and connection.vendor == "postgresql":
        rows, total, max_score = _search_postgres(terms=terms, filters=filters, limit=depth)
    elif terms:
        rows, total, max_score = _search_sqlite(terms=terms, filters=filters, limit=depth)

    def relevance(row: dict[str, Any]) -> float:
        return round(min(1.0, row["score"] / max_score), 4) if max_score > 0 else 0.0

    if embedder is None:
        return SearchResult(hits=[_hit(row, relevance(row), terms) for row in rows], total=total)
    try:
        semantic_hits = embeddings.semantic_search(
            corrected_text(query, fixes),
            limit=embeddings.FUSION_DEPTH,
            allowed=_allowed_ids(filters),
            vector=pending,
        )
    except Exception:
        log.warning("search.embeddings_failed", exc_info=True)
        semantic_hits = []
    by_id = {row["id"]: row for row in rows}
    meaning = {hit.article_id: hit for hit in semantic_hits}
    order = embeddings.fuse([[row["id"] for row in rows], [h.article_id for h in semantic_hits]])
    order = order[:max_results]
    missing = [article_id for article_id in order if article_id not in by_id]
    fetched: dict[str, dict[str, Any]] = {
        row["id"]: dict(row)
        for row in Article.objects.filter(pk__in=missing).values(
            "id", "title", "url", "category", "tags", "language", "updated", "content"
        )
    }
    hits = []
    for article_id in order:
        if article_id in by_id:
            row = by_id[article_id]
            hits.append(_hit(row, relevance(row), terms))
        elif article_id in fetched:
            found = meaning[article_id]
            chunk = found.chunk.split("\n", 1)[-1]  # without the title line
            hits.append(
                _hit(
                    fetched[article_id],
                    embeddings.similarity_relevance(found.similarity),
                    terms,
                    passage=_shorten(" ".join(chunk.split()), PASSAGE_CHARS),
                )
            )
    return SearchResult(hits=hits, total=max(total, len(set(by_id) | set(meaning))))


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


def _allowed_ids(filters: _Filters) -> set[str] | None:
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


def with_corrections(terms: list[Term], fixes: dict[str, str]) -> list[Term]:
    """``terms`` plus each fix of ``corrections`` ("pasword" → "password"), in the misspelt
    word's group so the two never count twice."""
    keys = {t.tokens for t in terms}
    extra = []
    for term in terms:
        fixed = fixes.get(term.tokens[0]) if len(term.tokens) == 1 and not term.bonus else None
        if fixed and (fixed,) not in keys:
            keys.add((fixed,))
            extra.append(Term((fixed,), fixed, term.group, SYNONYM_WEIGHT))
    return terms + extra


def corrections(terms: list[Term]) -> dict[str, str]:
    """For each question word no article uses, the nearest word one does, if one is close."""
    words = [
        t.tokens[0]
        for t in terms
        if t.weight and not t.bonus and len(t.tokens) == 1 and t.tokens[0].isalpha()
    ]
    if not words:
        return {}
    known = spelling.vocabulary()
    found = {}
    for word in words:
        fixed = known.correct(spelling.fold(word))
        if fixed:
            found[word] = fixed
    return found


def corrected_text(text: str, fixes: dict[str, str]) -> str:
    """``text`` with its misspelt words replaced, for the embedder (to which "invocies" means
    something else entirely)."""
    if not fixes:
        return text
    return _WORD_RE.sub(lambda m: fixes.get(m.group().lower(), m.group()), text)


@dataclass(frozen=True)
class _Filters:
    category: str | None
    language: str | None
    tags: list[str]
    updated_after: dt.date | None = None  # articles updated on or after this day

    @property
    def active(self) -> bool:
        return bool(self.category or self.language or self.tags or self.updated_after)


_COLUMNS = ("id", "title", "url", "category", "tags", "language", "updated", "content")


def _idf(*, docs: int, matching: int) -> float:
    # Lucene's BM25 IDF, always positive. FTS5's own bm25() floors the IDF of a word found in
    # more than half the articles to nearly zero, which on a 40-article knowledge base silences
    # "sign" and "email"; its per-term output is rescaled to this IDF instead.
    return math.log(1 + (docs - matching + 0.5) / (matching + 0.5))


def _max_score(terms: list[Term], idfs: list[float]) -> float:
    best: dict[int, float] = {}
    for term, idf in zip(terms, idfs, strict=True):
        if term.bonus:
            continue
        best[term.group] = max(best.get(term.group, 0.0), term.weight * idf)
    return sum(best.values()) * (_K1 + 1) * (1 + _TITLE_BONUS)


def _fts5_phrase(term: Term) -> str:
    # Tokens hold only letters and digits, so this double-quoted FTS5 string is always
    # well-formed and can carry no operator, column filter or syntax error.
    return '"' + " ".join(term.tokens) + '"'


def _search_sqlite(
    *, terms: list[Term], filters: _Filters, limit: int
) -> tuple[list[dict[str, Any]], int, float]:
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
    idfs = [_idf(docs=docs, matching=n) for n in frequencies]
    max_score = _max_score(terms, idfs)

    chosen = _candidate_terms(frequencies=frequencies, present=present)
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
    return _rows(raw), total, max_score


def _candidate_terms(*, frequencies: list[int], present: list[int]) -> list[int] | None:
    """The rarest terms whose articles are the only ones ranked, or None to rank all.

    Scoring every article that shares one common word ("file") with the question costs a
    ranking call per article and term: 30 ms on SQLite and far more on PostgreSQL at 10,000
    articles. Past CANDIDATE_BUDGET matches, SQLite ranks only the articles holding one of the
    rarest words (together about CANDIDATE_BUDGET of them; the best-ranked ones when even the
    rarest word is that common), each by all the words. An article with none of those words
    lacks the question's most specific words, and its score is bounded by the common ones.
    Below the budget, which covers the whole starter knowledge base, ranking is exhaustive.
    PostgreSQL makes the same choice, then pools more candidates (see _rank_postgres).
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


def _sqlite_filters(filters: _Filters) -> tuple[str, list[Any]]:
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
    filters: _Filters,
    limit: int,
) -> tuple[list[tuple[Any, ...]], int]:
    """The best ``limit`` rows (columns, score) and the match count; all articles, or only
    those matching the FTS5 expression ``candidates``."""
    condition, filter_params = _sqlite_filters(filters)
    join = "JOIN tools_article a ON a.rowid = tools_article_fts.rowid" if condition else ""
    ctes, params = [], []
    if candidates is not None:
        ctes.append(
            "cand AS MATERIALIZED (SELECT tools_article_fts.rowid AS rid FROM tools_article_fts"
            f" {join} WHERE tools_article_fts MATCH %s{' AND ' + condition if condition else ''}"
            # Even the rarest word can be common: then its best-ranked articles stand for it.
            f" ORDER BY bm25(tools_article_fts, {_SQLITE_WEIGHTS}) LIMIT {CANDIDATE_BUDGET})"
        )
        params += [candidates, *filter_params]
    elif condition:
        ctes.append(
            f"cand AS MATERIALIZED (SELECT a.rowid AS rid FROM tools_article a WHERE {condition})"
        )
        params += filter_params
    source = "tools_article_fts"
    if ctes:
        # The FTS table first, the candidates looked up by row id: bm25() then runs only for
        # the rows that survive the join.
        source += " CROSS JOIN cand ON cand.rid = tools_article_fts.rowid"

    # One bm25() per term (a single-phrase query), divided by FTS5's own IDF for that phrase to
    # get the saturated term frequency back, times our IDF; the best term of each synonym group
    # counts. The second bm25() sees only title and tags: a word there adds a bonus, because
    # with saturation a body that repeats a word would otherwise tie with a title naming it.
    selects = []
    for i in present:
        fts5_idf = max(1e-6, math.log((docs - frequencies[i] + 0.5) / (frequencies[i] + 0.5)))
        score = f"-bm25(tools_article_fts, {_SQLITE_WEIGHTS})"
        if not terms[i].bonus:
            score += f" - {_TITLE_BONUS} * bm25(tools_article_fts, {_SQLITE_TITLE_WEIGHTS})"
        selects.append(
            f"SELECT tools_article_fts.rowid AS rid, %s AS grp, %s * ({score}) AS s"
            f" FROM {source} WHERE tools_article_fts MATCH %s"
        )
        params += [terms[i].group, terms[i].weight * idfs[i] / fts5_idf, phrases[i]]
    ctes.append(f"matches AS MATERIALIZED ({' UNION ALL '.join(selects)})")
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
        SELECT {", ".join("a." + c for c in _COLUMNS)}, top.score, {total_sql}
        FROM top JOIN tools_article a ON a.rowid = top.rid
        ORDER BY top.score DESC, a.id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit, *total_params])
        raw = cursor.fetchall()
    return raw, (raw[0][len(_COLUMNS) + 1] if raw else 0)


def _rows(raw: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    n = len(_COLUMNS)
    return [_row(r[:n], score=float(r[n])) for r in raw]


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


# --- PostgreSQL statistics --------------------------------------------------------------------


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
# By primary key: under enable_seqscan=off a sequential scan of this one-row table would be
# priced at 1e10, which also wakes the JIT compiler.
_PG_STAMP_SQL = "SELECT stamp::text FROM tools_article_search_stamp WHERE id"


def _pg_key(query: tuple[str, list[str]]) -> tuple[str, ...]:
    return (query[0], *query[1])


def _pg_statistics(
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
        f"SELECT ({_PG_STAMP_SQL}), {articles}{columns}",
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


# --- PostgreSQL ranking -----------------------------------------------------------------------

# The score of one term, f(x) = x / (x + K1) of a weighted occurrence count x, is below 1, and
# at least f(1) when the term occurs once.
_F1 = 1 / (1 + _K1)
_ONE_LEXEME_RE = re.compile(r"'(?:[^']|'')+'")  # a tsquery that is a single lexeme, as text


@dataclass(frozen=True)
class _PgTerm:
    """One term of the question that some article holds, ready for SQL."""

    tsquery: str  # as text, bound as %s::tsquery (parsed once, not re-stemmed per use)
    group: int
    coefficient: float  # weight * IDF * (K1 + 1): what a saturated term frequency is worth
    bonus: bool  # a word pair: no title-and-tags part, not part of the maximum
    one_lexeme: bool  # absent from a vector exactly when ``@@`` says so
    matches: int  # bitmap of the articles holding it (see _Statistics)


@dataclass(frozen=True)
class _PgPlan:
    """The SQL of one PostgreSQL search, built from the question's terms and filters."""

    terms: list[_PgTerm]
    filters: _Filters
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
                    parts.append(("tv", _PG_TITLE_WEIGHTS, _TITLE_BONUS))
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
                    saturated.append(f"{coefficient!r} * {name} / ({name} + {_K1})")
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
                    f"(a.title_vector @@ %s::tsquery)::int * {low * (1 + _TITLE_BONUS)!r}::float8"
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
                bounds = [t.coefficient * (1 if t in titled else 1 + _TITLE_BONUS) for t in terms]
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
            SELECT {", ".join("a." + c for c in _COLUMNS)}, top.score, m.*
            FROM (
                SELECT {total_sql} AS total, (SELECT count(*) FROM words) AS ranked,
                (SELECT score FROM {final} ORDER BY score DESC, id LIMIT 1 OFFSET {k - 1})
                    AS threshold
            ) m
            LEFT JOIN (top JOIN tools_article a ON a.id = top.id) ON true
            ORDER BY top.score DESC, a.id
        """
        return sql, [*params, *score_params, *pair_params, *total_params]


def _search_postgres(
    *, terms: list[Term], filters: _Filters, limit: int
) -> tuple[list[dict[str, Any]], int, float]:
    queries = [_pg_tsquery(t) for t in terms]
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner prices a sequential scan's ``@@`` as cheap, but it reads every vector;
        # the GIN indexes answer the same from a few pages. The JIT compiler costs more than
        # these queries run. Transaction-local; read with the statistics stamp in one trip.
        cursor.execute(
            "SELECT current_setting('enable_seqscan'), current_setting('jit'),"
            " set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true),"
            f" ({_PG_STAMP_SQL})"
        )
        seqscan, jit, _, _, stamp = cursor.fetchone()
        docs, statistics = _pg_statistics(cursor, queries=queries, stamp=stamp)
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
    filters: _Filters,
    limit: int,
) -> tuple[list[dict[str, Any]], int, float]:
    frequencies = [matches.bit_count() for _, matches in statistics]
    present = [i for i, n in enumerate(frequencies) if n]
    if not present:
        return [], 0, 0.0
    idfs = [_idf(docs=docs, matching=n) for n in frequencies]
    max_score = _max_score(terms, idfs)
    by_index = {
        i: _PgTerm(
            tsquery=statistics[i][0],
            group=terms[i].group,
            coefficient=terms[i].weight * idfs[i] * (_K1 + 1),
            bonus=terms[i].bonus,
            one_lexeme=bool(_ONE_LEXEME_RE.fullmatch(statistics[i][0])),
            matches=statistics[i][1],
        )
        for i in present
    }
    plan = _PgPlan(terms=list(by_index.values()), filters=filters, limit=limit)
    # An article holding a word pair holds both words: the words alone find every match,
    # without checking word positions.
    words = [t for t in plan.terms if not t.bonus]
    all_where, all_params = plan.where("search_vector", words)
    count = (f"(SELECT count(*) FROM tools_article a WHERE {all_where})", all_params)
    if not filters.active:
        union = functools.reduce(operator.or_, (statistics[i][1] for i in present), 0)
        count = ("%s::bigint", [union.bit_count()])
    if _candidate_terms(frequencies=frequencies, present=present) is None:
        # Few matches (the whole starter knowledge base): rank every one of them.
        sql, params = plan.ranked(
            candidates=f"cand AS (SELECT a.id FROM tools_article a WHERE {all_where})",
            params=all_params,
            total=None,
        )
        raw, total, _, _ = _pg_fetch(cursor, sql, params)
        return _rows(raw), total, max_score

    # Many matches. The pool of candidates: the articles naming a weighty question word in
    # their title or tags (from the small title index), and the articles holding the rarest
    # words when those are few. The pool is ordered by a lower bound of the score computed from
    # match checks alone, and its first POOL_RANKED are ranked. An article outside the pool
    # holds the question's words only in its body (or common ones in its title), and only
    # common words: it is ranked in a second statement only if it holds enough of them to
    # possibly beat the limit-th best of the pool (see _PgPlan.outside), which the title and
    # rare-word evidence usually rules out.
    word_indexes = [i for i in present if not terms[i].bonus]
    chosen = _candidate_terms(frequencies=frequencies, present=word_indexes) or word_indexes
    rarest = [by_index[i] for i in chosen]
    # A common word in a title adds at most 2.5 times its small coefficient, less than the
    # weighty words in a body, yet it would bring thousands of articles into the pool.
    weighty = max(t.coefficient for t in words) * TITLE_POOL_SHARE
    titled = [t for t in words if t.coefficient >= weighty]
    source, source_params = plan.any_of(titled)
    source = f"a.title_vector @@ {source}"
    rare: list[_PgTerm] = []
    if sum(frequencies[i] for i in chosen) <= CANDIDATE_BUDGET:
        rare = rarest
        rare_query, rare_params = plan.any_of(rare)
        source = f"({source} OR a.search_vector @@ {rare_query})"
        source_params += rare_params
    filter_where, filter_params = plan.filter_sql()
    lower, lower_params = plan.lower_bound()
    ctes = [
        f"""pool AS MATERIALIZED (
            SELECT a.id, {lower} AS lb FROM tools_article a WHERE {source}{filter_where}
        )""",
        f"best AS (SELECT id FROM pool ORDER BY lb DESC, id LIMIT {max(POOL_RANKED, 10 * limit)})",
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
    sql, sql_params = plan.ranked(
        candidates=", ".join([*ctes, f"cand AS ({best})"]), params=params, total=count
    )
    raw, total, ranked, threshold = _pg_fetch(cursor, sql, sql_params)
    if ranked >= total:
        return _rows(raw), total, max_score
    sets = None
    if threshold is not None:
        sets = plan.outside(titled=titled, rare=rare, threshold=threshold)
        if sets == []:
            return _rows(raw), total, max_score  # no article outside the pool can beat it
    if sets:
        # The articles outside the pool that hold enough of the words to beat the limit-th
        # best are ranked too, and the two rankings merged (the scores are exact in both):
        # all of them when they are few, else the POOL_RANKED best by the heaviest words.
        where, where_params, holders = plan.holding(sets)
        outside = f"SELECT a.id FROM tools_article a WHERE {where}"
        if holders > CANDIDATE_BUDGET:
            heaviest, heaviest_params = plan.any_of(sets[0][0])
            outside += (
                f" ORDER BY ts_rank_cd('{_PG_WEIGHTS}', a.search_vector, {heaviest}) DESC, a.id"
                f" LIMIT {max(POOL_RANKED, 10 * limit)}"
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
        winners = sorted(merged, key=lambda row: (-row[len(_COLUMNS)], row[0]))[:limit]
        return _rows(winners), total, max_score
    # Too few in the pool to know what to beat (a filter, or words in no title), or too many
    # ways to beat it: the best-ranked articles of the rarest word join the pool.
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
    return _rows(raw), total, max_score


def _pg_fetch(
    cursor: Any, sql: str, params: list[Any]
) -> tuple[list[tuple[Any, ...]], int, int, float | None]:
    """Run a ``_PgPlan.ranked`` statement: hits (columns, score), total, ranked, threshold."""
    cursor.execute(sql, params)
    raw = cursor.fetchall()
    n = len(_COLUMNS)
    total, ranked, threshold = raw[0][n + 1 :]
    return [r[: n + 1] for r in raw if r[0] is not None], total, ranked, threshold


def _row(values: Sequence[Any], *, score: float) -> dict[str, Any]:
    row = dict(zip(_COLUMNS, values, strict=True))
    # Raw SQL bypasses the model's field conversion: JSON arrives as text, SQLite dates as ISO.
    tags = json.loads(row["tags"]) if isinstance(row["tags"], str) else row["tags"]
    row["tags"] = list(tags or [])
    if isinstance(row["updated"], str):
        row["updated"] = dt.date.fromisoformat(row["updated"])
    row["score"] = score
    return row


# --- passages ---------------------------------------------------------------------------------

PASSAGE_CHARS = 400
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    # A light suffix strip, enough to pair "resetting" with "reset" when picking a paragraph
    # (the database's Porter stemmer chose the article; this only picks the paragraph).
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # "resett" -> "reset", "shipp" -> "ship"
            break
    return word


def _stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _TOKEN_RE.findall(text.lower()))


def _blocks(content: str) -> list[tuple[str, str]]:
    """(section heading, block) pairs: paragraphs, whole lists and tables, code blocks.

    The level-1 heading is the article's title, so blocks under it carry no heading.
    """
    blocks: list[tuple[str, str]] = []
    heading, fenced = "", False
    lines: list[str] = []

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            blocks.append((heading, text))
        lines.clear()

    for line in content.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append(line)
            continue
        match = None if fenced else _HEADING_RE.match(line)
        if match:
            flush()
            heading = match.group(2) if len(match.group(1)) > 1 else ""
        elif not line.strip() and not fenced:
            flush()
        else:
            lines.append(line)
    flush()
    return blocks


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    # End on a sentence or line when one ends in the last third, else on a word.
    stop = max(cut.rfind(". "), cut.rfind("\n"))
    if stop >= limit * 2 // 3:
        return cut[: stop + 1].rstrip()
    return cut.rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


@functools.lru_cache(maxsize=4096)
def _analysed(content: str) -> tuple[tuple[str, str, frozenset[str], frozenset[str]], ...]:
    # Cached per article text: the same few articles answer most questions.
    return tuple((h, text, _stems(text), _stems(h)) for h, text in _blocks(content))


def best_passage(*, content: str, terms: list[Term], limit: int = PASSAGE_CHARS) -> str:
    """The paragraph of ``content`` that best matches ``terms`` (heading-prefixed, ≤ ``limit``)."""
    blocks = _analysed(content)
    if not blocks:
        return ""
    wanted = {_stem(token) for term in terms for token in term.tokens}

    def score(index: int) -> tuple[float, int]:
        _heading, _text, text_stems, heading_stems = blocks[index]
        # Earlier blocks win ties: introductions summarise.
        return len(wanted & text_stems) + 0.5 * len(wanted & heading_stems), -index

    best = max(range(len(blocks)), key=score)
    if score(best)[0] == 0:
        # Only the title matched: the opening paragraph says what the article is about.
        best = 0
    heading, text = blocks[best][:2]
    lines = text.splitlines()
    if len(lines) > 3 and all(line.lstrip().startswith("|") for line in lines):
        # A table: its header and the rows that match best ("| NB-1500 | Can't connect |").
        matches = [len(wanted & _stems(row)) for row in lines[2:]]
        most = max(matches)
        rows = [row for row, n in zip(lines[2:], matches, strict=True) if n == most and most]
        text = "\n".join(lines[:2] + (rows or lines[2:]))
    # A short paragraph ("Reviews take 3 days.") says more with its neighbour in the section.
    following = best + 1
    while len(text) < limit // 2 and following < len(blocks) and blocks[following][0] == heading:
        text = f"{text}\n\n{blocks[following][1]}"
        following += 1
    return _shorten(f"{heading}: {text}" if heading else text, limit)


# --- import -----------------------------------------------------------------------------------

_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)
_url_validator = URLValidator(schemes=["http", "https"])


class FrontMatter(BaseModel):
    """The YAML header of an article file; unknown keys are ignored for forward compatibility."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str | None = Field(None, pattern=rf"^kb_[A-Za-z0-9_-]{{1,{ARTICLE_ID_MAX - 3}}}$")
    title: str = Field(min_length=1, max_length=300)
    category: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    tags: list[str] = Field(default_factory=list, max_length=32)
    url: str = Field("", max_length=500)
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
    updated: dt.date | None = None

    @field_validator("category", "language", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        tags = [tag.strip().lower() for tag in value]
        if any(not tag or len(tag) > 64 for tag in tags):
            raise ValueError("each tag must be 1 to 64 characters")
        return list(dict.fromkeys(tags))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            try:
                _url_validator(value)
            except DjangoValidationError as exc:
                raise ValueError("must be an http(s) URL") from exc
        return value

    @field_validator("updated", mode="before")
    @classmethod
    def _date_only(cls, value: object) -> object:
        # YAML reads "2026-03-17 10:00" as a datetime; the article keeps its day.
        return value.date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True)
class ImportProblem:
    file: str
    message: str


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Markdown files without front matter (a README): not articles, not errors.
    skipped: list[str] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged)


class _NotAnArticle(Exception):
    pass


_IMPORTED_FIELDS = ("title", "content", "url", "category", "tags", "language", "updated")


def parse_article_file(path: Path) -> dict[str, Any]:
    """The article fields of one Markdown file; raises ValueError saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        if text.startswith("---"):
            raise ValueError("front matter is not closed by a '---' line")
        raise _NotAnArticle
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (front matter line {where.line + 1})" if where is not None else ""
        raise ValueError(f"front matter is not valid YAML{line}") from exc
    if not isinstance(header, dict):
        raise ValueError("front matter must be a YAML mapping of fields")
    try:
        meta = FrontMatter.model_validate(header)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'front matter'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(problems) from exc
    body = match.group(2).strip()
    if not body:
        raise ValueError("the article has no body")
    updated = meta.updated or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date()
    return {
        # No id in the file: derive one from its name, so importing it again updates, not adds.
        "id": meta.id or "kb_" + re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)[: ARTICLE_ID_MAX - 3],
        "title": meta.title,
        "content": body,
        "url": meta.url,
        "category": meta.category,
        "tags": meta.tags,
        "language": meta.language,
        "updated": updated,
    }


def import_articles(*, path: Path) -> ImportReport:
    """Upsert every ``*.md`` article under ``path`` (a folder or one file) by id; idempotent."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(path.glob("*.md"))
    report = ImportReport()
    parsed: dict[str, tuple[str, dict[str, Any]]] = {}
    for file in files:
        try:
            values = parse_article_file(file)
        except _NotAnArticle:
            report.skipped.append(file.name)
            continue
        except (ValueError, OSError) as exc:
            report.errors.append(ImportProblem(file=file.name, message=str(exc)))
            continue
        if values["id"] in parsed:
            first = parsed[values["id"]][0]
            report.errors.append(
                ImportProblem(file=file.name, message=f"id {values['id']} is also used by {first}")
            )
            continue
        parsed[values["id"]] = (file.name, values)

    with transaction.atomic():
        existing = Article.objects.in_bulk(list(parsed))
        new: list[Article] = []
        for article_id, (_name, values) in parsed.items():
            article = existing.get(article_id)
            if article is None:
                new.append(Article(**values))
                report.created.append(article_id)
                continue
            changed = [f for f in _IMPORTED_FIELDS if getattr(article, f) != values[f]]
            if not changed:
                report.unchanged.append(article_id)
                continue
            for name in changed:
                setattr(article, name, values[name])
            article.save(update_fields=[*changed, "modified"])
            report.updated.append(article_id)
        Article.objects.bulk_create(new, batch_size=500)
    return report


# --- addresses the knowledge base publishes ------------------------------------------------------

_PUBLISHED_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_published: tuple[tuple[Any, ...], frozenset[str]] | None = None


def published_addresses() -> frozenset[str]:
    """The e-mail addresses the articles give to customers (support@, dpo@, …), lower-cased.

    They are the company's, published on purpose: PII redaction leaves them alone, so an answer
    quoting an article still says where to write. Read again only when the articles changed
    (their count or newest modification), so calling this often costs one small query.
    """
    global _published
    from django.db.models import Count, Max

    version = tuple(Article.objects.aggregate(n=Count("id"), last=Max("modified")).values())
    cached = _published
    if cached is not None and cached[0] == version:
        return cached[1]
    found: set[str] = set()
    for content in (
        Article.objects.filter(content__contains="@").values_list("content", flat=True).iterator()
    ):
        found.update(address.lower() for address in _PUBLISHED_EMAIL.findall(content))
    _published = (version, frozenset(found))
    return _published[1]
