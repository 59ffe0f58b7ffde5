"""The evaluation harness: case files are validated with clear errors, every check scores what
it says (and can fail), and ``manage.py evaluate`` runs golden conversations through the real
turn pipeline and the configured chain (here the offline assistant)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chat.evaluation import (
    Answer,
    CaseError,
    Expect,
    ToolExpectation,
    aggregate,
    contains,
    load_cases,
    offered,
    score_turn,
    target_misses,
)
from chat.models import ChatSession
from tools.kb.importer import import_articles
from tools.models import Ticket

ROOT = Path(__file__).resolve().parents[2]
STARTER_KB = ROOT / "tools" / "starter_kb"
GOOD = """
cases:
  - id: refund
    kind: policy
    turns:
      - user: I bought the annual plan yesterday. Refund?
        expect:
          facts: [full refund, [30 days, thirty days]]
          not: [no refund for the current month]
          cite: [kb_009]
  - id: person
    kind: human
    turns:
      - user: Hello
      - user: I want to talk to a human please
        expect: {offer: person}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_committed_sets_load_and_keep_their_parts_apart() -> None:
    cases = load_cases(ROOT / "eval")
    parts = {case.part for case in cases}
    assert parts == {"tune", "held-out"}
    held_out = [case for case in cases if case.part == "held-out"]
    assert len(held_out) >= 40
    assert {case.kind for case in held_out} >= {"policy", "unanswerable", "other_language"}
    assert any(len(case.turns) > 1 for case in held_out)
    assert load_cases(ROOT / "eval", ["tune"]) == [c for c in cases if c.part == "tune"]


def test_a_good_file_loads(tmp_path: Path) -> None:
    write(tmp_path, "tune.yaml", GOOD)
    refund, person = load_cases(tmp_path)
    assert refund.part == "tune" and refund.kind == "policy"
    expect = refund.turns[0].expect
    assert expect is not None
    assert expect.facts == (("full refund",), ("30 days", "thirty days"))
    assert expect.cite == ("kb_009",) and expect.forbidden == ("no refund for the current month",)
    assert person.turns[0].expect is None and person.turns[1].expect == Expect(offer="person")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: [", "not YAML"),
        ("- 1\n- 2\n", "a list under 'cases'"),
        ("cases:\n  - kind: policy\n", "needs an id"),
        ("cases:\n  - id: a\n    kind: poetry\n    turns: [{user: hi}]\n", "kind must be one of"),
        ("cases:\n  - id: a\n    kind: human\n    turns: []\n", "turns must be a list"),
        ("cases:\n  - id: a\n    kind: human\n    turns: [{user: hi}]\n", "no turn has an expect"),
        ("cases:\n  - id: a\n    kind: human\n    turns: [{user: ''}]\n", "needs 'user'"),
        (
            "cases:\n  - id: a\n    kind: human\n    turns: [{user: hi, expect: {offer: fax}}]\n",
            "offer must be one of",
        ),
        (
            "cases:\n  - id: a\n    kind: human\n    turns: [{user: hi, expect: {fact: [x]}}]\n",
            "unknown expect field(s) fact",
        ),
        (
            "cases:\n  - id: a\n    kind: human\n    turns: [{user: hi, expect: {cite: kb_1}}]\n",
            "expected a list of texts",
        ),
        (
            "cases:\n  - id: a\n    kind: human\n    turns: [{user: hi, expect: {tools: [{}]}}]\n",
            "a tool is a name",
        ),
        (
            "cases:\n  - id: a\n    kind: human\n    turns: [{user: hi, extra: 1, expect: {}}]\n",
            "unknown field(s) extra",
        ),
    ],
)
def test_bad_files_are_refused_with_the_case_and_field_named(
    tmp_path: Path, text: str, message: str
) -> None:
    write(tmp_path, "tune.yaml", text)
    with pytest.raises(CaseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_cases(tmp_path)


def test_a_case_id_used_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "tune.yaml", GOOD)
    write(tmp_path, "held_out.yaml", GOOD)
    with pytest.raises(CaseError, match="appears twice"):
        load_cases(tmp_path)


def test_matching_ignores_case_emphasis_and_typography_but_not_word_boundaries() -> None:
    assert contains("You get a **Full Refund** within 30 days.", "full refund")
    assert contains("Open `Settings > Billing`", "Settings > Billing")
    assert contains("you don\u2019t  need\na card", "you don't need a card")
    assert not contains("within 130 days", "30 days")
    assert not contains("$120 a year", "$12")
    assert contains("$12/user/month", "$12")


def test_facts_score_the_share_found_and_zero_on_a_forbidden_phrase() -> None:
    expect = Expect(facts=(("full refund",), ("30 days", "thirty days")), forbidden=("no refund",))
    half = score_turn(expect, Answer("A full refund, yes."))
    assert half.scores["fact"] == 0.5 and half.failures == ["missing fact: 30 days | thirty days"]
    assert score_turn(expect, Answer("A full refund within thirty days.")).scores["fact"] == 1.0
    wrong = score_turn(expect, Answer("A full refund within 30 days, or no refund."))
    assert wrong.scores["fact"] == 0.0 and "must not say: no refund" in wrong.failures


def test_citations_score_precision_and_recall() -> None:
    expect = Expect(cite=("kb_009",), may_cite=("kb_010",))
    exact = score_turn(expect, Answer("...", citations=("kb_009", "kb_010")))
    assert exact.scores["citation_precision"] == 1.0 and exact.scores["citation_recall"] == 1.0
    noisy = score_turn(expect, Answer("...", citations=("kb_009", "kb_030", "kb_005", "kb_010")))
    assert noisy.scores["citation_precision"] == 0.5
    assert "cited beside the point: kb_030, kb_005" in noisy.failures
    silent = score_turn(expect, Answer("..."))
    assert silent.scores["citation_precision"] is None and silent.scores["citation_recall"] == 0
    nothing = Expect(cite=())
    assert score_turn(nothing, Answer("no idea")).scores["citation_precision"] == 1.0
    assert score_turn(nothing, Answer("..", citations=("kb_1",))).scores["citation_precision"] == 0
    assert (
        score_turn(Expect(offer="either"), Answer("x", citations=("kb_1",))).scores[
            "citation_precision"
        ]
        is None
    )


def test_an_offer_is_a_tool_call_or_words_that_offer_it() -> None:
    assert offered(Answer("I can open a ticket for you."), "ticket")
    assert offered(Answer("Shall I connect you with a person?"), "person")
    assert offered(Answer("ok", tools=({"tool": "request_human"},)), "person")
    assert offered(Answer("ok", tools=({"tool": "create_ticket"},)), "either")
    assert not offered(Answer("Here is the article."), "either")
    assert not offered(Answer("Here it is for each case: …"), "either")
    assert offered(Answer("I can open a case for you."), "ticket")
    assert not offered(Answer("I can open a ticket for you."), "person")


def test_tools_must_be_called_with_their_arguments_and_forbidden_ones_not() -> None:
    expect = Expect(
        tools=(ToolExpectation("fetch_status", {"ticketId": "TKT-AB12"}),),
        forbid_tools=("create_ticket",),
    )
    good = ({"tool": "fetch_status", "arguments": {"ticketId": "tkt-ab12"}},)
    assert score_turn(expect, Answer("", tools=good)).scores["tools"] == 1.0
    other_id = ({"tool": "fetch_status", "arguments": {"ticketId": "TKT-ZZZZ"}},)
    assert score_turn(expect, Answer("", tools=other_id)).scores["tools"] == 0.0
    both = (*good, {"tool": "create_ticket", "arguments": {}})
    scored = score_turn(expect, Answer("", tools=both))
    assert scored.scores["tools"] == 0.0
    assert scored.failures == ["tool called that must not be: create_ticket"]


def test_a_failed_turn_scores_zero_on_what_was_expected() -> None:
    expect = Expect(facts=(("x",),), offer="either", cite=("kb_1",))
    scored = score_turn(expect, Answer("", error="AI_SERVICE_UNAVAILABLE"))
    assert scored.scores["fact"] == 0.0 and scored.scores["offer"] == 0.0
    assert scored.failures[0] == "the turn failed: AI_SERVICE_UNAVAILABLE"


def test_aggregate_is_a_mean_per_kind_over_judged_turns_and_targets_are_checked() -> None:
    rows = [
        {"kind": "policy", "scores": {"fact": 1.0, "citation_precision": 0.5, "offer": None}},
        {"kind": "policy", "scores": {"fact": 0.5, "citation_precision": None, "offer": None}},
        {"kind": "human", "scores": {"fact": None, "citation_precision": None, "offer": 1.0}},
    ]
    table = aggregate(rows)
    assert table["policy"]["fact"] == 0.75 and table["policy"]["fact_n"] == 2
    assert table["all"]["citation_precision"] == 0.5 and table["all"]["offer"] == 1.0
    assert table["human"]["fact"] is None
    assert target_misses(table) == ["fact 0.75 < 0.85", "citation_precision 0.5 < 0.8"]


@pytest.fixture
def starter_kb(db: None) -> None:
    import_articles(path=STARTER_KB)


@pytest.mark.django_db(transaction=True)
def test_evaluate_runs_the_offline_chain_and_leaves_nothing_behind(
    tmp_path: Path, starter_kb: None, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = tmp_path / "cases"
    write(cases, "tune.yaml", GOOD)
    write(
        cases,
        "held_out.yaml",
        "cases:\n  - id: ticket\n    kind: account_action\n    turns:\n"
        "      - user: Please open a ticket, my sync is broken\n"
        "        expect: {tools: [create_ticket], offer: ticket}\n",
    )
    out = tmp_path / "run.json"
    call_command("evaluate", "--in-place", "--cases", str(cases), "--json", str(out))
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["chain"] == ["offline"]
    assert set(document["scores"]) == {"tune", "held-out"}
    assert document["scores"]["held-out"]["all"]["tools"] == 1.0
    ticket_turn = next(c for c in document["cases"] if c["id"] == "ticket")["turns"][0]
    assert [call["tool"] for call in ticket_turn["tools"]][-1] == "create_ticket"
    assert document["scores"]["tune"]["human"]["offer"] == 1.0
    assert "== held-out" in printed and "== tune" in printed
    # The held-out part's failures are not listed unless asked for.
    assert "FAIL ticket" not in printed
    # Sessions and tickets the run made are gone.
    assert not ChatSession.objects.exists() and not Ticket.objects.exists()

    call_command(
        "evaluate", "--in-place", "--cases", str(cases), "--case", "person", "--compare", str(out)
    )
    assert "== compared with the earlier run" in capsys.readouterr().out


@pytest.mark.django_db
def test_evaluate_refuses_bad_options(tmp_path: Path) -> None:
    write(tmp_path, "tune.yaml", "cases: [")
    with pytest.raises(CommandError, match="not YAML"):
        call_command("evaluate", "--in-place", "--cases", str(tmp_path))
    write(tmp_path, "tune.yaml", GOOD)
    with pytest.raises(CommandError, match="no case matches"):
        call_command("evaluate", "--in-place", "--cases", str(tmp_path), "--case", "nope")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("evaluate", "--cases", str(tmp_path), "--kb", str(tmp_path / "missing"))
