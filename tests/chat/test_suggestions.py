"""Suggested questions: the articles recent answers cited most, else the curated starter list,
else the knowledge base's own titles; shown on the chat page and sent as typed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from chat.models import ChatSession, Message
from chat.suggestions import COUNT, CURATED, MIN_CITATIONS, suggested_questions
from tools.models import Article

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cached_list():
    cache.clear()
    yield
    cache.clear()


def cite(article_ids: list[str], *, times: int, days_ago: float = 0) -> None:
    """``times`` assistant answers (in one session each) that cited ``article_ids``."""
    at = timezone.now() - timedelta(days=days_ago)
    for _ in range(times):
        session = ChatSession.objects.create()
        Message.objects.create(
            session=session,
            seq=1,
            role=Message.Role.ASSISTANT,
            content="An answer.",
            created_at=at,
            metadata={"citations": [{"id": a, "title": a, "url": ""} for a in article_ids]},
        )


def test_a_new_installation_offers_the_curated_questions_in_order(kb):
    questions = [s["question"] for s in suggested_questions()]
    assert questions == list(CURATED.values())[:COUNT]
    assert 3 <= len(questions) <= 5


def test_the_most_cited_articles_come_first(kb):
    cite(["kb_029"], times=MIN_CITATIONS + 2)  # How Nimbus protects your data: 2 + 3 = 5 + 3
    cite(["kb_014", "kb_029"], times=MIN_CITATIONS)  # Nimbus Sync on Linux: 3
    cite(["kb_002"], times=MIN_CITATIONS + 1)  # curated, 4: its question, not its title
    suggestions = suggested_questions()
    # The three cited enough, most cited first, then the curated list fills the rest.
    assert [s["articleId"] for s in suggestions] == ["kb_029", "kb_002", "kb_014", "kb_009"]
    assert suggestions[0]["question"] == "How Nimbus protects your data"
    assert suggestions[1]["question"] == CURATED["kb_002"]
    assert suggestions[2]["question"] == "Nimbus Sync on Linux"


def test_rare_or_old_citations_do_not_count(kb):
    cite(["kb_031"], times=MIN_CITATIONS - 1)  # too few to be a trend
    cite(["kb_032"], times=MIN_CITATIONS + 5, days_ago=45)  # outside the window
    ids = [s["articleId"] for s in suggested_questions()]
    assert "kb_031" not in ids and "kb_032" not in ids
    assert ids == list(CURATED)[:COUNT]


def test_a_knowledge_base_of_its_own_offers_its_titles(db):
    Article.objects.create(id="kb_a1", title="Returning a parcel", content="x", category="shop")
    Article.objects.create(id="kb_a2", title="Tracking an order", content="x", category="shop")
    cite(["kb_gone"], times=MIN_CITATIONS + 3)  # cited, then deleted: never suggested
    assert suggested_questions() == [
        {"question": "Returning a parcel", "articleId": "kb_a1"},
        {"question": "Tracking an order", "articleId": "kb_a2"},
    ]


def test_an_empty_knowledge_base_offers_nothing(db):
    assert suggested_questions() == []


def test_malformed_citations_are_skipped(kb):
    session = ChatSession.objects.create()
    for seq, metadata in enumerate(
        [{"citations": None}, {"citations": ["kb_006"]}, {"citations": [{"id": 6}]}], start=1
    ):
        Message.objects.create(
            session=session, seq=seq, role="assistant", content="a", metadata=metadata
        )
    assert [s["articleId"] for s in suggested_questions()] == list(CURATED)[:COUNT]


def test_the_list_is_cached_so_a_page_load_costs_no_query(kb, django_assert_num_queries):
    first = suggested_questions()
    cite(["kb_029"], times=MIN_CITATIONS + 2)
    with django_assert_num_queries(0):
        assert suggested_questions() == first


def test_the_chat_page_shows_the_greeting_and_the_suggestions(kb):
    html = Client().get("/").content.decode()
    assert 'id="welcome"' in html and "Nimbus Assistant" in html
    for question in list(CURATED.values())[:COUNT]:
        assert escape(question) in html
    assert html.count('class="suggestion"') == COUNT
