"""Passages: the paragraph of an article that answers a question, and the block reading (by
Markdown heading: paragraphs, whole lists and tables, code blocks) that passages and the
embedding chunks (``tools.embeddings``) share.
"""

from __future__ import annotations

import functools
import re

from tools.kb.query import TOKEN_RE, Term, query_terms

PASSAGE_CHARS = 400
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ies", "ied", "ed", "es", "ly", "s")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    # A light suffix strip, enough to pair "resetting" with "reset" when picking a paragraph
    # (the database's Porter stemmer chose the article; this only picks the paragraph).
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # "resett" -> "reset", "shipp" -> "ship"
            break
    return word


def stem(word: str) -> str:
    """``word`` (lower case) with a common English suffix stripped: the light stemming passages
    are picked by, shared with the offline assistant's composer."""
    return _stem(word)


def key_terms(text: str) -> frozenset[str]:
    """The stems of the words a search would look for in ``text`` (stop words dropped): what
    two questions must share to be about the same thing (the knowledge-gap report groups by it)."""
    return frozenset(
        _stem(token)
        for term in query_terms(text)
        if term.weight >= 1.0 and not term.bonus
        for token in term.tokens
    )


def _stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in TOKEN_RE.findall(text.lower()))


def content_blocks(content: str) -> list[tuple[str, str]]:
    """(section heading, block) pairs: paragraphs, whole lists and tables, code blocks.

    The level-1 heading is the article's title, so blocks under it carry no heading.
    """
    blocks: list[tuple[str, str]] = []
    heading, fenced = "", False
    lines: list[str] = []

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            blocks.append((heading, text))
        lines.clear()

    for line in content.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append(line)
            continue
        match = None if fenced else _HEADING_RE.match(line)
        if match:
            flush()
            heading = match.group(2) if len(match.group(1)) > 1 else ""
        elif not line.strip() and not fenced:
            flush()
        else:
            lines.append(line)
    flush()
    return blocks


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a sentence, line or word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    # End on a sentence or line when one ends in the last third, else on a word.
    stop = max(cut.rfind(". "), cut.rfind("\n"))
    if stop >= limit * 2 // 3:
        return cut[: stop + 1].rstrip()
    return cut.rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


@functools.lru_cache(maxsize=4096)
def _analysed(content: str) -> tuple[tuple[str, str, frozenset[str], frozenset[str]], ...]:
    # Cached per article text: the same few articles answer most questions.
    return tuple((h, text, _stems(text), _stems(h)) for h, text in content_blocks(content))


def best_passage(*, content: str, terms: list[Term], limit: int = PASSAGE_CHARS) -> str:
    """The paragraph of ``content`` that best matches ``terms`` (heading-prefixed, ≤ ``limit``)."""
    blocks = _analysed(content)
    if not blocks:
        return ""
    wanted = {_stem(token) for term in terms for token in term.tokens}

    def score(index: int) -> tuple[float, int]:
        _heading, _text, text_stems, heading_stems = blocks[index]
        # Earlier blocks win ties: introductions summarise.
        return len(wanted & text_stems) + 0.5 * len(wanted & heading_stems), -index

    best = max(range(len(blocks)), key=score)
    if score(best)[0] == 0:
        # Only the title matched: the opening paragraph says what the article is about.
        best = 0
    heading, text = blocks[best][:2]
    lines = text.splitlines()
    if len(lines) > 3 and all(line.lstrip().startswith("|") for line in lines):
        # A table: its header and the rows that match best ("| NB-1500 | Can't connect |").
        matches = [len(wanted & _stems(row)) for row in lines[2:]]
        most = max(matches)
        rows = [row for row, n in zip(lines[2:], matches, strict=True) if n == most and most]
        text = "\n".join(lines[:2] + (rows or lines[2:]))
    # A short paragraph ("Reviews take 3 days.") says more with its neighbour in the section.
    following = best + 1
    while len(text) < limit // 2 and following < len(blocks) and blocks[following][0] == heading:
        text = f"{text}\n\n{blocks[following][1]}"
        following += 1
    return shorten(f"{heading}: {text}" if heading else text, limit)
