"""The words the offline composer (``chat.llm.compose``) knows beyond the articles' own: the
details a question can name (plan, platform, billing period, region), question words that mean
a word the articles use, filler that says little, and the small words of a few languages that
tell another language from English. Kept apart so the vocabulary can grow without touching the
logic.
"""

from __future__ import annotations

import re

# Details a question can pin down, each a kind with its values and the words that name them.
FACETS: dict[str, dict[str, tuple[str, ...]]] = {
    "plan": {
        "free": ("free",),
        "plus": ("plus",),
        "team": ("team",),
        "business": ("business",),
        "enterprise": ("enterprise",),
    },
    "platform": {
        "windows": ("windows",),
        "macos": ("macos", "mac", "macs", "macbook", "imac", "finder"),
        "linux": ("linux", "ubuntu", "debian", "fedora"),
        "ios": ("ios", "iphone", "iphones", "ipad", "ipados"),
        "android": ("android", "samsung", "pixel", "galaxy"),
    },
    "billing": {
        "monthly": ("monthly", "month-to-month"),
        "annual": ("annual", "annually", "yearly"),
    },
    # The articles speak of the EU and the UK; a customer names the country.
    "region": {
        "eu": tuple(
            "eu europe european austria belgium bulgaria croatia cyprus czechia denmark estonia "  # noqa: SIM905
            "finland france germany greece hungary ireland italy latvia lithuania luxembourg "
            "malta netherlands poland portugal romania slovakia slovenia spain sweden".split()
        ),
        "uk": ("uk", "britain", "british", "england", "scotland", "wales"),
    },
}
# A plan's name is also an everyday word ("our team", "free space"): in a question it names a
# plan only when capitalised mid-sentence or next to plan-like words.
PLAN_CONTEXT = re.compile(
    r"\b(?P<plan>free|plus|team|business|enterprise)\s+(plan|workspace|account|subscription|"
    r"tier|customer|user|admin|owner)s?\b|\b(on|with|have|has|using|bought|got)\s+(the\s+|a\s+)?"
    r"(?P<plan2>free|plus|team|business|enterprise)\b",
    re.IGNORECASE,
)
CAPITALISED_PLAN = re.compile(r"(?<![.!?]\s)(?<!^)\b(Free|Plus|Team|Business|Enterprise)\b")
# Question words that mean a word the articles use.
CONCEPTS: dict[str, tuple[str, ...]] = {
    "much": ("price",),
    "cost": ("price",),
    "costs": ("price",),
    "pay": ("price", "billed"),
    "yearly": ("annual", "annually"),
    "year": ("annual",),
    "money": ("refund",),
    "roll": ("rewind",),
    "rollback": ("rewind",),
    "revert": ("rewind", "restore"),
    "hand": ("transfer",),
    "handover": ("transfer",),
    "twice": ("duplicate",),
    "double": ("duplicate",),
    "pc": ("computer",),
    "renewed": ("renewal",),
    "renew": ("renewal",),
    "renews": ("renewal",),
    "bought": ("purchase",),
    "buy": ("purchase",),
    "purchased": ("purchase",),
    "refunded": ("refund",),
    "deleted": ("trash", "restore"),
    "back": ("restore",),
    "biggest": ("largest",),
    "largest": ("largest",),
    "long": ("kept", "days"),
    "far": ("kept", "history"),
    "mean": ("meaning",),
    "means": ("meaning",),
    "photos": ("camera",),
    "phone": ("mobile",),
    "laptop": ("computer",),
    "down": ("outage",),
}
# Words that say little about what is asked.
FILLER = frozenset(
    [
        "keep",
        "keeps",
        "kept",
        "show",
        "shows",
        "showing",
        "appear",
        "appears",
        "appearing",
        "happen",
        "happens",
        "happened",
        "ok",
        "okay",
        "hi",
        "hello",
        "thanks",
        "thank",
        "please",
        "hey",
        "guys",
        "yesterday",
        "today",
        "tomorrow",
        "week",
        "weeks",
        "month",
        "months",
        "ago",
        "since",
        "now",
        "anyone",
        "anything",
        "work",
        "working",
        "works",
        "use",
        "using",
        "used",
        "go",
        "going",
        "nimbus",
        "getting",
        "get",
        "got",
        "say",
        "says",
        "said",
        "see",
        "seeing",
    ]
)

# Small words of other languages and of English (a word in both counts for English).
FOREIGN_WORDS = {
    "es": [
        "el",
        "la",
        "los",
        "las",
        "que",
        "de",
        "para",
        "por",
        "cómo",
        "como",
        "puedo",
        "mi",
        "mis",
        "está",
        "tengo",
        "una",
        "qué",
        "cuándo",
    ],
    "de": [
        "der",
        "die",
        "das",
        "und",
        "ich",
        "mein",
        "meine",
        "kann",
        "wie",
        "ist",
        "nicht",
        "eine",
        "ein",
        "für",
        "bekommen",
    ],
    "fr": [
        "le",
        "la",
        "les",
        "et",
        "je",
        "mon",
        "ma",
        "mes",
        "est",
        "une",
        "pour",
        "comment",
        "que",
        "pas",
        "des",
        "faire",
    ],
    "pt": [
        "o",
        "a",
        "os",
        "as",
        "que",
        "de",
        "para",
        "como",
        "posso",
        "meu",
        "minha",
        "não",
        "uma",
        "está",
    ],
    "it": [
        "il",
        "lo",
        "la",
        "gli",
        "le",
        "che",
        "di",
        "per",
        "come",
        "posso",
        "mio",
        "mia",
        "non",
        "una",
        "è",
    ],
    "nl": ["de", "het", "een", "en", "ik", "mijn", "kan", "hoe", "is", "niet", "voor", "krijgen"],
}
ENGLISH_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "i",
        "my",
        "can",
        "how",
        "is",
        "not",
        "for",
        "to",
        "of",
        "it",
        "do",
        "what",
        "you",
    ]
)
