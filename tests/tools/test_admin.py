"""Staff edit articles in the Django admin; every change reaches the search index at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tools.kb.importer import import_articles
from tools.kb.search import search_articles
from tools.models import Article

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client: Client) -> Client:
    import_articles(path=STARTER_KB)
    user = User.objects.create_superuser("editor", "editor@example.com", "a long passphrase 1")
    client.force_login(user)
    return client


def form_data(article: Article, **changes: str) -> dict[str, str]:
    data = {
        "title": article.title,
        "category": article.category,
        "tags": ", ".join(article.tags),
        "language": article.language,
        "url": article.url,
        "updated": article.updated.isoformat(),
        "content": article.content,
    }
    data.update(changes)
    return data


def test_changelist_lists_searches_and_filters_articles(staff: Client) -> None:
    page = staff.get("/admin/tools/article/")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 40

    found = staff.get("/admin/tools/article/", {"q": "password"})
    assert "kb_002" in {a.id for a in found.context["cl"].result_list}

    billing = staff.get("/admin/tools/article/", {"category": "billing"})
    assert {a.category for a in billing.context["cl"].result_list} == {"billing"}
    assert billing.context["cl"].result_count == 5


def test_change_form_shows_tags_as_words_and_the_id_read_only(staff: Client) -> None:
    page = staff.get("/admin/tools/article/kb_002/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert form.initial["tags"] == "password, reset, forgot-password, sign-in, lockout"
    assert "id" not in form.fields


def test_editing_an_article_in_the_admin_updates_search(staff: Client) -> None:
    article = Article.objects.get(id="kb_027")
    content = article.content.replace("Slack", "Chatterbox").replace("slack", "chatterbox")
    response = staff.post(
        "/admin/tools/article/kb_027/change/",
        form_data(
            article,
            title="Using Nimbus with Chatterbox",
            tags="chatterbox, Integrations, chatterbox",
            content=content,
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors

    article.refresh_from_db()
    assert article.tags == ["chatterbox", "integrations"]
    assert search_articles(query="chatterbox notifications").hits[0].id == "kb_027"
    assert "kb_027" not in {h.id for h in search_articles(query="slack", max_results=20).hits}


def test_adding_and_deleting_in_the_admin_updates_search(staff: Client) -> None:
    response = staff.post(
        "/admin/tools/article/add/",
        {
            "id": "kb_100",
            "title": "Printing from Nimbus",
            "category": "Sync",
            "tags": "printing",
            "language": "en",
            "url": "",
            "updated": "2026-11-01",
            "content": "Open the file and press **Print** on the Quokka printer.",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Article.objects.get(id="kb_100").category == "sync"
    assert search_articles(query="print on my quokka printer").hits[0].id == "kb_100"

    response = staff.post("/admin/tools/article/kb_100/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert search_articles(query="quokka").hits == []


def test_the_admin_refuses_an_id_without_the_kb_prefix(staff: Client) -> None:
    response = staff.post(
        "/admin/tools/article/add/",
        {
            "id": "printing",
            "title": "Printing",
            "category": "sync",
            "tags": "",
            "language": "en",
            "url": "",
            "updated": "2026-11-01",
            "content": "Body",
        },
    )
    assert response.status_code == 200
    assert "id" in response.context["adminform"].form.errors
    assert not Article.objects.filter(id="printing").exists()
