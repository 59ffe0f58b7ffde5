"""What the PII detectors share: a detector appends candidates ``(rank, start, end, kind)``
for the text from a position on; ``RANK`` resolves overlapping ones; and small helpers."""

from __future__ import annotations

import re

# Overlapping candidates: the lowest rank wins (then the longest, then the first). The more
# specific a kind's check (mod-97, Luhn, SSN ranges, a provider's key prefix), the lower its rank.
RANK = {"iban": 0, "card": 1, "ssn": 2, "strong_secret": 3, "email": 4, "ip": 5, "phone": 6}
GENERIC_SECRET_RANK = 7
DIGIT = re.compile(r"\d")
NON_DIGIT = re.compile(r"\D")


def words(spaced: str) -> frozenset[str]:
    """The words of ``spaced`` (a cue list written as one string), as a set."""
    return frozenset(spaced.split())
