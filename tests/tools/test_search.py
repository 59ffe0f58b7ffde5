"""search_articles on the starter knowledge base: ranking, relevance, filters, index sync.

Runs on SQLite by default and on PostgreSQL with DATABASE_URL: the same expectations hold on both.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.db import connection, transaction

from tools.kb.importer import import_articles
from tools.kb.ranking import CANDIDATE_BUDGET
from tools.kb.search import search_articles
from tools.models import Article

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"

pytestmark = pytest.mark.django_db


@pytest.fixture
def starter_kb() -> None:
    report = import_articles(path=STARTER_KB)
    assert len(report.created) == 40


# Paraphrased customer questions, worded the way people write to support, not like the titles.
TYPICAL_QUESTIONS = [
    ("I forgot my password", "kb_002"),
    ("how do I reset my password?", "kb_002"),
    ("account locked after too many wrong passwords", "kb_002"),
    ("my phone with the authenticator app was stolen", "kb_004"),
    ("I lost my backup codes and my phone", "kb_004"),
    ("what does NB-1042 mean", "kb_036"),
    ("path too long on windows", "kb_036"),
    ("how much does the business plan cost", "kb_006"),
    ("I want my money back", "kb_009"),
    ("can I get a refund for my annual subscription", "kb_009"),
    ("where can I download my invoices", "kb_007"),
    ("my credit card was declined", "kb_008"),
    ("how do I turn on two-factor authentication", "kb_003"),
    ("set up SSO with Okta", "kb_005"),
    ("restore an older version of a document", "kb_021"),
    ("I deleted a file by accident, how do I get it out of the trash?", "kb_022"),
    ("my storage is full", "kb_011"),
    ("the sync app doesn't work on Ubuntu", "kb_014"),
    ("Finder doesn't show Nimbus on my Mac", "kb_013"),
    ("how do I share a folder with a colleague", "kb_018"),
    ("can I put a password on a public link", "kb_020"),
    ("I keep getting 429 too many requests from the API", "kb_024"),
    ("how do I verify webhook signatures", "kb_025"),
    ("is Nimbus down right now?", "kb_034"),
    ("what's the maximum file size I can upload", "kb_037"),
    ("how do I remove a user who left the company", "kb_040"),
    ("photos from my iphone aren't uploading automatically", "kb_017"),
    ("I can't sign in, I never got the verification email", "kb_001"),
    ("do you have a DPA for GDPR", "kb_033"),
    ("I forgot my vault passphrase", "kb_030"),
]


@pytest.mark.parametrize(("question", "article_id"), TYPICAL_QUESTIONS)
def test_typical_question_ranks_its_article_first(
    starter_kb: None, question: str, article_id: str
) -> None:
    result = search_articles(query=question, max_results=3)
    assert [hit.id for hit in result.hits][:1] == [article_id]


def test_relevance_is_within_0_and_1_and_sorted_best_first(starter_kb: None) -> None:
    for question, _ in TYPICAL_QUESTIONS:
        hits = search_articles(query=question, max_results=20).hits
        relevances = [hit.relevance for hit in hits]
        assert all(0.0 <= r <= 1.0 for r in relevances)
        assert relevances == sorted(relevances, reverse=True)


def test_relevance_separates_on_topic_from_off_topic_questions(starter_kb: None) -> None:
    on_topic = search_articles(query="how do I reset my password?").hits[0].relevance
    assert on_topic > 0.4
    for question in ["can I pay with bitcoin", "order me a taxi", "what time is it in Tokyo"]:
        hits = search_articles(query=question).hits
        assert not hits or hits[0].relevance < 0.12


def test_hit_carries_article_fields_content_and_best_passage(starter_kb: None) -> None:
    hit = search_articles(query="NB-1042 path too long on windows", max_results=1).hits[0]
    article = Article.objects.get(id="kb_036")
    assert (hit.id, hit.title, hit.url, hit.category) == (
        "kb_036",
        article.title,
        article.url,
        "troubleshooting",
    )
    assert hit.tags == ["nb-1042", "file-names", "path-length", "windows", "invalid-characters"]
    assert hit.language == "en"
    assert hit.updated == dt.date(2026, 9, 22)
    assert hit.content == article.content
    assert "260 characters" in hit.passage
    assert 50 < len(hit.passage) <= 400


def test_passage_of_a_table_keeps_its_header_and_the_matching_row(starter_kb: None) -> None:
    hit = search_articles(query="sync error NB-1500", max_results=1).hits[0]
    assert hit.id == "kb_035"
    lines = hit.passage.splitlines()
    assert lines[0].startswith("| Code | Meaning")
    assert any(line.startswith("| NB-1500") for line in lines)
    assert not any(line.startswith("| NB-1007") for line in lines)


@pytest.mark.parametrize(
    "query",
    [
        'password" OR title:*',
        "NEAR(password reset)",
        '"',
        "***",
        "- - -",
        "AND OR NOT",
        "password^2 {title}: reset",
        "(((",
        "passw*",
        "sign-in: 'quoted' \"double\" `tick`",
        "ünïcödé pässwörd",
        "💥🔥",
    ],
)
def test_user_text_never_breaks_the_query_language(starter_kb: None, query: str) -> None:
    result = search_articles(query=query)
    assert result.total >= len(result.hits)


def test_a_question_of_only_stop_words_finds_nothing(starter_kb: None) -> None:
    assert search_articles(query="how do I do it?") == search_articles(query="   ")
    assert search_articles(query="how do I do it?").hits == []


def test_partial_matches_rank_instead_of_matching_nothing(starter_kb: None) -> None:
    # "quokka" is in no article: an AND of the terms would find nothing.
    hits = search_articles(query="quokka password reset").hits
    assert hits[0].id == "kb_002"


def test_diacritics_and_case_are_ignored(starter_kb: None) -> None:
    assert search_articles(query="PÁSSWORD RÉSET", max_results=1).hits[0].id == "kb_002"


def test_category_language_and_tag_filters(starter_kb: None) -> None:
    billing = search_articles(query="cancel refund invoice payment", category="Billing")
    assert billing.hits and {hit.category for hit in billing.hits} == {"billing"}
    assert billing.total == len(billing.hits) or billing.total > len(billing.hits)

    tagged = search_articles(query="sync windows linux mac", tags=["linux", "MACOS"])
    assert {hit.id for hit in tagged.hits} == {"kb_013", "kb_014"}
    assert tagged.total == 2

    assert search_articles(query="password", language="fr").hits == []
    english = search_articles(query="password", language="en", max_results=20)
    assert english.total == search_articles(query="password", max_results=20).total


def test_max_results_bounds_hits_not_total(starter_kb: None) -> None:
    two = search_articles(query="sync files on my computer", max_results=2)
    twenty = search_articles(query="sync files on my computer", max_results=20)
    assert len(two.hits) == 2
    assert len(twenty.hits) == 20
    assert two.total == twenty.total > 20
    assert [h.id for h in two.hits] == [h.id for h in twenty.hits[:2]]
    for bad in (0, 21):
        with pytest.raises(ValueError, match="max_results"):
            search_articles(query="password", max_results=bad)


def test_saving_an_article_reindexes_it(starter_kb: None) -> None:
    article = Article.objects.get(id="kb_027")
    article.content = re.sub("slack", "Chatterbox", article.content, flags=re.IGNORECASE)
    article.title = "Using Nimbus with Chatterbox"
    article.tags = ["chatterbox", "integrations"]
    article.save()

    assert search_articles(query="chatterbox").hits[0].id == "kb_027"
    assert "kb_027" not in {hit.id for hit in search_articles(query="slack", max_results=20).hits}


def test_queryset_update_reindexes_too(starter_kb: None) -> None:
    Article.objects.filter(id="kb_030").update(content="Quokkas guard the vault.", tags=["vault"])
    hits = search_articles(query="quokka").hits
    assert [hit.id for hit in hits] == ["kb_030"]
    assert "passphrase" not in search_articles(query="quokka").hits[0].passage
    assert "kb_030" not in {h.id for h in search_articles(query="passphrase", max_results=20).hits}


def test_deleted_articles_leave_the_results(starter_kb: None) -> None:
    assert search_articles(query="webhook signatures").hits[0].id == "kb_025"
    Article.objects.filter(id="kb_025").delete()
    assert "kb_025" not in {h.id for h in search_articles(query="webhook", max_results=20).hits}


def test_new_article_is_searchable_with_a_generated_id(starter_kb: None) -> None:
    article = Article.objects.create(
        title="Printing from Nimbus", content="Use **File > Print**.", category="sync"
    )
    assert article.id.startswith("kb_")
    assert len(article.id) > 10
    assert search_articles(query="how do I print a document").hits[0].id == article.id


@pytest.mark.skipif(connection.vendor != "sqlite", reason="FTS5 is SQLite's index")
def test_fts5_index_matches_the_table_after_edits(starter_kb: None) -> None:
    Article.objects.filter(id="kb_001").update(title="Signing up")
    Article.objects.filter(id="kb_002").delete()
    Article.objects.create(id="kb_900", title="New", content="Body", category="account")
    with connection.cursor() as cursor:
        # Raises "database disk image is malformed" when index and table disagree.
        cursor.execute(
            "INSERT INTO tools_article_fts(tools_article_fts) VALUES ('integrity-check')"
        )
        cursor.execute("SELECT count(*) FROM tools_article_fts")
        assert cursor.fetchone()[0] == 40


def test_search_costs_a_fixed_number_of_queries(
    starter_kb: None, django_assert_num_queries: object
) -> None:
    # SQLite: statistics, then ranking. PostgreSQL: a savepoint around its planner settings read
    # with the statistics stamp, the statistics (only until cached), the ranking, and the
    # settings put back for the outer transaction. The first search of a process also reads
    # the vocabulary for typo tolerance (the articles' signature, then their words).
    question = "reset my password and turn on two-step verification"
    expected = (2 if connection.vendor == "sqlite" else 6) + 2
    with django_assert_num_queries(expected):  # type: ignore[operator]
        search_articles(query=question)
    expected = 2 if connection.vendor == "sqlite" else 5
    with django_assert_num_queries(expected):  # type: ignore[operator]
        search_articles(query=question)


def test_cached_statistics_never_outlive_an_article_change(starter_kb: None) -> None:
    def found() -> list[str]:
        return [hit.id for hit in search_articles(query="quokka", max_results=20).hits]

    assert found() == []  # PostgreSQL now knows "quokka" is in no article
    Article.objects.create(id="kb_900", title="Zoo", content="A quokka.", category="account")
    assert found() == ["kb_900"]
    Article.objects.filter(id="kb_900").update(content="A wombat.")
    assert found() == []
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tools_article SET content = 'Quokka!' WHERE id = 'kb_030'")
    assert found() == ["kb_030"]
    Article.objects.filter(id="kb_030").delete()
    assert found() == []
    # A change rolled back takes its statistics with it.
    with pytest.raises(RuntimeError), transaction.atomic():
        Article.objects.create(id="kb_901", title="Quokka", content="Quokka.", category="sync")
        assert found() == ["kb_901"]
        raise RuntimeError("roll back")
    assert found() == []


def test_past_the_candidate_budget_rare_words_still_find_their_article(starter_kb: None) -> None:
    filler = [
        Article(
            id=f"kb_filler_{i:04d}",
            title=f"Sync notes {i}",
            content="Sync keeps your files up to date on every computer. " * (1 + i % 3),
            category="sync",
        )
        for i in range(CANDIDATE_BUDGET + 50)
    ]
    Article.objects.bulk_create(filler)
    target = Article.objects.create(
        id="kb_target", title="Quokka mode", content="Quokka mode syncs files.", category="sync"
    )
    result = search_articles(query="quokka mode sync files", max_results=5)
    assert result.hits[0].id == target.id
    assert result.total >= CANDIDATE_BUDGET + 51


def _common_words_everywhere(count: int) -> None:
    """``count`` articles whose bodies all say "sync", "files" and "laptop", titles none."""
    Article.objects.bulk_create(
        Article(
            id=f"kb_filler_{i:04d}",
            title=f"Notes {i}",
            content="Sync moves files between a laptop and the cloud. " * (1 + i % 3),
            category="sync",
        )
        for i in range(count)
    )


def test_past_the_candidate_budget_a_title_naming_common_words_ranks_first(
    starter_kb: None,
) -> None:
    _common_words_everywhere(CANDIDATE_BUDGET + 50)
    target = Article.objects.create(
        id="kb_target", title="Sync files to a laptop", content="Plug it in.", category="sync"
    )
    result = search_articles(query="sync my files to my laptop", max_results=3)
    assert result.hits[0].id == target.id
    assert result.total >= CANDIDATE_BUDGET + 51


def test_past_the_candidate_budget_a_body_alone_beats_weaker_titles(starter_kb: None) -> None:
    _common_words_everywhere(CANDIDATE_BUDGET + 50)
    target = Article.objects.create(
        id="kb_target",
        title="Moving things around",
        content="Sync files to a laptop: sync the files, then open the laptop. " * 4,
        category="sync",
    )
    # Starter titles name "sync" and "files" once; none of the words is rare.
    hits = search_articles(query="sync files laptop", max_results=3).hits
    assert [hit.id for hit in hits][:1] == [target.id]


def test_past_the_candidate_budget_words_in_no_title_still_rank(starter_kb: None) -> None:
    Article.objects.bulk_create(
        Article(
            id=f"kb_filler_{i:04d}",
            title=f"Notes {i}",
            content="Quokkas, wombats and numbats live here. " * (1 + i % 3),
            category="sync",
        )
        for i in range(CANDIDATE_BUDGET + 50)
    )
    target = Article.objects.create(
        id="kb_target",
        title="Moving things around",
        content="A quokka, a wombat, a numbat: quokkas, wombats, numbats. " * 4,
        category="sync",
    )
    hits = search_articles(query="quokka wombat numbat", max_results=3).hits
    assert [hit.id for hit in hits][:1] == [target.id]


def test_a_filter_leaving_few_of_many_matches_ranks_them_all(starter_kb: None) -> None:
    _common_words_everywhere(CANDIDATE_BUDGET + 50)
    Article.objects.create(
        id="kb_target", title="Refunds", content="Sync your laptop files first.", category="zoo"
    )
    result = search_articles(query="sync files laptop", category="zoo")
    assert [hit.id for hit in result.hits] == ["kb_target"]
    assert result.total == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's stored tsvector")
def test_postgres_vector_weighs_title_a_body_b_and_has_a_gin_index(starter_kb: None) -> None:
    Article.objects.filter(id="kb_002").update(title="Quokka passwords")
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM tools_article WHERE id = 'kb_002'")
        vector = cursor.fetchone()[0]
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'tools_article_search_idx'"
        )
        index = cursor.fetchone()[0]
    assert re.search(r"'quokka':1A\b", vector)  # the generated column followed the update
    assert re.search(r"'forgot':\d+B", vector)  # body
    assert re.search(r"'lockout':[\d,BC]*C", vector)  # tags
    assert "USING gin (search_vector)" in index


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's stored tsvector")
def test_postgres_title_vector_holds_title_a_and_tags_c_with_a_gin_index(starter_kb: None) -> None:
    Article.objects.filter(id="kb_002").update(title="Quokka passwords")
    with connection.cursor() as cursor:
        cursor.execute("SELECT title_vector::text FROM tools_article WHERE id = 'kb_002'")
        vector = cursor.fetchone()[0]
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'tools_article_title_search_idx'"
        )
        index = cursor.fetchone()[0]
    assert re.search(r"'quokka':1A\b", vector)
    assert re.search(r"'lockout':\d+C", vector)
    assert not re.search(r"\d+B\b", vector)  # the body stays out
    assert "USING gin (title_vector)" in index


def test_the_date_filter_keeps_articles_updated_on_or_after_the_day(starter_kb: None) -> None:
    day = dt.date(2026, 8, 18)
    recent = set(Article.objects.filter(updated__gte=day).values_list("id", flat=True))
    assert 0 < len(recent) < 40
    for question in ("sync", "password", "invoice billing plan", "share a folder"):
        hits = search_articles(query=question, max_results=20, updated_after=day).hits
        assert {hit.id for hit in hits} <= recent, question
        everything = search_articles(query=question, max_results=20).hits
        # Nothing recent that the unfiltered search finds is lost by filtering.
        assert {hit.id for hit in everything} & recent <= {hit.id for hit in hits}
