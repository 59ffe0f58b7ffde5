"""Composed offline answers: the part of the best article that answers the question, said first.

The offline assistant (``chat.llm.offline``) gets search hits; this module reads the articles
behind them and picks one *unit* to answer with — a table row, a list item, a sentence, or a
whole numbered procedure — by how well it matches the question's words (weighted by how rare
each word is in the knowledge base) and its details: the plan, platform and billing period it
names, and how long ago something happened ("yesterday" fits "within 30 days", not "after 30
days"). A detail said in an earlier turn ("I'm on Plus") still counts when the question does not
name another. The answer is that unit as a sentence, a little of its context, and the article
it came from; nothing else is cited.

Everything is deterministic and needs no model: the same question over the same articles gives
the same answer.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from chat.llm.vocabulary import CAPITALISED_PLAN, CONCEPTS, FACETS, FILLER, PLAN_CONTEXT
from tools.kb.passages import content_blocks, stem
from tools.kb.query import STOP_WORDS, TOKEN_RE

STEP_QUESTION = re.compile(
    r"\b(how\s+(do|can|should|would)|how\s+to|where\s+(do|can|is)|steps?\b|set\s*up|install|"
    r"commands?\b|"
    r"turn\s+on|enable|configure|create|change|make|add|restore|recover|reset|back\s+up)\b",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2,
    "few": 3,
}  # fmt: skip
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_AGO = re.compile(
    r"\b(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|couple of|few)"
    r"\s+(day|week|month|year)s?\s+(ago|back|in)\b|\b(last|past)\s+(day|week|month|year)\b|"
    r"\b(yesterday|today|this morning|just now)\b",
    re.IGNORECASE,
)
_WITHIN = re.compile(r"\bwithin\s+(\d+)\s+(day|week|month|year)s?", re.IGNORECASE)
_AFTER = re.compile(r"\bafter\s+(\d+)\s+(day|week|month|year)s?", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*`\"(])")
_LIST_ITEM = re.compile(r"^(\s*)([-*]|\d+\.)\s+(.*)$")

FACET_BONUS = 2.0
FACET_PENALTY = 4.0
PERIOD_BONUS = 3.0
PERIOD_PENALTY = 5.0
HEADING_WEIGHT = 1.0
SECTION_WEIGHT = 0.5
TITLE_WEIGHT = 0.5
MAX_CONTEXT_CHARS = 500
# The share of the question's weight (words no article uses weigh most) the chosen article must
# hold for its answer to be given; below it the question is about something the help centre
# does not cover. An error code the article names is enough on its own.
MIN_COVERAGE = 0.35
# Between these and MIN_COVERAGE the answer is given as a likely one, with a ticket and a person
# offered in case it is not: a chatty question ("my mother passed away in March…") holds many
# words no article uses, like a question about something the help centre does not cover.
TENTATIVE_COVERAGE = 0.15
TENTATIVE_EVIDENCE = 4.5  # the summed weight of the question's words the article holds


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    url: str
    content: str


@dataclass(frozen=True)
class Question:
    """What the composer looks for: the question's word stems (with their concepts), the
    details it names (or an earlier turn named), and how many days ago something happened."""

    stems: frozenset[str]
    facets: dict[str, str]
    days: int | None
    steps: bool
    percent: float | None = None


@dataclass(frozen=True)
class Unit:
    kind: str  # "row", "item", "sentence", "steps", "code"
    text: str  # Markdown as the article has it
    heading: str
    order: int
    stems: frozenset[str]
    header: tuple[str, ...] = ()  # a row's table header
    cells: tuple[str, ...] = ()  # a row's cells
    block: int = 0  # which block of the article it came from
    introduces: bool = False  # a sentence ending in a colon before a list or code ("Run:")


@dataclass(frozen=True)
class Choice:
    article: Article
    unit: Unit
    score: float
    coverage: float  # the share of the question's weight the article holds
    evidence: float  # that weight itself
    units: tuple[Unit, ...] = field(default=())


def stems_of(text: str) -> frozenset[str]:
    return frozenset(stem(word) for word in TOKEN_RE.findall(text.lower()))


def question_stems(text: str) -> frozenset[str]:
    """The stems a question is about: stop words and filler dropped, concepts added."""
    stems: set[str] = set()
    for word in TOKEN_RE.findall(text.lower().replace("\u2019", "'")):
        if word in STOP_WORDS or word in FILLER or len(word) < 2:
            continue
        stems.add(stem(word))
        stems.update(stem(concept) for concept in CONCEPTS.get(word, ()))
    # An error code is one thing: "NB-1042" as well as its parts.
    for code in re.findall(r"\b[A-Za-z]{1,8}-\d{2,8}\b", text):
        stems.add(code.lower())
    return frozenset(stems)


def facets_in(text: str) -> dict[str, str]:
    """The details ``text`` names: {"plan": "team", "platform": "linux", "billing": "annual"}.

    Of several values of one kind, the last sentence that names any decides ("On my Mac … Now
    I'm on Ubuntu, how do I …" is about Ubuntu), and within it the first one named ("the yearly
    plan, cheaper than monthly" is about the yearly one)."""
    found: dict[str, str] = {}
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        for kind, value in _facets_of_sentence(sentence).items():
            found[kind] = value
    return found


def _facets_of_sentence(sentence: str) -> dict[str, str]:
    named: dict[str, list[tuple[int, str]]] = {}
    for m in PLAN_CONTEXT.finditer(sentence):
        named.setdefault("plan", []).append((m.start(), (m.group("plan") or m.group("plan2"))))
    for m in CAPITALISED_PLAN.finditer(sentence):
        named.setdefault("plan", []).append((m.start(), m.group(1)))
    lowered = sentence.lower()
    for m in TOKEN_RE.finditer(lowered):
        for kind, values in FACETS.items():
            if kind == "plan":
                continue
            for value, names in values.items():
                if m.group() in names:
                    named.setdefault(kind, []).append((m.start(), value))
    return {kind: min(places)[1].lower() for kind, places in named.items()}


def days_ago(text: str) -> int | None:
    """How many days ago the question's event happened ("yesterday" 1, "two months ago" 60)."""
    match = _AGO.search(text)
    if match is None:
        return None
    if match.group(6):
        return {"yesterday": 1}.get(match.group(6).lower(), 0)
    if match.group(4):
        return _UNIT_DAYS[match.group(5).lower()]
    count = match.group(1).lower()
    number = int(count) if count.isdigit() else _NUMBER_WORDS[count.split()[0]]
    return number * _UNIT_DAYS[match.group(2).lower()]


def read_question(text: str, earlier: Sequence[str] = ()) -> Question:
    """``text`` as the composer sees it; details from ``earlier`` user turns (oldest first)
    fill in the kinds the question itself does not name."""
    facets: dict[str, str] = {}
    days: int | None = None
    percent: float | None = None
    for said in (*earlier, text):
        facets.update(facets_in(said))
        days = days if (found := days_ago(said)) is None else found
        percent = percent if (m := _PERCENT.search(said)) is None else float(m.group(1))
    return Question(
        stems=question_stems(text),
        facets=facets,
        days=days,
        steps=bool(STEP_QUESTION.search(text)),
        percent=percent,
    )


# --- articles as units -------------------------------------------------------------------------


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


@functools.lru_cache(maxsize=4096)
def article_units(content: str) -> tuple[Unit, ...]:
    """Every unit of an article, in order: rows of tables, items of lists, whole numbered
    lists, sentences of paragraphs and code blocks."""
    units: list[Unit] = []
    for index, (heading, block) in enumerate(content_blocks(content)):
        lines = block.splitlines()
        if lines[0].lstrip().startswith("```"):
            units.append(Unit("code", block, heading, len(units), frozenset(), block=index))
        elif len(lines) > 2 and all(line.lstrip().startswith("|") for line in lines):
            header = _cells(lines[0])
            for row in lines[2:]:
                cells = _cells(row)
                stems = stems_of(" ".join(cells))
                units.append(
                    Unit("row", row, heading, len(units), stems, header, cells, block=index)
                )
        elif _LIST_ITEM.match(lines[0]):
            units += _list_units(lines, heading, len(units), index)
        else:
            units += _sentence_units(" ".join(lines), heading, len(units), index)
    for n, unit in enumerate(units[:-1]):
        nxt = units[n + 1]
        if unit.kind == "sentence" and unit.text.endswith(":") and nxt.heading == unit.heading:
            units[n] = replace(unit, introduces=nxt.kind in ("code", "item", "steps"))
    return tuple(units)


def _list_units(lines: list[str], heading: str, start: int, block: int) -> list[Unit]:
    items: list[list[str]] = []
    for line in lines:
        match = _LIST_ITEM.match(line)
        if match and not match.group(1):
            items.append([line])
        elif items:
            items[-1].append(line)
        else:
            items.append([line])
    units = [
        Unit("item", "\n".join(item), heading, start + n, stems_of(" ".join(item)), block=block)
        for n, item in enumerate(items)
    ]
    first = _LIST_ITEM.match(lines[0])
    if first and first.group(2)[0].isdigit():
        text = "\n".join(lines)
        units.append(Unit("steps", text, heading, start + len(units), stems_of(text), block=block))
    return units


def _sentence_units(paragraph: str, heading: str, start: int, block: int) -> list[Unit]:
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if sentences and sentences[-1].endswith("?"):
            sentences[-1] += " " + sentence  # "No email after 10 minutes? Check your spam."
        else:
            sentences.append(sentence)
    return [
        Unit("sentence", s, heading, start + n, stems_of(s), block=block)
        for n, s in enumerate(sentences)
    ]


# --- choosing ----------------------------------------------------------------------------------


class Weights:
    """How rare each stem is across the articles (inverse document frequency)."""

    def __init__(self, articles: Iterable[str]) -> None:
        documents = [stems_of(text) | codes_in(text) for text in articles]
        self.count = max(1, len(documents))
        self.frequency: dict[str, int] = {}
        for stems in documents:
            for word in stems:
                self.frequency[word] = self.frequency.get(word, 0) + 1

    def __call__(self, stem: str) -> float:
        # A word no article uses weighs most: a question about it is not answered here.
        return math.log((self.count + 1) / (self.frequency.get(stem, 0) + 0.5))


def codes_in(text: str) -> frozenset[str]:
    return frozenset(c.lower() for c in re.findall(r"\b[A-Za-z]{1,8}-\d{2,8}\b", text))


def facet_score(text: str, question: Question) -> float:
    score = 0.0
    words = set(TOKEN_RE.findall(text.lower()))
    for kind, asked in question.facets.items():
        values = FACETS[kind]
        named = {value for value, names in values.items() if words & set(names)}
        if asked in named:
            # "Team 180 days" says more about Team than "Free 30 days, Plus 90, Team 180".
            score += FACET_BONUS / len(named)
        elif named:
            score -= FACET_PENALTY
    return score


def period_score(text: str, days: int | None) -> float:
    if days is None:
        return 0.0
    score = 0.0
    for pattern, fits in ((_WITHIN, lambda n: days <= n), (_AFTER, lambda n: days > n)):
        for match in pattern.finditer(text):
            limit = int(match.group(1)) * _UNIT_DAYS[match.group(2).lower()]
            score += PERIOD_BONUS if fits(limit) else -PERIOD_PENALTY
    return score


_AT_LEAST = re.compile(r"\bat least\s+(\d+(?:\.\d+)?)%")
_BELOW = re.compile(r"\bbelow\s+(\d+(?:\.\d+)?)%")
_PERCENT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*%")


def range_score(text: str, percent: float | None) -> float:
    """A row that states a range of percentages ("at least 95.0% but below 99.0%") fits a
    question's figure ("98% uptime") or does not."""
    if percent is None:
        return 0.0
    score = 0.0
    for pattern, fits in ((_AT_LEAST, lambda n: percent >= n), (_BELOW, lambda n: percent < n)):
        for match in pattern.finditer(text):
            score += PERIOD_BONUS if fits(float(match.group(1))) else -PERIOD_PENALTY
    return score


def unit_score(unit: Unit, question: Question, weight: Weights) -> float:
    if unit.kind == "code":
        return 0.0
    stems = unit.stems | (codes_in(unit.text) if "-" in unit.text else frozenset())
    heading = stems_of(" ".join((unit.heading, *unit.header)))
    score = sum(weight(s) for s in question.stems & stems)
    score += HEADING_WEIGHT * sum(weight(s) for s in (question.stems & heading) - stems)
    if score <= 0:
        return 0.0
    score += facet_score(unit.text, question) + period_score(unit.text, question.days)
    score += range_score(unit.text, question.percent)
    if unit.kind == "steps" or unit.introduces:
        score = score + 1.0 if question.steps else score - 2.0
    return score


def _whole_procedure(unit: Unit, units: Sequence[Unit]) -> Unit:
    """A step of a numbered procedure stands for the whole procedure: steps stay steps."""
    if unit.kind != "item":
        return unit
    return next((u for u in units if u.kind == "steps" and u.block == unit.block), unit)


def _best_unit(units: Sequence[Unit], question: Question, weight: Weights) -> Unit:
    """The unit that answers best. A unit of the section that, as a whole, is about the question
    ("Lost or stolen phone") beats a stray sentence elsewhere that shares a word or two."""
    sections: dict[str, set[str]] = {}
    for unit in units:
        sections.setdefault(unit.heading, set(stems_of(unit.heading))).update(unit.stems)
    topic = {h: sum(weight(s) for s in question.stems & st) for h, st in sections.items()}

    def total(unit: Unit) -> tuple[float, int]:
        own = unit_score(unit, question, weight)
        return (own + SECTION_WEIGHT * topic[unit.heading] if own > 0 else 0.0), -unit.order

    return max(units, key=total)


def choose(articles: Sequence[Article], question: Question, weight: Weights) -> Choice | None:
    """The best unit of the best of ``articles`` (search order breaks ties), or None."""
    best: Choice | None = None
    total = sum(weight(s) for s in question.stems) or 1.0
    for rank, article in enumerate(articles):
        units = article_units(article.content)
        if not units:
            continue
        scored = _whole_procedure(_best_unit(units, question, weight), units)
        held = stems_of(article.title + " " + article.content) | codes_in(article.content)
        evidence = sum(weight(s) for s in question.stems & held)
        coverage = evidence / total
        # An article whose title names what is asked ("Fixing NB-1042") is about it; earlier
        # search hits win close calls (the search weighed titles and tags too).
        title = stems_of(article.title) | codes_in(article.title)
        score = unit_score(scored, question, weight) + coverage * 4.0 - rank * 0.5
        score += TITLE_WEIGHT * sum(weight(s) for s in question.stems & title)
        if best is None or score > best.score:
            best = Choice(article, scored, score, coverage, evidence, units)
    return best
