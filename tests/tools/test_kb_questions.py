"""The labelled question set of ``bench.kb_bench`` is well-formed and covers the starter articles.

A benchmark is only as good as its labels: these checks keep a hand-edited JSON-lines file from
drifting (an article renamed away, a typo in an id, a question pasted twice, a kind that the
benchmark does not report), so a change in the figures means a change in the search. They read
files only and need no database.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from bench.kb_bench import KINDS, QUESTIONS, load_questions
from tools.kb.importer import parse_article_file

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"

MIN_QUESTIONS = 150
MIN_PER_ARTICLE = 3
MIN_PER_KIND = {"typo": 25, "multi": 15, "paraphrase": 10, "error_code": 10, "short": 10}
SHORT_MAX_WORDS = 5


@functools.cache
def rows() -> list[dict[str, Any]]:
    """The raw JSON objects of the question file, one per non-blank line."""
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@functools.cache
def articles() -> dict[str, str]:
    """Article id -> title, parsed the way ``import_articles`` parses them (README skipped)."""
    parsed = [parse_article_file(path) for path in sorted(STARTER_KB.glob("[0-9]*.md"))]
    return {values["id"]: values["title"] for values in parsed}


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def test_the_starter_kb_has_its_40_articles() -> None:
    assert sorted(articles()) == [f"kb_{n:03d}" for n in range(1, 41)]


def test_every_line_is_a_question_object() -> None:
    for number, line in enumerate(QUESTIONS.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)  # a blank or broken line fails here, naming nothing else
        assert set(row) == {"q", "relevant", "kind"}, f"line {number}"
        assert isinstance(row["q"], str) and row["q"].strip() == row["q"] != "", f"line {number}"
        assert isinstance(row["relevant"], list) and row["relevant"], f"line {number}"
        assert all(isinstance(i, str) for i in row["relevant"]), f"line {number}"
        assert len(set(row["relevant"])) == len(row["relevant"]), f"line {number}"
        assert row["kind"] in KINDS, f"line {number}"


def test_there_are_enough_questions() -> None:
    assert len(rows()) >= MIN_QUESTIONS


def test_every_relevant_id_is_a_starter_article() -> None:
    unknown = {i for row in rows() for i in row["relevant"]} - set(articles())
    assert not unknown


def test_every_article_answers_at_least_three_questions() -> None:
    counts = Counter(i for row in rows() for i in row["relevant"])
    thin = {i: counts[i] for i in articles() if counts[i] < MIN_PER_ARTICLE}
    assert thin == {}


def test_every_kind_has_enough_questions() -> None:
    counts = Counter(row["kind"] for row in rows())
    too_few = {kind: counts[kind] for kind, least in MIN_PER_KIND.items() if counts[kind] < least}
    assert too_few == {}


def test_multi_intent_questions_name_every_article_they_ask_about() -> None:
    assert all(len(row["relevant"]) >= 2 for row in rows() if row["kind"] == "multi")


def test_error_code_questions_quote_a_code() -> None:
    # "NB-1042", "429", "nb1042": a number is what makes a question an error-code one.
    assert all(re.search(r"\d", row["q"]) for row in rows() if row["kind"] == "error_code")


def test_short_questions_are_short() -> None:
    short = [row["q"] for row in rows() if row["kind"] == "short"]
    wordy = [q for q in short if len(q.split()) > SHORT_MAX_WORDS]
    assert wordy == []


def test_no_question_is_asked_twice() -> None:
    counts = Counter(_normalised(row["q"]) for row in rows())
    assert [q for q, n in counts.items() if n > 1] == []


def test_no_question_copies_an_article_title() -> None:
    # The set measures paraphrase: a question quoting a title would be found by its title alone.
    titles = [_normalised(title) for title in articles().values()]
    copies = [row["q"] for row in rows() if any(t in _normalised(row["q"]) for t in titles)]
    assert copies == []


def test_the_benchmark_reads_every_question() -> None:
    questions = load_questions()
    assert [(q.q, list(q.relevant), q.kind) for q in questions] == [
        (row["q"], row["relevant"], row["kind"]) for row in rows()
    ]
