"""PII detection: every detector over the text, overlapping candidates resolved by rank
(``detect``), and the matches that are not allowlisted (``find_pii``)."""

from __future__ import annotations

from collections.abc import Callable

from chat.guards.pii.contacts import detect_emails, detect_phones
from chat.guards.pii.credentials import detect_secrets
from chat.guards.pii.ip_addresses import detect_ipv4s, detect_ipv6s
from chat.guards.pii.matches import EMPTY_ALLOWLIST, Allowlist, PiiMatch
from chat.guards.pii.numbers import detect_cards, detect_cvvs, detect_ibans, detect_ssns

# (digits one match needs, detector), for the kinds made of digits.
_NUMERIC_DETECTORS: tuple[
    tuple[int, Callable[[str, int, list[tuple[int, int, int, str]]], None]], ...
] = (
    (1, detect_ipv6s),
    (2, detect_ibans),
    (3, detect_cvvs),
    (4, detect_ipv4s),
    (7, detect_phones),
    (9, detect_ssns),
    (13, detect_cards),
)


def detect(text: str, *, lo: int = 0, scan_from: int = 0) -> list[tuple[int, int, str]]:
    """Resolved (start, end, kind) spans of ``text`` that start at or after ``lo``.

    Detectors scan from ``lo``, except that key-value secrets are looked for from ``scan_from``
    (<= lo) so that a value at ``lo`` whose key lies before it is still seen; every
    left-context rule reads the whole of ``text``.
    """
    candidates: list[tuple[int, int, int, str]] = []
    if text.find("@", lo) >= 0:
        detect_emails(text, lo, candidates)
    detect_secrets(text, lo, scan_from, text[scan_from:].lower(), candidates)
    # Each numeric kind needs so many digits: most messages have too few for any of them.
    # (Each threshold is what one match of the kind needs, so that a StreamRedactor checking
    # only the new part of the text sees the same candidates as a check of the whole.)
    digits = sum(text.count(d, lo) for d in "0123456789")
    for needed, detector in _NUMERIC_DETECTORS:
        if digits >= needed:
            detector(text, lo, candidates)
    if not candidates:
        return []
    candidates.sort(key=lambda c: (c[0], c[1] - c[2], c[1]))
    chosen: list[tuple[int, int, str]] = []
    for _rank, start, end, kind in candidates:
        if start < lo:
            continue
        if all(end <= s or start >= e for s, e, _k in chosen):
            chosen.append((start, end, kind))
    chosen.sort()
    return chosen


def find_pii(text: str, allowlist: Allowlist = EMPTY_ALLOWLIST) -> list[PiiMatch]:
    """Non-overlapping matches sorted by start, allowlisted ones dropped."""
    matches = [PiiMatch(kind, s, e, text[s:e]) for s, e, kind in detect(text)]
    if allowlist:
        matches = [m for m in matches if not allowlist.allows(m)]
    return matches
