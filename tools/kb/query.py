"""Query parsing for knowledge search: free text to the terms both databases rank.

User text never reaches a query language verbatim: it is cut into words, stop words are dropped,
each remaining word (or hyphenated group such as ``NB-1042``) becomes one quoted phrase, and the
phrases are OR-ed, so a partial match ranks lower instead of matching nothing. A few support
synonyms ("stolen" -> "lost") and neighbouring word pairs ("public link") are added as evidence,
and a misspelt word gains the nearest word the articles use (``tools.spelling``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from tools import spelling

MAX_QUERY_TERMS = 24  # a 500-character question rarely has more content words; bounds the cost

# Support vocabulary that the articles word differently ("stolen" phone, "lost" phone). A
# synonym joins its word's group, which scores its best member, so it never counts twice; keep
# the list short and unsurprising. Word pairs weigh less than words: they only break ties
# between articles that mention the same words apart.
SYNONYM_WEIGHT = 1.0
PAIR_WEIGHT = 0.3
# An error code or identifier ("NB-1042", "HTTP-429", "AES-256") names one thing; in a small
# knowledge base its IDF barely beats a word like "error" that every troubleshooting page uses.
CODE_WEIGHT = 1.5
MAX_PAIRS = 8
SYNONYMS: dict[str, tuple[str, ...]] = {
    "stolen": ("lost",),
    "missing": ("lost",),
    "money": ("refund",),
    "reimburse": ("refund",),
    "close": ("delete",),
    "erase": ("delete",),
    "wipe": ("delete",),
    "undelete": ("restore", "trash"),
    "recover": ("restore",),
    "cost": ("price",),
    "costs": ("price",),
    "expensive": ("price",),
    "cheap": ("price",),
    "bill": ("invoice",),
    "receipt": ("invoice",),
    "login": ("sign in",),
    "logon": ("sign in",),
    "signin": ("sign in",),
    "mfa": ("2fa",),
    "two factor": ("two step", "2fa"),
    "otp": ("authenticator",),
    "unsubscribe": ("cancel",),
    "hacked": ("compromised",),
    "iphone": ("ios",),
    "ipad": ("ios",),
    "pictures": ("photos",),
    "employee": ("user",),
    "employees": ("users",),
    "licence": ("seats",),
    "licences": ("seats",),
    "license": ("seats",),
    "licenses": ("seats",),
    "spreadsheet": ("csv",),
    "excel": ("csv",),
    "macbook": ("macos",),
    "mac": ("macos",),
    "imac": ("macos",),
    "osx": ("macos",),
    "yearly": ("annual",),
    "hotspot": ("metered",),
    "tethering": ("metered",),
}
# Phrases rewritten before the words are looked at: "log in" is about signing in, not about the
# audit log; "is it down" is about an outage ("down" alone may be a direction: "down to Team").
_REWRITES = (
    (re.compile(r"\blog(?:ged|ging|s)?\s+(?:in|into|on)\b"), "sign in"),
    (re.compile(r"\blog(?:ged|ging|s)?\s+(?:out|off)\b"), "sign out"),
    (
        re.compile(
            r"\b(?:is|are|was|were|goes|go|going|went|gone|been)\s+(?:\w+\s+)?down\b(?!\s+to\b)"
        ),
        "outage",
    ),
    (re.compile(r"\bazure\s+(?:ad|active\s+directory)\b"), "entra azure"),
)
# An error code typed without its hyphen ("nb1042") as the two tokens the index holds.
_GLUED_CODE_RE = re.compile(r"([a-z]{1,8})(\d{2,8})")

# English function words plus the filler of support questions ("how do I", "can you help me").
# Dropping them keeps "how do I reset my password?" about passwords, not about "do" and "my".
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any anyone anything are aren as at be
    because been before being below between both but by can cannot cant could couldn did didn do
    does doesn doing don down during each either else even ever every few for from further get
    gets getting got had hadn has hasn have haven having he hello help her here hers herself hey hi
    him himself his how i if in into is isn it its itself just know let like ll m me might mine
    more most much must mustn my myself need needs no nor not now of off on once only or other our
    ours ourselves out over own please possible re really s same shall she should shouldn so some
    someone something still such t tell than thank thanks that the their theirs them themselves
    then there these they thing this those through to too trying try under until up us ve very
    want wants was wasn way we were weren what whats when where which while who whom why will with
    won would wouldn you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

# What FTS5 unicode61 calls a token: letters and digits (passages match paragraphs by it too).
TOKEN_RE = re.compile(r"[^\W_]+")
_WORD_RE = re.compile(r"[^\W\d_]+")  # letters only (what typo correction looks at)
_CODE_RE = re.compile(r"(?=.*\d)(?=.*[^\W\d_])[^\W_]+(-[^\W_]+)*|\d{3,}")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


@dataclass(frozen=True)
class Term:
    """One searchable word (or hyphen group, or a synonym of one) of a query."""

    tokens: tuple[str, ...]  # as FTS5's unicode61 splits it: ("nb", "1042")
    text: str  # as written, lower-case ("nb-1042"): PostgreSQL's parser splits it its own way
    group: int  # the asked word this term stands for; a group scores its best member
    weight: float = 1.0  # multiplies the term's score (word pairs weigh less)
    bonus: bool = False  # extra evidence that does not count toward the maximum score


def query_terms(text: str) -> list[Term]:
    """The searchable terms of free text: stop words dropped, synonyms and word pairs added."""
    terms: dict[tuple[str, ...], Term] = {}
    asked: list[Term] = []
    text = text.translate(_APOSTROPHES).lower()
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    for chunk in text.split():
        # "what's", "don't", "nimbus's": the part before the apostrophe carries the meaning.
        chunk = chunk.split("'", 1)[0]
        found = list(TOKEN_RE.finditer(chunk))
        tokens = tuple(m.group() for m in found)
        if not tokens or tokens in terms or len(terms) >= MAX_QUERY_TERMS:
            continue
        group = len(asked)
        # A synonym applies even to a stop word: "is it down?" is about an outage.
        synonyms = [tuple(s.split()) for s in SYNONYMS.get(" ".join(tokens), ())]
        if len(tokens) > 1 or (tokens[0] not in STOP_WORDS and len(tokens[0]) > 1):
            written = chunk[found[0].start() : found[-1].end()]
            weight = CODE_WEIGHT if _CODE_RE.fullmatch(written) else 1.0
            terms[tokens] = Term(tokens=tokens, text=written, group=group, weight=weight)
            asked.append(terms[tokens])
        elif synonyms:
            asked.append(Term(tokens=tokens, text="", group=group, weight=0.0))
        # "réset" also as "reset": FTS5 folds diacritics on both sides, PostgreSQL's english
        # configuration on neither, so the folded spelling finds unaccented articles there.
        folded = tuple(spelling.fold(token) for token in tokens)
        if folded != tokens and group < len(asked) and asked[group].weight:
            synonyms.append(folded)
        for key in synonyms:
            terms.setdefault(key, Term(key, " ".join(key), group, SYNONYM_WEIGHT))
        glued = _GLUED_CODE_RE.fullmatch(tokens[0]) if len(tokens) == 1 else None
        if glued and group < len(asked):
            # Weighed, and written for PostgreSQL's parser, as the hyphenated code would be.
            key = glued.groups()
            terms.setdefault(key, Term(key, "-".join(key), group, CODE_WEIGHT))
    # Neighbouring words of the question found side by side in an article ("public link",
    # "close-account") are extra evidence. A bonus only: they do not raise the maximum score.
    pairs = [(a, b) for a, b in itertools.pairwise(asked) if a.weight and b.weight]
    for offset, (first, second) in enumerate(pairs[:MAX_PAIRS]):
        key = first.tokens + second.tokens
        if key not in terms:
            terms[key] = Term(key, " ".join(key), len(asked) + offset, PAIR_WEIGHT, bonus=True)
    return list(terms.values())


def with_corrections(terms: list[Term], fixes: dict[str, str]) -> list[Term]:
    """``terms`` plus each fix of ``corrections`` ("pasword" → "password"), in the misspelt
    word's group so the two never count twice."""
    keys = {t.tokens for t in terms}
    extra = []
    for term in terms:
        fixed = fixes.get(term.tokens[0]) if len(term.tokens) == 1 and not term.bonus else None
        if fixed and (fixed,) not in keys:
            keys.add((fixed,))
            extra.append(Term((fixed,), fixed, term.group, SYNONYM_WEIGHT))
    return terms + extra


def corrections(terms: list[Term]) -> dict[str, str]:
    """For each question word no article uses, the nearest word one does, if one is close."""
    words = [
        t.tokens[0]
        for t in terms
        if t.weight and not t.bonus and len(t.tokens) == 1 and t.tokens[0].isalpha()
    ]
    if not words:
        return {}
    known = spelling.vocabulary()
    found = {}
    for word in words:
        fixed = known.correct(spelling.fold(word))
        if fixed:
            found[word] = fixed
    return found


def corrected_text(text: str, fixes: dict[str, str]) -> str:
    """``text`` with its misspelt words replaced, for the embedder (to which "invocies" means
    something else entirely)."""
    if not fixes:
        return text
    return _WORD_RE.sub(lambda m: fixes.get(m.group().lower(), m.group()), text)
