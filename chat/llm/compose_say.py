"""Saying a composed answer (``chat.llm.compose``): the chosen unit as a first sentence, the
context that may follow it, how sure the answer is, and the knowledge base's word weights and
articles, read once per change."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from django.db.models import Count, Max

from chat.llm.compose import (
    MAX_CONTEXT_CHARS,
    MIN_COVERAGE,
    TENTATIVE_COVERAGE,
    TENTATIVE_EVIDENCE,
    Article,
    Choice,
    Question,
    Unit,
    Weights,
    choose,
    codes_in,
    facet_score,
    period_score,
    read_question,
    stems_of,
    unit_score,
)
from chat.llm.vocabulary import ENGLISH_WORDS, FACETS, FOREIGN_WORDS
from tools.kb.query import TOKEN_RE
from tools.models import Article as StoredArticle

# --- saying it ---------------------------------------------------------------------------------

_SUPPORT_NEEDED = re.compile(
    r"\b(contact (support|your it team)|ask support|support (agent|engineer)s?|open a ticket|"
    r"support ticket)\b",
    re.IGNORECASE,
)
_MARKER = re.compile(r"^\s*(?:[-*]|\d+\.)\s+")


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?:)`*" else text + "."


def lead(unit: Unit, question: Question) -> str:
    """``unit`` as the answer's first sentence (or, for a procedure, its steps)."""
    if unit.kind == "row":
        label, values = unit.cells[0], range(1, len(unit.cells))
        wanted = [
            i for i in values if i < len(unit.header) and question.stems & stems_of(unit.header[i])
        ]
        parts = [
            f"{unit.header[i]}: {unit.cells[i]}" if i < len(unit.header) else unit.cells[i]
            for i in (wanted or values)
        ]
        return f"**{label}** — {_sentence('; '.join(parts))}"
    if unit.kind == "steps":
        title = f"**{unit.heading}**" if unit.heading else "Here are the steps"
        return f"{title}:\n\n{unit.text}"
    if unit.kind == "item":
        first, *nested = unit.text.splitlines()
        text = _sentence(_MARKER.sub("", first))
        return text + (
            "\n\n" + "\n".join(line[2:] if line.startswith("  ") else line for line in nested)
            if nested
            else ""
        )
    return _sentence(_clause_asked(unit.text, question))


ROW_MARGIN = 1.0  # how much better than the next row the chosen one must fit to stand alone


def whole_table(choice: Choice, question: Question, weight: Weights) -> str:
    """When the question does not say which row of a table (or item of a list) applies ("Can I
    get a refund?", and the refund depends on the plan and the period), the whole table or
    list, not a guess at one row."""
    unit = choice.unit
    if unit.kind not in ("row", "item"):
        return ""
    parts = [u for u in choice.units if u.kind == unit.kind and u.block == unit.block]
    scores = sorted((unit_score(u, question, weight) for u in parts), reverse=True)
    if len(scores) < 2 or scores[0] - scores[1] > ROW_MARGIN:
        return ""
    if unit.kind == "item":
        return "Here it is for each case:\n\n" + "\n".join(u.text for u in parts)
    header = "| " + " | ".join(unit.header) + " |"
    rule = "|" + "---|" * len(unit.header)
    return "Here it is for each case:\n\n" + "\n".join([header, rule, *(u.text for u in parts)])


def _clause_asked(text: str, question: Question) -> str:
    """Of a sentence listing a value per plan (or platform …) after a colon ("…history: Free 30
    days, Plus 90 days, Team 180 days"), the part before the colon and the asked one's item."""
    head, colon, listed = text.partition(": ")
    items = [item.strip() for item in re.split(r",\s*(?:and\s+|or\s+)?", listed.rstrip(". "))]
    if not colon or len(items) < 3:
        return text
    for kind, asked in question.facets.items():
        names = FACETS[kind]
        named = [
            (
                item,
                {
                    v
                    for v, words in names.items()
                    if set(TOKEN_RE.findall(item.lower())) & set(words)
                },
            )
            for item in items
        ]
        if not all(values for _, values in named):
            continue  # not a list of values of this kind
        chosen = [item for item, values in named if values == {asked}]
        if len(chosen) == 1:
            return f"{head}: {chosen[0]}"
    return text


def _fits(unit: Unit, question: Question) -> bool:
    return facet_score(unit.text, question) >= 0 and period_score(unit.text, question.days) >= 0


def context(choice: Choice, question: Question, weight: Weights) -> list[str]:
    """What may follow the first sentence: the list or code block a sentence introduces, and
    sentences of the same section that match the question too and fit its details."""
    unit = choice.unit
    if unit.kind == "steps":
        return []
    if unit.text.rstrip().endswith(":"):
        return _introduced(choice, unit, question, weight)
    extra: list[str] = []
    room = MAX_CONTEXT_CHARS
    for other in choice.units:
        if other is unit or other.heading != unit.heading or other.kind != "sentence":
            continue
        if not _fits(other, question) or len(other.text) > room:
            continue
        extra.append(_sentence(other.text))
        room -= len(other.text)
        if other.text.rstrip().endswith(":"):
            extra += _introduced(choice, other, question, weight)
            break
    return extra


def _introduced(choice: Choice, unit: Unit, question: Question, weight: Weights) -> list[str]:
    """The code block, list or table row that a sentence ending in a colon introduces ("Raise
    the limit:"); of a table, only the row that fits the question."""
    following = [u for u in choice.units if u.order > unit.order]
    if not following or following[0].heading != unit.heading:
        return []
    nxt = following[0]
    if nxt.kind == "code":
        return [nxt.text]
    block = [u for u in following if u.block == nxt.block]
    if nxt.kind == "item":
        steps = [u for u in block if u.kind == "steps"]
        if steps:
            return [steps[0].text]
        # Of a list of cases ("EU businesses …", "UK businesses …"), the ones that fit.
        items = [u.text for u in block if u.kind == "item" and _fits(u, question)]
        return ["\n".join(items)] if items else []
    if nxt.kind == "row":
        row = max(block, key=lambda u: (unit_score(u, question, weight), -u.order))
        return [lead(row, question)] if unit_score(row, question, weight) > 0 else []
    return []


def confidence(choice: Choice, question: str) -> str:
    """How surely ``choice`` answers ``question``: "sure", "likely" or "no" (it merely shares
    some words with it)."""
    codes = codes_in(question)
    if (codes and codes <= codes_in(choice.article.content)) or choice.coverage >= MIN_COVERAGE:
        return "sure"
    if choice.coverage >= TENTATIVE_COVERAGE and choice.evidence >= TENTATIVE_EVIDENCE:
        return "likely"
    return "no"


# The customer asks the assistant to do something to the account ("can you turn off my 2FA?",
# "send the refund to my new card"): the help centre can say how it works, but only a person
# can do it, so a ticket and a person are offered beside the answer.
ACTION_REQUEST = re.compile(
    r"\b(can|could|would|will)\s+(you|u|someone|somebody|support)\s+(please\s+|just\s+)?"
    r"(turn\s+off|disable|remove|reset|unlock|refund|send|change|delete|close|cancel|"
    r"transfer|move|restore|recover|give|grant|extend|waive|switch|update|fix|reverse|"
    r"reactivate|merge|rename)\b",
    re.IGNORECASE,
)


def needs_support(text: str) -> bool:
    """Whether the answer sends the customer to support (then a ticket or person is offered)."""
    return bool(_SUPPORT_NEEDED.search(text))


# --- the knowledge base, read once per change --------------------------------------------------


def foreign_language(text: str) -> bool:
    """Whether ``text`` reads as another language than English (word lists of six common
    languages against English's own small words; a word in both counts for English)."""
    words = TOKEN_RE.findall(text.lower())
    if len(words) < 3:
        return False
    english = sum(w in ENGLISH_WORDS for w in words)
    other = max(
        sum(w in set(vocab) - ENGLISH_WORDS for w in words) for vocab in FOREIGN_WORDS.values()
    )
    accented = sum(any(c in "áéíóúñüöäßàèìòùçãõâêôœ¿¡" for c in w) for w in words)
    return other + accented >= 2 and other + accented > english


_knowledge: tuple[tuple[object, ...], Weights, dict[str, Article]] | None = None
_knowledge_lock = threading.Lock()


def knowledge() -> tuple[Weights, dict[str, Article]]:
    """The word weights over every article, and the articles by id; read again only when the
    articles changed (their count or newest modification: one small query per call)."""
    global _knowledge
    aggregate = StoredArticle.objects.aggregate(n=Count("id"), last=Max("modified"))
    version = tuple(aggregate.values())
    with _knowledge_lock:
        cached = _knowledge
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
    rows = StoredArticle.objects.values_list("id", "title", "url", "content")
    articles = {row[0]: Article(*row) for row in rows.iterator()}
    weights = Weights(a.title + " " + a.content for a in articles.values())
    with _knowledge_lock:
        _knowledge = (version, weights, articles)
    return weights, articles


# --- the answer's blocks ---------------------------------------------------------------------

NOTHING_FOUND = (
    "I couldn't find anything in the help centre about that, and I'd rather not guess. I can "
    'open a ticket for you (describe the problem and say "open a ticket"), or you can talk to '
    'a person from the support team with the "Talk to a person" button.'
)
FOREIGN_LANGUAGE = (
    "Sorry, without a language model I can only answer in English, so I may have missed your "
    'question. A person from the support team can help: use the "Talk to a person" button, or '
    'describe the problem and say "open a ticket".'
)
SUPPORT_OFFER = (
    'If you\'d like, I can open a ticket for you (say "open a ticket" with the details), or you '
    'can talk to a person with the "Talk to a person" button.'
)
UNSURE_OFFER = (
    'If that isn\'t what you were asking, I can open a ticket for you (say "open a ticket"), '
    'or you can talk to a person with the "Talk to a person" button.'
)
MAX_CANDIDATES = 3  # search hits the composer reads


def answer_blocks(
    question: str,
    *,
    topic: str,
    hit_ids: Sequence[str],
    earlier: Sequence[str],
    needs_tools: bool,
) -> tuple[list[str], list[Article]]:
    """The composed answer to ``question`` (its search ``topic``, the search hits' article ids,
    best first) and the article it used; or, when nothing in the knowledge base answers, the
    plain statement of it with a ticket and a person offered."""
    if foreign_language(question) and not needs_tools:
        return [FOREIGN_LANGUAGE], []
    weights, articles = knowledge()
    candidates = [articles[i] for i in hit_ids[:MAX_CANDIDATES] if i in articles]
    asked = read_question(topic, earlier)
    choice = choose(candidates, asked, weights) if asked.stems else None
    sureness = confidence(choice, question) if choice and choice.score > 0 else "no"
    if choice is None or sureness == "no":
        return ([] if needs_tools else [NOTHING_FOUND]), []
    first = whole_table(choice, asked, weights) or lead(choice.unit, asked)
    more = context(choice, asked, weights)
    sentences = [m for m in more if "\n" not in m]
    if "\n" in first:  # a table, list or procedure: what follows is a paragraph of its own
        blocks = [first, " ".join(sentences)] if sentences else [first]
    else:
        blocks = [" ".join([first, *sentences])]
    blocks += [m for m in more if "\n" in m]
    source = choice.article
    blocks.append(f"Source: [{source.title}]({source.url})")
    offer = "" if needs_tools else _offer(blocks, question, sureness)
    return [*blocks, offer] if offer else blocks, [source]


def _offer(blocks: list[str], question: str, sureness: str) -> str:
    """A ticket and a person, offered after an unsure answer, one that sends the customer to
    support, or one to a request that the assistant act on the account ("" for none)."""
    if sureness == "likely":
        return UNSURE_OFFER
    if needs_support("\n".join(blocks)) or ACTION_REQUEST.search(question):
        return SUPPORT_OFFER
    return ""
