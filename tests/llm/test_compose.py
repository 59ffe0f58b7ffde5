"""The offline composer's parts: reading the details of a question, cutting an article into
units, and choosing and saying the unit that answers (no database: articles are given)."""

from __future__ import annotations

import pytest

from chat.llm import compose, compose_say
from chat.llm.compose import Article, Weights

REFUNDS = """# Refunds

## Cancel a subscription

- **Plus:** **Settings > Billing > Cancel plan**.
- **Team and Business:** the owner opens **Admin console > Billing > Cancel subscription**.

Cancelling stops the next renewal.

## Refund policy

| Situation | Refund |
|---|---|
| Monthly plan | No refund for the current month |
| First annual purchase, cancelled within 30 days | Full refund |
| First annual purchase, cancelled after 30 days | No refund |

Customers in the EU and the UK also have a 14-day right to withdraw.

## Get a refund

1. Open the cancel flow.
2. Choose **Cancel and request refund**:
   - on the web, under Billing;
   - on a phone, under Settings.
3. Wait 5 to 10 business days.

Run this to check:

```
nimbus refunds --list
```
"""
OTHER = "# Storage\n\n## Quotas\n\nFree has 5 GB of storage. Team pools storage per user.\n"


@pytest.fixture
def articles() -> list[Article]:
    return [
        Article("kb_1", "Refunds", "https://help.example/refunds", REFUNDS),
        Article("kb_2", "Storage", "https://help.example/storage", OTHER),
    ]


@pytest.fixture
def weights(articles: list[Article]) -> Weights:
    return Weights(a.title + " " + a.content for a in articles)


@pytest.mark.parametrize(
    ("text", "facets"),
    [
        ("I'm on the Team plan", {"plan": "team"}),
        ("our team uses it a lot", {}),  # "team" as a word, not the plan
        ("We pay for Business. Is it fine?", {"plan": "business"}),
        ("the yearly plan was cheaper than monthly", {"billing": "annual"}),
        ("On my Mac it works. Now I'm on Ubuntu, how do I fix it?", {"platform": "linux"}),
        ("my samsung phone", {"platform": "android"}),
        ("I live in Austria", {"region": "eu"}),
    ],
)
def test_the_details_a_question_names(text: str, facets: dict[str, str]) -> None:
    assert compose.facets_in(text) == facets


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("I bought it yesterday", 1),
        ("about 3 weeks ago", 21),
        ("two months ago", 60),
        ("last year", 365),
        ("I bought it", None),
    ],
)
def test_how_long_ago(text: str, days: int | None) -> None:
    assert compose.days_ago(text) == days


def test_earlier_turns_fill_in_what_the_question_leaves_out() -> None:
    asked = compose.read_question("can I get a refund?", ["I'm on Plus", "bought it 5 days ago"])
    assert asked.facets == {"plan": "plus"} and asked.days == 5
    asked = compose.read_question("what about Business?", ["I'm on Plus"])
    assert asked.facets == {"plan": "business"}


@pytest.mark.parametrize(
    ("text", "foreign"),
    [
        ("¿Cómo puedo restablecer mi contraseña?", True),
        ("Kann ich eine Rückerstattung für mein Jahresabo bekommen?", True),
        ("Mon espace de stockage est plein, que faire ?", True),
        ("How do I reset my password?", False),
        ("NB-1042", False),
        ("Is the Team plan available in the EU?", False),
    ],
)
def test_another_language_is_recognised(text: str, foreign: bool) -> None:
    assert compose_say.foreign_language(text) is foreign


def test_an_article_is_cut_into_rows_items_steps_sentences_and_code() -> None:
    units = compose.article_units(REFUNDS)
    kinds = [u.kind for u in units]
    assert kinds.count("row") == 3 and kinds.count("steps") == 1 and kinds.count("code") == 1
    row = next(u for u in units if u.kind == "row" and "within 30" in u.text)
    assert row.header == ("Situation", "Refund") and row.cells[1] == "Full refund"
    steps = next(u for u in units if u.kind == "steps")
    assert "   - on the web, under Billing;" in steps.text  # nested bullets stay in their step
    intro = next(u for u in units if u.text == "Run this to check:")
    assert intro.introduces


def test_the_row_that_fits_the_period_is_said_first(
    articles: list[Article], weights: Weights
) -> None:
    asked = compose.read_question("I bought an annual plan yesterday, refund?")
    choice = compose.choose(articles, asked, weights)
    assert choice is not None and choice.article.id == "kb_1"
    assert compose_say.lead(choice.unit, asked) == (
        "**First annual purchase, cancelled within 30 days** — Refund: Full refund."
    )
    later = compose.read_question("I bought an annual plan two months ago, refund?")
    choice = compose.choose(articles, later, weights)
    assert choice is not None and "after 30 days" in choice.unit.text


def test_the_item_of_the_plan_asked_is_said(articles: list[Article], weights: Weights) -> None:
    asked = compose.read_question("How do I cancel?", ["We're on the Team plan"])
    choice = compose.choose(articles, asked, weights)
    assert choice is not None
    assert "Admin console > Billing > Cancel subscription" in compose_say.lead(choice.unit, asked)


def test_a_step_stands_for_its_whole_procedure(articles: list[Article], weights: Weights) -> None:
    asked = compose.read_question("how do I request a refund in the cancel flow")
    choice = compose.choose(articles, asked, weights)
    assert choice is not None and choice.unit.kind == "steps"
    said = compose_say.lead(choice.unit, asked)
    assert said.startswith("**Get a refund**:\n\n1. Open the cancel flow.")


def test_an_unknown_topic_is_not_answered(articles: list[Article], weights: Weights) -> None:
    asked = compose.read_question("can I send a fax with my printer?")
    choice = compose.choose(articles, asked, weights)
    assert choice is None or compose_say.confidence(choice, "can I send a fax?") == "no"


def test_an_error_code_the_article_names_is_enough(
    articles: list[Article], weights: Weights
) -> None:
    article = Article(
        "kb_3", "Codes", "u", "# Codes\n\n| Code | Meaning |\n|---|---|\n| NB-12 | Bad |\n"
    )
    asked = compose.read_question("weird NB-12 thing on my gaming rig after the holidays")
    choice = compose.choose([article], asked, Weights([article.content]))
    assert choice is not None and compose_say.confidence(choice, "NB-12 on my rig") == "sure"


def test_of_a_sentence_listing_every_plan_only_the_asked_plan_is_said() -> None:
    text = (
        "Items stay there as long as your plan keeps version history: Free 30 days, Plus 90 "
        "days, Team 180 days, Business 1 year, Enterprise as configured."
    )
    unit = compose.Unit("sentence", text, "Trash", 0, compose.stems_of(text))
    asked = compose.read_question("how long is the trash kept?", ["I'm on the Plus plan"])
    assert compose_say.lead(unit, asked) == (
        "Items stay there as long as your plan keeps version history: Plus 90 days."
    )
    # No plan asked, or a list that is not one of plans: the sentence as it is.
    assert compose_say.lead(unit, compose.read_question("how long is the trash kept?")) == text
    other = compose.Unit("sentence", "Rules: a, b, c.", "", 0, frozenset())
    assert compose_say.lead(other, asked) == "Rules: a, b, c."
