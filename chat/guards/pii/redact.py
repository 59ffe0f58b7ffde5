"""PII redaction: each match replaced by its kind's placeholder (``redact_pii``), and the same
done to a model's answer while it streams (``StreamRedactor``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chat.guards.pii.detection import detect, find_pii
from chat.guards.pii.matches import EMPTY_ALLOWLIST, PLACEHOLDERS, Allowlist, PiiMatch

_STREAM_CONTEXT = 64  # emitted text a StreamRedactor re-reads (> the longest key-value prefix)


@dataclass(frozen=True)
class Redaction:
    text: str  # redacted text
    matches: tuple[PiiMatch, ...]  # positions refer to the original text

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct kinds found, sorted."""
        return tuple(sorted({m.kind for m in self.matches}))


def _replace(text: str, matches: list[PiiMatch], start: int, end: int) -> str:
    """``text[start:end]`` with ``matches`` (which lie inside it) replaced by placeholders."""
    parts: list[str] = []
    position = start
    for match in matches:
        parts.append(text[position : match.start])
        parts.append(PLACEHOLDERS[match.kind])
        position = match.end
    parts.append(text[position:end])
    return "".join(parts)


def redact_pii(text: str, allowlist: Allowlist = EMPTY_ALLOWLIST) -> Redaction:
    """``text`` with every match replaced by its kind's placeholder, and the matches."""
    matches = find_pii(text, allowlist)
    if not matches:
        return Redaction(text=text, matches=())
    return Redaction(text=_replace(text, matches, 0, len(text)), matches=tuple(matches))


# --- streaming -----------------------------------------------------------------------------------

_CAPS_TOKEN = re.compile(r"[(\[]?[A-Z0-9]+[).,;:!?\]]*")
_SEPARATOR_TOKENS = frozenset({"-", ".", "/"})  # "4111 - 1111 - 1111 - 1111"
_COMPLETE_TOKEN = re.compile(r"\S+")


def _could_be_pii(token: str) -> bool:
    """A complete token that a multi-token match (phone, card, SSN, grouped IBAN) may contain:
    anything with '@' or '+', a digit (except in a word of five or more characters that has small
    letters), an all-capitals group such as the "WEST" of an IBAN, or a lone separator."""
    digit = lower = False
    for ch in token:
        if ch == "@" or ch == "+":
            return True
        digit = digit or ch.isdigit()
        lower = lower or ch.islower()
    if digit:
        # A word of five or more characters with small letters ("token0", "build42x") is no
        # piece of a grouped number or IBAN; a secret is one token, whole once it is complete.
        return not (lower and len(token) >= 5)
    return _CAPS_TOKEN.fullmatch(token) is not None or token in _SEPARATOR_TOKENS


class StreamRedactor:
    """Redacts a model's answer while it streams. feed(delta) returns the redacted text that is
    safe to emit now; it holds back only the trailing run that could still become PII (the
    unfinished last word, and a trailing run of tokens containing digits, '@', '+', or short
    all-caps/digit groups such as IBAN blocks "GB82 WEST 1234"), so ordinary prose is emitted
    with at most one word of delay (this matters: time-to-first-token is benchmarked).
    finish() returns the rest. The concatenation of everything returned must equal
    redact_pii(full_text).text for realistic texts, and must never contain a clear PII value
    that redact_pii(full_text) would redact. `matches` accumulates PiiMatch with offsets in the
    full raw text.

    Why the output is the same as redacting the whole text: every token of a multi-token match
    could be PII by ``_could_be_pii``, so no match crosses the non-PII token just before the
    cut; the rules that look right of a match read at most that one token; and the rules that
    look left read the raw text, which is all there.
    """

    def __init__(self, allowlist: Allowlist = EMPTY_ALLOWLIST) -> None:
        self._allowlist = allowlist
        self._raw = ""
        self._done = 0  # raw characters already answered for
        # Where the unfinished last word starts, and where the trailing run of complete tokens
        # that could be PII starts (None: the last complete token cannot). Both are kept up to
        # date token by token, so a feed costs the length of its delta, not of what is held.
        self._word_start = 0
        self._run_start: int | None = None
        self.matches: list[PiiMatch] = []

    def feed(self, delta: str) -> str:
        """The redacted text that is safe to emit after ``delta``."""
        if not delta:
            return ""
        offset = len(self._raw)
        self._raw += delta
        for i in range(len(delta) - 1, -1, -1):
            if delta[i].isspace():
                word_start = offset + i + 1
                for token in _COMPLETE_TOKEN.finditer(self._raw, self._word_start, word_start):
                    if _could_be_pii(token.group()):
                        if self._run_start is None:
                            self._run_start = token.start()
                    else:
                        self._run_start = None
                self._word_start = word_start
                break
        cut = self._word_start if self._run_start is None else self._run_start
        return self._advance(cut) if cut > self._done else ""

    def finish(self) -> str:
        """The rest of the redacted text, once the answer is complete."""
        self._word_start = len(self._raw)
        self._run_start = None
        return self._advance(len(self._raw)) if len(self._raw) > self._done else ""

    def _advance(self, cut: int) -> str:
        text = self._raw[:cut]
        lo = self._done
        found = [
            PiiMatch(kind, s, e, text[s:e])
            for s, e, kind in detect(text, lo=lo, scan_from=max(0, lo - _STREAM_CONTEXT))
        ]
        if found and self._allowlist:
            found = [m for m in found if not self._allowlist.allows(m)]
        self.matches.extend(found)
        self._done = cut
        return _replace(text, found, lo, cut) if found else text[lo:cut]
