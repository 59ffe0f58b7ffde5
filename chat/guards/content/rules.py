"""The content filter's rule language: a ``Rule`` is a weighted regular expression over
normalised text, compiled from a row of ``rule_data``; ``scan`` gives the rules a text matches.

A space in a rule's pattern stands for any gap between words, `` ?`` for an optional one;
accents are dropped from patterns as from the text. Every rule but those with look-behinds,
concept rules and those marked ``squash=False`` also gets a "squashed" form, for text whose
spacing an attacker removed ("i g n o r e" joined to "ignore").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from chat.guards.content.normalise import strip_marks
from chat.guards.content.rule_data import RULE_SPECS, RuleSpec

_GAP = r"[\W_]+"  # what a space in a rule's pattern stands for


@dataclass(frozen=True)
class Rule:
    """A weighted pattern over normalised text (lower case, no accents; a space = any gap)."""

    name: str
    category: str
    weight: float
    needs: frozenset[str]  # one of these substrings must be in the text for the pattern to run
    pattern: re.Pattern[str]
    squashed: re.Pattern[str] | None  # the same without gaps, for text whose spacing was removed
    unless: re.Pattern[str] | None  # a benign context that cancels the rule
    example: str  # a message the rule must match (tests hold every rule to its example)
    # Concept rules: these must match too, in the same window of two sentences as the pattern.
    all_of: tuple[re.Pattern[str], ...] = ()


def compile_rule(spec: RuleSpec) -> Rule:
    """A row of the rule table compiled: accents dropped, gaps, and the squashed form."""
    source = strip_marks(spec.source)
    squashed = None
    if spec.squash and not spec.all_of and "(?<" not in source:
        squashed = re.compile(_squashed_source(source))
    return Rule(
        name=spec.name,
        category=spec.category,
        weight=spec.weight,
        needs=frozenset(spec.needs.split()),
        pattern=re.compile(source.replace(" ?", r"[\W_]*").replace(" ", _GAP)),
        squashed=squashed,
        unless=re.compile(spec.unless.replace(" ", _GAP)) if spec.unless else None,
        example=spec.example,
        all_of=tuple(re.compile(strip_marks(a).replace(" ", _GAP)) for a in spec.all_of),
    )


def _squashed_source(source: str) -> str:
    """A rule's pattern for text without gaps. Runs of skipped words become one bounded run of
    letters: ``(?:\\w{1,12}){0,4}`` would split a long run of letters in exponentially many ways."""

    def letters(match: re.Match[str]) -> str:
        return rf"\w{{0,{12 * int(match[1] or 1)}}}?"

    source = re.sub(r"\(\?: \\w\+\)(?:\{0,(\d+)\}|\?)\??", letters, source)
    source = re.sub(r"\(\?:\\w\+ \)(?:\{0,(\d+)\}|\?)\??", letters, source)
    return source.replace(" ?", "").replace(" ", "").replace(r"\b", "").replace(r"\w+", r"\w{1,12}")


RULES: tuple[Rule, ...] = tuple(compile_rule(spec) for spec in RULE_SPECS)
_ALL_NEEDS: Final = tuple(sorted({need for rule in RULES for need in rule.needs}))


def scan(text: str, *, squashed: bool = False) -> list[Rule]:
    """The rules that match ``text`` (``squashed``: text with its gaps removed)."""
    present = {need for need in _ALL_NEEDS if need in text}
    if not present:
        return []
    hits = []
    for rule in RULES:
        if rule.needs.isdisjoint(present):
            continue
        pattern = rule.squashed if squashed else rule.pattern
        if pattern is None or not pattern.search(text):
            continue
        if rule.all_of and not _together(rule, text):
            continue
        if rule.unless is not None and rule.unless.search(text):
            continue
        hits.append(rule)
    return hits


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def _together(rule: Rule, text: str) -> bool:
    """Whether a concept rule's patterns all match one sentence, or two that follow each other."""
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    windows = [" ".join(sentences[i : i + 2]) for i in range(max(1, len(sentences) - 1))]
    return any(
        rule.pattern.search(window) and all(p.search(window) for p in rule.all_of)
        for window in windows
    )
