"""``manage.py loadkb`` and ``import_articles``: idempotent upserts; bad files reported, skipped."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tools.kb.importer import import_articles
from tools.kb.search import search_articles
from tools.models import Article

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"

pytestmark = pytest.mark.django_db

GOOD = """---
id: kb_500
title: "Printing from Nimbus"
category: Sync
tags: [printing, Desktop-App, printing]
url: https://help.nimbus.example/articles/printing
language: en
updated: 2026-05-04
---

# Printing from Nimbus

Open the file and choose **File > Print**.
"""


def loadkb(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("loadkb", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_loadkb_without_path_loads_the_starter_kb_and_a_second_run_changes_nothing() -> None:
    out, err = loadkb()
    assert "40 created, 0 updated, 0 unchanged" in out
    assert err == ""
    assert Article.objects.count() == 40
    first = {a.id: (a.modified, a.content) for a in Article.objects.all()}

    out, _ = loadkb()
    assert "0 created, 0 updated, 40 unchanged" in out
    assert Article.objects.count() == 40
    assert {a.id: (a.modified, a.content) for a in Article.objects.all()} == first


def test_starter_articles_keep_their_front_matter() -> None:
    loadkb()
    article = Article.objects.get(id="kb_002")
    assert article.title == "Resetting or changing your password"
    assert article.category == "account"
    assert article.tags == ["password", "reset", "forgot-password", "sign-in", "lockout"]
    assert article.url == "https://help.nimbus.example/articles/reset-password"
    assert article.language == "en"
    assert article.updated == dt.date(2026, 3, 17)
    assert article.content.startswith("# Resetting or changing your password")
    assert "---" not in article.content.splitlines()[0]


def test_fields_are_normalised_and_validated(tmp_path: Path) -> None:
    (tmp_path / "printing.md").write_text(GOOD)
    report = import_articles(path=tmp_path)
    assert report.created == ["kb_500"]
    article = Article.objects.get(id="kb_500")
    assert article.category == "sync"
    assert article.tags == ["printing", "desktop-app"]


def test_changed_file_updates_its_article_and_the_index(tmp_path: Path) -> None:
    path = tmp_path / "printing.md"
    path.write_text(GOOD)
    import_articles(path=tmp_path)
    path.write_text(GOOD.replace("choose **File > Print**", "press the quokka button"))

    report = import_articles(path=tmp_path)
    assert (report.created, report.updated, report.unchanged) == ([], ["kb_500"], [])
    assert search_articles(query="quokka button").hits[0].id == "kb_500"


def test_file_without_id_gets_a_stable_id_from_its_name(tmp_path: Path) -> None:
    (tmp_path / "printing.md").write_text(GOOD.replace("id: kb_500\n", ""))
    first = import_articles(path=tmp_path)
    second = import_articles(path=tmp_path)
    assert first.created == ["kb_printing"]
    assert second.unchanged == ["kb_printing"]
    assert Article.objects.count() == 1


BAD_FILES = {
    "bad-yaml.md": "---\ntitle: [unclosed\ncategory: sync\n---\nBody\n",
    "no-title.md": "---\nid: kb_601\ncategory: sync\n---\nBody\n",
    "bad-url.md": '---\nid: kb_602\ntitle: T\ncategory: sync\nurl: "javascript:alert(1)"\n---\nB\n',
    "bad-tags.md": '---\nid: kb_603\ntitle: "T"\ncategory: sync\ntags: "one, two"\n---\nBody\n',
    "bad-id.md": '---\nid: "DROP TABLE"\ntitle: "T"\ncategory: sync\n---\nBody\n',
    "bad-date.md": '---\nid: kb_604\ntitle: "T"\ncategory: sync\nupdated: yesterday\n---\nB\n',
    "not-a-mapping.md": "---\n- just\n- a list\n---\nBody\n",
    "unclosed.md": '---\nid: kb_605\ntitle: "T"\ncategory: sync\nBody without a closing line\n',
    "empty-body.md": '---\nid: kb_606\ntitle: "T"\ncategory: sync\n---\n\n',
    "z-duplicate.md": GOOD.replace("Printing from Nimbus", "Another printing article"),
}


def test_malformed_files_are_reported_by_name_and_the_rest_imported(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text(GOOD)
    (tmp_path / "README.md").write_text("# Notes\n\nNot an article: no front matter.\n")
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "latin1.md").write_bytes("---\ntitle: caf\xe9\n---\n".encode("latin-1"))

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"11 file\(s\) could not be imported"):
        call_command("loadkb", str(tmp_path), stdout=out, stderr=err)

    assert "1 created, 0 updated, 0 unchanged, 11 with errors" in out.getvalue()
    problems = err.getvalue()
    assert "Traceback" not in problems
    for name in [*BAD_FILES, "latin1.md"]:
        assert f"skipped {name}: " in problems
    assert "README.md" not in problems  # no front matter: not an article, not an error
    assert "skipped bad-yaml.md: front matter is not valid YAML" in problems
    assert "skipped no-title.md: title: Field required" in problems
    assert "skipped bad-url.md: url: Value error, must be an http(s) URL" in problems
    assert "skipped z-duplicate.md: id kb_500 is also used by good.md" in problems
    assert list(Article.objects.values_list("id", flat=True)) == ["kb_500"]
    assert Article.objects.get(id="kb_500").title == "Printing from Nimbus"


def test_import_report_lists_files_without_front_matter_as_skipped() -> None:
    report = import_articles(path=STARTER_KB)
    assert report.skipped == ["README.md"]
    assert report.errors == []
    assert report.imported == 40


def test_a_single_file_can_be_imported(tmp_path: Path) -> None:
    shutil.copy(STARTER_KB / "02-reset-password.md", tmp_path / "one.md")
    out, _ = loadkb(str(tmp_path / "one.md"))
    assert "1 created" in out
    assert list(Article.objects.values_list("id", flat=True)) == ["kb_002"]


def test_missing_path_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        loadkb(str(tmp_path / "nowhere"))
