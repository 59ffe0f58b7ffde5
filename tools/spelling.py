"""Typo tolerance for knowledge search: a misspelt question word is matched to the nearest word
the articles actually use ("pasword" → "password", "invocies" → "invoices").

The vocabulary is every word of the articles' titles, tags and bodies (lower-cased, accents
folded), with the number of articles holding it; it lives in this process and is rebuilt when the
articles change (their count or latest ``modified`` time, checked at most every
``CHECK_SECONDS``; the old one serves while a background thread builds the new one).
Candidates come from a one-deletion index (SymSpell's idea): two words are
neighbours when deleting at most one letter from each makes them equal, which covers one
insertion, deletion, substitution or swap of neighbouring letters; the candidate with the smallest
true (Damerau) distance wins, the more common word on a tie. Database-independent, so SQLite and
PostgreSQL correct the same way.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

import structlog
from django.db import connection
from django.db.models import Count, Max

from tools.models import Article

log = structlog.get_logger("tools.spelling")

CHECK_SECONDS = 30.0
MIN_LENGTH = 4  # shorter words have too many neighbours to guess from
MAX_LENGTH = 30
_WORD_RE = re.compile(r"[a-z]+")


def fold(text: str) -> str:
    text = text.lower()
    if text.isascii():  # nearly always: nothing to fold, and folding is the slow part
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass
class Vocabulary:
    signature: tuple[object, ...]
    counts: dict[str, int]  # word -> articles holding it
    neighbours: dict[str, list[str]]  # a word with one letter deleted -> words
    checked_at: float

    @classmethod
    def build(cls, signature: tuple[object, ...], texts: list[str]) -> Vocabulary:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(
                {w for w in _WORD_RE.findall(fold(text)) if MIN_LENGTH <= len(w) <= MAX_LENGTH}
            )
        neighbours: defaultdict[str, list[str]] = defaultdict(list)
        for word in counts:
            for index in range(len(word)):
                neighbours[word[:index] + word[index + 1 :]].append(word)
        return cls(signature, dict(counts), dict(neighbours), time.monotonic())

    def correct(self, word: str) -> str | None:
        """The nearest article word for a word the articles do not use, if one is close."""
        if word in self.counts or not (MIN_LENGTH <= len(word) <= MAX_LENGTH):
            return None
        if not word.isalpha():
            return None
        candidates: set[str] = set(self.neighbours.get(word, ()))  # a letter missing
        for index in range(len(word)):
            deleted = word[:index] + word[index + 1 :]
            if deleted in self.counts:  # a letter too many
                candidates.add(deleted)
            candidates.update(self.neighbours.get(deleted, ()))  # one changed or swapped
        allowed = 1 if len(word) < 8 else 2
        best: tuple[int, int, str] | None = None
        for candidate in candidates:
            distance = damerau(word, candidate)
            if distance <= allowed:
                key = (distance, -self.counts[candidate], candidate)
                best = key if best is None or key < best else best
        return best[2] if best else None


def damerau(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


_VOCABULARIES: dict[str, Vocabulary] = {}  # per database alias
_LOCK = threading.Lock()
_REBUILDING: set[str] = set()


def _signature() -> tuple[object, ...]:
    stats = Article.objects.aggregate(count=Count("pk"), latest=Max("modified"))
    return (stats["count"], stats["latest"])


def _build() -> Vocabulary:
    signature = _signature()
    texts = [
        f"{title} {' '.join(tags) if isinstance(tags, list) else ''} {content}"
        for title, tags, content in Article.objects.values_list(
            "title", "tags", "content"
        ).iterator(chunk_size=500)
    ]
    return Vocabulary.build(signature, texts)


def _rebuild_in_background(alias: str) -> None:
    def run() -> None:
        try:
            _VOCABULARIES[alias] = _build()
        except Exception:
            log.warning("spelling.rebuild_failed", exc_info=True)
        finally:
            _REBUILDING.discard(alias)
            connection.close()  # this thread's own connection

    with _LOCK:
        if alias in _REBUILDING:
            return
        _REBUILDING.add(alias)
    threading.Thread(target=run, name="kb-vocabulary", daemon=True).start()


def vocabulary() -> Vocabulary:
    """This database's vocabulary. The first one is built here (about 0.1 s per 1,000
    articles); after the articles change the old one serves while a thread builds the next."""
    now = time.monotonic()
    alias = connection.alias
    known = _VOCABULARIES.get(alias)
    if known is not None and now - known.checked_at < CHECK_SECONDS:
        return known
    if known is None:
        with _LOCK:
            known = _VOCABULARIES.get(alias)
            if known is None:
                known = _VOCABULARIES[alias] = _build()
        return known
    known.checked_at = now
    if known.signature != _signature():
        _rebuild_in_background(alias)
    return known


def forget() -> None:
    """Drop the cached vocabularies (tests that change articles in bulk)."""
    _VOCABULARIES.clear()
