"""PII detectors for numbers with a check: IBANs (per-country length and ISO 13616 mod-97),
payment cards (issuer range, Luhn, how cards are grouped) and their security codes when named,
and US social security numbers (valid ranges; bare nine digits only right after "SSN")."""

from __future__ import annotations

import re

from chat.guards.pii.candidates import NON_DIGIT, RANK

# --- IBAN ----------------------------------------------------------------------------------------

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})(?=[ \u00a0]?[A-Za-z0-9])")


def iban_checksum_ok(compact: str) -> bool:
    """Whether an upper-case IBAN without spaces passes the ISO 13616 mod-97 check."""
    if not compact.isascii() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _standard_groups(groups: list[int]) -> bool:
    """IBAN groups as printed: fours, the last one of one to four characters."""
    return all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


def detect_ibans(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """IBANs from ``pos`` on with the country's length and a valid checksum, appended to ``out``."""
    size = len(text)
    for m in _IBAN_START.finditer(text, pos):
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        # Walk the characters: the BBAN may be grouped by single spaces; stop at the country's
        # length, so whatever follows (", thanks", " IN EUR") is never swallowed.
        chars = [m.group(1), m.group(2)]
        count, i, end, spaced = 4, m.end(), m.end(), False
        groups = [4] if text[m.end() : m.end() + 1] in (" ", "\u00a0") else [0]
        while count < length and i < size:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
                count += 1
                groups[-1] += 1
                i += 1
                end = i
            elif ch in " \u00a0" and i == end and i + 1 < size and text[i + 1].isalnum():
                spaced = True
                groups.append(0)
                i += 1
            else:
                break
        if count < length or (end < size and text[end].isalnum()):
            continue
        compact = "".join(chars)
        # Grouped IBANs are written in capitals, or in small letters in the standard groups of
        # four ("gb82 west 1234 …"); any other spaced lower-case run is prose ("de12 and …").
        if spaced and not compact.isupper() and not _standard_groups(groups):
            continue
        if iban_checksum_ok(compact.upper()):
            out.append((RANK["iban"], m.start(), end, "iban"))


# --- payment cards -------------------------------------------------------------------------------

# Digits with any separators between them: a space, a dash or a dot, or " - " / " . ".
_CARD_RUN = re.compile(r"(?<![\w.,+/-])\d(?:(?:[ \u00a0]?[.-][ \u00a0]?|[ \u00a0])?\d){12,}")
_DIGIT_GROUP = re.compile(r"\d+")


def luhn_ok(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check."""
    total = 0
    for index, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if index % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _card_number(digits: str) -> bool:
    # Issuer ranges: 2 and 5 Mastercard, 3 Amex/Diners/JCB, 4 Visa, 6 Discover/UnionPay/Maestro.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _card_grouping(sizes: list[int]) -> bool:
    """How cards are written: one block, 4-4-4-4(-x), or 4-6-5 / 4-6-4 (Amex, Diners)."""
    if len(sizes) == 1:
        return True
    if sizes[:2] == [4, 6] and len(sizes) == 3 and sizes[2] in (4, 5):
        return True
    return all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _edge_windows(groups: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The runs of whole groups at the start and at the end of ``groups`` (not all of them)
    that hold at most 19 digits: a long run of numbers costs no more than a short one."""
    windows: list[list[tuple[int, int]]] = []
    for edge in (groups, groups[::-1]):
        size = 0
        for k in range(1, len(groups)):
            size += edge[k - 1][1] - edge[k - 1][0]
            if size > 19:
                break
            windows.append(groups[:k] if edge is groups else groups[len(groups) - k :])
    return windows


# A card's security code, named as such ("CVV 123", "cvc: 1234"): redacted like the card.
_CVV = re.compile(
    r"(?i)\b(?:cvv2?|cvc2?|csc|security\s+code|card\s+verification\s+(?:code|value))"
    r"\s*(?:[:#=]|\bis\b)?\s*(\d{3,4})(?![\d\w])"
)


def detect_cvvs(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """Security codes named as such ("CVV 123") from ``pos`` on, appended to ``out``."""
    lower = text.lower()
    if not any(cue in lower for cue in ("cv", "csc", "security code", "verification")):
        return
    for m in _CVV.finditer(text, max(0, pos - 40)):
        if m.start(1) >= pos:
            out.append((RANK["card"], m.start(1), m.end(1), "card"))


def detect_cards(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """Card numbers from ``pos`` on (issuer range, Luhn), appended to ``out``."""
    for m in _CARD_RUN.finditer(text, pos):
        end = m.end()
        if end < len(text) and (text[end].isalpha() or text[end] == "_"):
            continue  # a code such as 4111111111111111abc
        run = m.group()
        digits = NON_DIGIT.sub("", run)
        if _card_number(digits):
            out.append((RANK["card"], m.start(), end, "card"))
            continue
        # A card with something attached: "ref 12 4111 1111 1111 1111", "... 1111 737" (CVC).
        # Only whole groups at either end are cut off, and only card-shaped groupings are kept.
        groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(run)]
        if len(groups) < 2:
            continue
        best: tuple[int, int] | None = None
        for window in _edge_windows(groups):
            sizes = [b - a for a, b in window]
            if not 13 <= sum(sizes) <= 19 or not _card_grouping(sizes):
                continue
            if not _card_number("".join(run[a:b] for a, b in window)):
                continue
            span = (window[0][0], window[-1][1])
            if best is None or span[1] - span[0] > best[1] - best[0]:
                best = span
        if best is not None:
            out.append((RANK["card"], m.start() + best[0], m.start() + best[1], "card"))


# --- US social security numbers ------------------------------------------------------------------

_SSN = re.compile(
    r"(?<![\w.,+/#-])(?!000|666|9)\d{3}([ -])(?!00)\d{2}\1(?!0000)\d{4}(?![\w]|[-.]\d)"
)
_SSN_BARE = re.compile(r"(?<![\w.,+/#-])(?!000|666|9)\d{3}(?!00)\d{2}(?!0000)\d{4}(?![\w]|[-.]\d)")
_SSN_CUE = re.compile(r"(?i)(?:\bssn|\bss#|social security(?: number| no\.?| #)?)\W{0,4}$")


def detect_ssns(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """US social security numbers from ``pos`` on, appended to ``out``."""
    for m in _SSN.finditer(text, pos):
        out.append((RANK["ssn"], m.start(), m.end(), "ssn"))
    lower = text[max(0, pos - 30) :].lower()
    if "ss" not in lower and "social" not in lower:
        return
    for m in _SSN_BARE.finditer(text, pos):  # nine bare digits only right after "SSN"
        if _SSN_CUE.search(text, max(0, m.start() - 30), m.start()):
            out.append((RANK["ssn"], m.start(), m.end(), "ssn"))
