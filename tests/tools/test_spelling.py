"""Typo tolerance and phrase handling of knowledge search, on both databases: misspelt words find
the article anyway, glued error codes match, "log in" is not the audit log, "down" is an outage
only when something is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import spelling
from tools.kb.importer import import_articles
from tools.kb.search import search_articles
from tools.models import Article
from tools.spelling import Vocabulary, damerau

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"

pytestmark = pytest.mark.django_db


@pytest.fixture
def starter_kb() -> None:
    spelling.forget()
    import_articles(path=STARTER_KB)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("password", "password", 0),
        ("pasword", "password", 1),  # a letter missing
        ("passwordd", "password", 1),  # one too many
        ("passwoed", "password", 1),  # one changed
        ("passwrod", "password", 1),  # two swapped
        ("pswrd", "password", 3),
        ("", "abc", 3),
    ],
)
def test_damerau_distance(a: str, b: str, distance: int) -> None:
    assert damerau(a, b) == distance == damerau(b, a)


def test_the_nearest_common_word_is_chosen_and_known_words_are_left_alone() -> None:
    vocabulary = Vocabulary.build(
        ("test",), ["reset your password", "invoices and receipts", "passwords", "invoice"]
    )
    assert vocabulary.correct("pasword") == "password"
    assert vocabulary.correct("invocies") == "invoices"
    assert vocabulary.correct("password") is None  # known
    assert vocabulary.correct("pwd") is None  # too short to guess
    assert vocabulary.correct("zebra") is None  # nothing near
    assert vocabulary.correct("pssswrd") is None  # too far


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("how to chnage my passwrod", "kb_002"),
        ("where do i dowload my invocies", "kb_007"),
        ("nb1042 eror on my pc", "kb_036"),
        ("is ther an outtage right now", "kb_034"),
        ("exprot evrything before I leave", "kb_031"),
    ],
)
def test_misspelt_questions_find_their_article(starter_kb: None, question, expected) -> None:
    hits = search_articles(query=question, max_results=3).hits
    assert hits and hits[0].id == expected, [h.id for h in hits]


def test_log_in_is_about_signing_in_not_the_audit_log(starter_kb: None) -> None:
    for question in ("stay logged in on the web", "I forgot to log out on a library computer"):
        ids = [h.id for h in search_articles(query=question, max_results=3).hits]
        assert "kb_039" not in ids, (question, ids)


def test_down_is_an_outage_only_when_something_is_down(starter_kb: None) -> None:
    assert search_articles(query="is nimbus down?", max_results=1).hits[0].id == "kb_034"
    ids = [h.id for h in search_articles(query="downgrade down to the team plan").hits]
    assert "kb_034" not in ids


def test_new_articles_words_are_corrected_to_once_the_vocabulary_is_rebuilt(
    starter_kb: None,
) -> None:
    assert search_articles(query="quokkaboard setup", max_results=3).hits == []
    Article.objects.create(
        id="kb_900",
        title="Connect the Quokkaboard whiteboard",
        content="Install the Quokkaboard app and sign in with Nimbus.",
        category="integrations",
    )
    spelling.forget()  # what the next check (every 30 s) does once the articles changed
    hits = search_articles(query="quokaboard setup", max_results=3).hits
    assert hits and hits[0].id == "kb_900"
