"""Leak check on the model's answers (``check_reply``): an answer that quotes the system prompt
verbatim or nearly so is blocked before the customer sees it."""

from __future__ import annotations

import re
from functools import lru_cache

from chat.guards.content.normalise import plain
from chat.guards.content.verdict import BLOCK_AT, ContentVerdict

SHINGLE = 4  # words per shingle: long enough to be specific, short enough for near-verbatim
LEAK_SECTION_SHARE = 0.4  # share of one section's shingles that makes a leak
# Sections with fewer shingles count only towards the total: a one-line rule such as "never ask
# for passwords, full card numbers, one-time codes or recovery codes" is also plain good advice.
LEAK_SECTION_MIN = 12
LEAK_TOTAL = 16  # shingles from anywhere in the prompt that make a leak
# ... or this many sections each sharing a run of at least six words (SHINGLE + 2): a few lines.
LEAK_LINES = 3
LEAK_LINE_SHINGLES = 3
_WORD = re.compile(r"\w+")
_BULLET = re.compile(r"(?:[-*•]|\d+[.)])\s")


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(plain(text))
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


@lru_cache(maxsize=8)
def _prompt_sections(system_prompt: str) -> tuple[frozenset[tuple[str, ...]], ...]:
    """The prompt's paragraphs and list items (a heading line stands alone), as shingle sets."""
    sections: list[list[str]] = []
    open_section = False
    for line in system_prompt.splitlines():
        stripped = line.strip()
        if not stripped:
            open_section = False
            continue
        if not open_section or _BULLET.match(stripped):
            sections.append([])
        sections[-1].append(stripped)
        open_section = not stripped.endswith(":")
    return tuple(frozenset(_shingles(" ".join(lines))) for lines in sections)


def check_reply(reply: str, system_prompt: str) -> ContentVerdict:
    """Verdict on the model's answer: "block" when it leaks the system prompt, else "allow".

    A leak is verbatim or near-verbatim overlap in word shingles: at least ``LEAK_SECTION_SHARE``
    of one substantial section (a paragraph or list item), ``LEAK_TOTAL`` shingles from anywhere,
    or ``LEAK_LINES`` sections that each share a run of six words or more (a few lines quoted).
    Answers that merely use the prompt's vocabulary (Nimbus, ticket, the tool names, "a human
    agent") share a shingle or two and pass.
    """
    if not reply.strip() or not system_prompt.strip():
        return ContentVerdict.ALLOW
    said = _shingles(reply)
    if not said:
        return ContentVerdict.ALLOW
    total = 0
    lines = 0
    best = 0.0
    for section in _prompt_sections(system_prompt):
        common = len(section & said)
        total += common
        lines += common >= LEAK_LINE_SHINGLES
        if len(section) >= LEAK_SECTION_MIN:
            best = max(best, common / len(section))
    if not total:
        return ContentVerdict.ALLOW
    # Scaled so that a leak scores BLOCK_AT or more, like a blocked message.
    ratio = max(best / LEAK_SECTION_SHARE, total / LEAK_TOTAL, lines / LEAK_LINES)
    score = round(min(1.0, BLOCK_AT * ratio), 4)
    leaked = ratio >= 1.0
    return ContentVerdict(
        action="block" if leaked else "allow",
        categories=("system_prompt_extraction",) if leaked else (),
        score=score,
        reasons=(f"leak:section:{best:.2f}", f"leak:shingles:{total}", f"leak:lines:{lines}"),
    )
