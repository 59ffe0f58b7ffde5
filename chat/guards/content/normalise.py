"""Normalisation for the content filter: the text as written, folded for matching (``plain``),
and the de-obfuscated views of it: Unicode folded (``fold``), letters spaced apart joined again
(``join_spaced``), leetspeak read back (``deleet``), words cut apart joined (``unsplit_words``).
"""

# ruff: noqa: RUF001  (the look-alike table is meant to be ambiguous)
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Final

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
# Invisible characters: zero-width space/joiners, bidi controls, word joiner, BOM, soft hyphen,
# variation selectors, Hangul fillers and the Unicode tag block ("ASCII smuggling").
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]"
)
_FULLWIDTH = re.compile("[\uff01-\uff5e]")


def _confusables() -> tuple[dict[int, str], dict[int, str]]:
    """Look-alikes from other scripts (folded in Latin context), and Latin ones (always folded)."""
    scripts = {
        # Cyrillic (after case folding)
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h",
        "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ь": "b", "г": "r", "п": "n", "ո": "n", "օ": "o",
        "ս": "u", "զ": "q",
        # Greek
        "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j", "μ": "u", "ς": "c",
    }  # fmt: skip
    latin = {
        # Latin look-alikes NFKC leaves alone: dotless i, script g, small capitals
        "ı": "i", "ɡ": "g", "ɑ": "a", "ɩ": "i", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e",
        "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o",
        "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
    }  # fmt: skip
    always = {ord(k): v for k, v in latin.items()}
    # Regional indicator symbols (the letters of flag emoji) read as letters.
    always.update({0x1F1E6 + i: chr(ord("a") + i) for i in range(26)})
    return {ord(k): v for k, v in scripts.items()}, always


_CONFUSABLES, _LATIN_LOOKALIKES = _confusables()
_LEET: Final = str.maketrans("013457@$", "oieasta" + "s")
# Anchored at a token's start: unanchored, a long run of digits costs quadratic time.
_LEET_TOKEN = re.compile(r"(?<![a-z0-9@$])[a-z0-9@$]*[a-z][a-z0-9@$]*")
_LEET_CHAR = re.compile(r"[013457@$]")
# Four or more single letters or digits, each followed by one to three separators.
_SPACED_RUN = re.compile(r"(?<![^\W_])(?:[^\W_](?:[^\w\n]|_){1,3}){3,}[^\W_](?![^\W_])")
_SEPARATOR = re.compile(r"((?:[^\w\n]|_){1,3})")


def strip_marks(text: str) -> str:
    """Drop combining marks (accents, variation selectors): "précédentes" → "precedentes"."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    kept = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFC", kept)


def plain(text: str) -> str:
    """The text as written, for matching: case-folded, accents dropped, curly quotes straight."""
    if text.isascii():
        return text.lower()
    return strip_marks(text).casefold().translate(_QUOTES)


def fold(text: str) -> tuple[str, list[str]]:
    """NFKC, invisible characters removed, look-alikes folded; and which of these changed text."""
    kinds: list[str] = []
    compat = unicodedata.normalize("NFKC", text)
    if compat != text:
        kinds.append("fullwidth" if _FULLWIDTH.search(text) else "compatibility")
    visible = _INVISIBLE.sub("", compat)
    if visible != compat:
        kinds.append("zero_width")
    lowered = plain(visible)
    latin_folded = lowered.translate(_LATIN_LOOKALIKES)
    if latin_folded != lowered:
        kinds.append("homoglyph")
    folded = latin_folded.translate(_CONFUSABLES)
    if folded != latin_folded:
        changed = sum(1 for a, b in zip(latin_folded, folded, strict=True) if a != b)
        latin = sum(1 for c in latin_folded if "a" <= c <= "z")
        if changed > latin:
            # Mostly Cyrillic or Greek text (Russian, say): fold only the words that mix in Latin
            # letters, so a genuine Russian message stays Russian.
            folded = re.sub(
                r"\w+",
                lambda m: m[0].translate(_CONFUSABLES) if re.search("[a-z]", m[0]) else m[0],
                latin_folded,
            )
        if folded != latin_folded and "homoglyph" not in kinds:
            kinds.append("homoglyph")
    return folded, kinds


def deleet(text: str) -> str:
    """Leetspeak read back, in words that mix letters with leet digits/symbols ("1gn0r3")."""
    return _LEET_TOKEN.sub(
        lambda m: m[0].translate(_LEET) if _LEET_CHAR.search(m[0]) else m[0], text
    )


def _join_run(match: re.Match[str]) -> str:
    parts = _SEPARATOR.split(match[0])
    separators = parts[1::2]
    # The commonest separator is the one between letters; any other one marks a word break
    # ("i g n o r e  a l l" → "ignore all", "i.g.n.o.r.e a.l.l" → "ignore all").
    inner = Counter(separators).most_common(1)[0][0]
    out = [parts[0]]
    for separator, char in zip(separators, parts[2::2], strict=True):
        out.append("" if separator == inner else " ")
        out.append(char)
    return "".join(out)


def join_spaced(text: str) -> str:
    """Letters spaced or dotted apart joined again: "i g n o r e" → "ignore"."""
    return _SPACED_RUN.sub(_join_run, text)


_WORD_BREAK = re.compile(r"(?<=[a-z])[-.*\u00b7_](?=[a-z])")


def unsplit_words(text: str) -> str:
    """Words cut by hyphens, dots or stars joined again ("ig-nore all pre-vious")."""
    return _WORD_BREAK.sub("", text)
