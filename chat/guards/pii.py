"""PII detection and redaction for support-chat text.

Seven kinds: e-mail addresses, phone numbers (``phonenumbers`` validates them), US social
security numbers, payment cards (Luhn), IBANs (per-country length and mod-97), IP addresses
(``ipaddress`` validates them) and secrets (API keys of well-known providers, bearer tokens,
JWTs, ``password: …`` pairs and generic high-entropy tokens). Our own identifiers (``sess_``,
``msg_``, ``req_``, ``wf_exec_``, ``TKT-``, …), order numbers, versions, dates, prices and error
codes pass untouched.

``find_pii`` returns the matches, ``redact_pii`` replaces each with its placeholder, and
``StreamRedactor`` does the same to a model's answer while it streams, holding back only the
trailing run of tokens that could still turn out to be PII. A match's clear value lives in
memory only: what is stored or logged is the kind, the position and ``value_fingerprint`` (a keyed
HMAC), which is also how an allowlist names a value without keeping it.

Speed: every detector starts with a compiled regex over the text and does Python work only on
its candidates; ``phonenumbers`` (about 30 µs a parse) only sees digit runs shaped like phone
numbers. ``PhoneNumberMatcher`` is not used: it costs about 250 µs on any 80-character message,
half the budget of the whole guard stage.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import PhoneNumber

KINDS = ("email", "phone", "ssn", "card", "iban", "ip", "secret")
PLACEHOLDERS = {
    "email": "[EMAIL_REDACTED]",
    "phone": "[PHONE_REDACTED]",
    "ssn": "[SSN_REDACTED]",
    "card": "[CARD_REDACTED]",
    "iban": "[IBAN_REDACTED]",
    "ip": "[IP_REDACTED]",
    "secret": "[SECRET_REDACTED]",
}


# --- matches, fingerprints, the allowlist --------------------------------------------------------


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int  # offsets in the ORIGINAL text
    end: int
    # The clear value: in memory only. Kept out of repr() so that logging a match cannot leak it.
    value: str = field(repr=False)

    def fingerprint(self) -> str:
        """``value_fingerprint(kind, value)``: what may be stored instead of the value."""
        return value_fingerprint(self.kind, self.value)


_NON_DIGIT = re.compile(r"\D")
_WHITESPACE = re.compile(r"\s")


def _normalised(kind: str, value: str) -> str:
    if kind in ("card", "phone", "ssn"):
        return _NON_DIGIT.sub("", value)
    if kind == "email":
        return value.lower()
    if kind == "iban":
        return _WHITESPACE.sub("", value).upper()
    return value


def value_fingerprint(kind: str, value: str) -> str:
    """HMAC-SHA256 (key: django.conf.settings.SECRET_KEY, read lazily) of kind + normalised value
    (card/phone/ssn: digits only; email: lower-case; iban: upper-case without spaces; ip: as is;
    secret: as is), hex. Used for allowlisting without storing the clear value."""
    from django.conf import settings  # lazily: detection itself needs no Django settings

    message = f"{kind}:{_normalised(kind, value)}".encode()
    return hmac.new(str(settings.SECRET_KEY).encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Allowlist:
    """Values that are not redacted: by fingerprint, or by a pattern the clear value fullmatches."""

    fingerprints: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    # Patterns that apply to one kind only: (kind, pattern).
    kind_patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.fingerprints or self.patterns or self.kind_patterns)

    def allows(self, match: PiiMatch) -> bool:
        """Whether ``match`` is allowlisted (a fingerprint is computed only if there are any)."""
        if any(pattern.fullmatch(match.value) for pattern in self.patterns):
            return True
        if any(
            kind == match.kind and pattern.fullmatch(match.value)
            for kind, pattern in self.kind_patterns
        ):
            return True
        return bool(self.fingerprints) and match.fingerprint() in self.fingerprints


EMPTY_ALLOWLIST = Allowlist()


# --- shared context rules ------------------------------------------------------------------------

# Overlapping candidates: the lowest rank wins (then the longest, then the first). The more
# specific a kind's check (mod-97, Luhn, SSN ranges, a provider's key prefix), the lower its rank.
_RANK = {"iban": 0, "card": 1, "ssn": 2, "strong_secret": 3, "email": 4, "ip": 5, "phone": 6}
_GENERIC_SECRET_RANK = 7

# Our own identifiers (supportbot.ids, tools.models) and the object ids of payment providers look
# random but are not secrets.
_OWN_ID = re.compile(
    r"(?:^|[/=+:.-])(?:sess|msg|req|call|kb|rpt|wf_exec|wf|run|evt|tkt|ord"
    r"|cus|ch|pi|pm|in|sub|price|prod|acct|seti|txn|po|inv)_"
    r"|^(?:TKT|ORD|NB|INV|RMA)-",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


_LEFT_CONTEXT = 40  # characters before a candidate that cue rules look at
_STREAM_CONTEXT = 64  # emitted text a StreamRedactor re-reads (> the longest key-value prefix)


# --- e-mail --------------------------------------------------------------------------------------

# Domain labels are letters and digits of any script ("müller.de"), hyphens inside.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@[^\W_](?:[\w-]{0,61}[^\W_])?"
    r"(?:\.[^\W_](?:[\w-]{0,61}[^\W_])?)*\.[^\W\d_]{2,24}(?![\w-])"
)


def _emails(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    for m in _EMAIL.finditer(text, pos):
        out.append((_RANK["email"], m.start(), m.end(), "email"))


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


def _ibans(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
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
            out.append((_RANK["iban"], m.start(), end, "iban"))


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


def _cvvs(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    lower = text.lower()
    if not any(cue in lower for cue in ("cv", "csc", "security code", "verification")):
        return
    for m in _CVV.finditer(text, max(0, pos - 40)):
        if m.start(1) >= pos:
            out.append((_RANK["card"], m.start(1), m.end(1), "card"))


def _cards(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    for m in _CARD_RUN.finditer(text, pos):
        end = m.end()
        if end < len(text) and (text[end].isalpha() or text[end] == "_"):
            continue  # a code such as 4111111111111111abc
        run = m.group()
        digits = _NON_DIGIT.sub("", run)
        if _card_number(digits):
            out.append((_RANK["card"], m.start(), end, "card"))
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
            out.append((_RANK["card"], m.start() + best[0], m.start() + best[1], "card"))


# --- US social security numbers ------------------------------------------------------------------

_SSN = re.compile(
    r"(?<![\w.,+/#-])(?!000|666|9)\d{3}([ -])(?!00)\d{2}\1(?!0000)\d{4}(?![\w]|[-.]\d)"
)
_SSN_BARE = re.compile(r"(?<![\w.,+/#-])(?!000|666|9)\d{3}(?!00)\d{2}(?!0000)\d{4}(?![\w]|[-.]\d)")
_SSN_CUE = re.compile(r"(?i)(?:\bssn|\bss#|social security(?: number| no\.?| #)?)\W{0,4}$")


def _ssns(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    for m in _SSN.finditer(text, pos):
        out.append((_RANK["ssn"], m.start(), m.end(), "ssn"))
    lower = text[max(0, pos - 30) :].lower()
    if "ss" not in lower and "social" not in lower:
        return
    for m in _SSN_BARE.finditer(text, pos):  # nine bare digits only right after "SSN"
        if _SSN_CUE.search(text, max(0, m.start() - 30), m.start()):
            out.append((_RANK["ssn"], m.start(), m.end(), "ssn"))


# --- IP addresses --------------------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\w)")  # not "2.4.1.0.zip"
_IPV4_VERSION_SUFFIX = re.compile(r"-[A-Za-z]")  # 10.2.3.4-beta is a version
# Right before a dotted quad: it is a version or a section number, not an address.
_VERSION_CUE = re.compile(
    r"(?i)(?:\b(?:versions?|ver\.?|release|build|firmware|patch|section|chapter|step|v|desktop"
    r"|app|client|nimbus|update|upgrade|updated|upgraded|downgraded|rolled back|driver|kernel"
    r"|bios|agent|plugin|extension|sdk|library|package|runtime|engine|windows|macos|ios|android"
    r"|chrome|firefox|edge|safari)(?:\s+(?:to|from))?|§)"
    r"\s*$"
)
# A dotted quad right after another and "to"/"and"/"or"/"-": the same kind as that one
# ("upgrade from 4.0.0.12 to 4.1.0.3").
_QUAD_THEN = re.compile(r"((?:\d{1,3}\.){3}\d{1,3})\s*(?:to|and|or|->|\u2192|-|,)\s*$")


def _version_before(text: str, start: int, depth: int = 0) -> bool:
    """Whether the dotted quad at ``start`` reads as a version, by what stands before it."""
    window_start = max(0, start - 24)
    window = text[window_start:start]
    if _VERSION_CUE.search(window):
        return True
    previous = _QUAD_THEN.search(window)
    return (
        previous is not None
        and depth < 3
        and _version_before(text, window_start + previous.start(1), depth + 1)
    )


_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]{2,39}(?:\.\d{1,3}){0,3}")


def _ipv4s(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    if text.count(".", pos) < 3:
        return
    for m in _IPV4.finditer(text, pos):
        start, end = m.span()
        if _IPV4_VERSION_SUFFIX.match(text, end):
            continue
        if _version_before(text, start):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        out.append((_RANK["ip"], start, end, "ip"))


def _ipv6s(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    if text.find("::", pos) < 0 and text.count(":", pos) < 6:
        return  # an IPv6 address has "::" or at least six colons
    for m in _IPV6.finditer(text, pos):
        value = m.group()
        start, end = m.span()
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        # "2001:db8::1:" at the end of a sentence: try once without the trailing colon.
        for candidate in (value, value[:-1]) if value.endswith(":") else (value,):
            if candidate.count(":") < 2 or not _DIGIT.search(candidate):
                continue  # "AB::CD" or a time like 12:30 is not an address
            if candidate.count(":") < 3 and "::" not in candidate:
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            out.append((_RANK["ip"], start, start + len(candidate), "ip"))
            break


# --- phone numbers -------------------------------------------------------------------------------

# A run of digits (and parenthesised groups) with single separators, 7+ digits, optionally "+".
_PHONE = re.compile(
    r"(?<![\w+@/.,#$€£¥%-])"
    r"(?:\+[ \u00a0]?)?"
    r"(?:\(\+?\d{1,4}\)|\d)"
    r"(?:[ \u00a0.\-/]?(?:\(\d{1,5}\)|\d)){6,20}"
)
_DATE_START = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}(?!\d)"
)
_UNIT_AFTER = re.compile(
    r"(?i)[ \u00a0]?(?:%|[kmgtp]i?b\b|bytes?\b|files?\b|items?\b|photos?\b|users?\b|seats?\b"
    r"|usd\b|eur\b|gbp\b|dollars?\b|euros?\b|times\b|x\b|\$|€|£)"
)
# The words right before a number say what it is. Read as words (not as regexes anchored at
# the number, which cost a search per position of the window).
_WORD = re.compile(r"[^\W\d_]+|#")
# Right before it: some other kind of number ("order #", "invoice no.", "tracking ID:").
_NOT_PHONE_WORDS = _words(
    "order ord invoice inv receipt ticket tkt case ref reference tracking track shipment parcel "
    "package transaction txn confirmation serial sku model build version ver po id code pin otp "
    "iban ssn routing swift bic batch lot part isbn #"
)
# "<word> number: …": unless the word is one of these, it says which (non-phone) number it is.
_NUMBER_WORDS = _words("number no nr num")
_PHONE_QUALIFIERS = _words(
    "phone mobile cell cellphone telephone tel contact direct new old home work office whatsapp "
    "fax callback landline my your his her their our the this that me emergency personal "
    "private business main support backup alternative alternate second other same"
)
# Anywhere in the window: it is a phone number ("call me on", "my mobile is").
_PHONE_CUE_WORDS = _words(
    "phone ph tel telephone mobile mob cell cellphone call calling ring text sms whatsapp "
    "signal viber telegram number reach contact fax landline handy portable telefon dial "
    "hotline tél téléphone teléfono telefone celular"
)


def _phone_context(text: str, start: int) -> bool | None:
    """What the words before a number say: False, it is another kind of number; True, it is
    cued as a phone number; None, neither."""
    words = [w.lower() for w in _WORD.findall(text, max(0, start - _LEFT_CONTEXT), start)]
    tail = words[-3:]
    while tail and tail[-1] in ("is", "was"):
        tail.pop()
    if tail:
        last = tail[-1]
        if last in _NOT_PHONE_WORDS:
            return False
        if last in _NUMBER_WORDS and len(tail) >= 2 and tail[-2] not in _PHONE_QUALIFIERS:
            return False  # "DUNS number is …", "registration no. …"
    return True if any(w in _PHONE_CUE_WORDS for w in words) else None


# National formats of these regions are tried when the number is cued or looks national
# ("0…", "(11) …"); the US format needs no cue. "+" and "00" numbers parse in any region.
FALLBACK_REGIONS = ("GB", "DE", "FR", "IN", "BR", "ES", "IT", "NL", "AU", "IE", "MX", "JP")
_TRUNK_ZERO = {"GB", "DE", "FR", "IN", "BR", "NL", "AU", "IE", "JP"}


def _possible_lengths(region: str) -> frozenset[int]:
    """The lengths a national number of ``region`` can have (a cheap check before validating)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    description = metadata.general_desc if metadata is not None else None
    if description is None or not description.possible_length:
        return frozenset(range(4, 18))
    return frozenset(description.possible_length)


_FALLBACK = [
    (
        region,
        phonenumbers.country_code_for_region(region),
        region in _TRUNK_ZERO,
        _possible_lengths(region),
    )
    for region in FALLBACK_REGIONS
]


_US_EXIT_CODE = re.compile(r"011[ \u00a0.-]")


def _valid_for_code(number: PhoneNumber) -> bool:
    """``is_valid_number``, faster: the likeliest regions of a country code first, so that a
    +1 number is checked against the US and Canada before the other 23 NANP regions."""
    code = number.country_code or 0
    if code == 1:
        if any(phonenumbers.is_valid_number_for_region(number, r) for r in ("US", "CA")):
            return True
        return phonenumbers.is_valid_number(number)
    return any(
        phonenumbers.is_valid_number_for_region(number, region)
        for region in phonenumbers.region_codes_for_country_code(code)
    )


def _valid_phone(candidate: str, *, cued: bool) -> bool:
    digits = _NON_DIGIT.sub("", candidate)
    international = ""
    if candidate.startswith("+"):
        international = candidate
    elif candidate.startswith("00"):  # the international prefix of most of the world
        international = "+" + candidate[2:]
    elif _US_EXIT_CODE.match(candidate):  # "011 44 20 …", dialled from North America
        international = "+" + digits[3:]
    if international:
        try:
            return _valid_for_code(phonenumbers.parse(international, None))
        except phonenumbers.NumberParseException:
            return False
    # A US/Canadian number: ten digits, or eleven with the leading 1; needs no cue.
    if len(digits) == 10 or (len(digits) == 11 and digits[0] == "1"):
        number = PhoneNumber(country_code=1, national_number=int(digits[-10:]))
        if any(phonenumbers.is_valid_number_for_region(number, r) for r in ("US", "CA")):
            return True
    if not (cued or candidate[0] in "0(") or not 8 <= len(digits) <= 13:
        return False
    # Other national formats. What parse() would do for each region, without parsing twelve
    # times: drop the trunk prefix "0" where the region has one (Italy keeps its leading zero).
    for region, country_code, trunk_zero, lengths in _FALLBACK:
        if digits[0] == "0" and trunk_zero:
            national = digits[1:]
            number = PhoneNumber(country_code=country_code, national_number=int(national))
        elif digits[0] == "0" and region == "IT":
            national = digits
            number = PhoneNumber(
                country_code=country_code, national_number=int(digits), italian_leading_zero=True
            )
        elif digits[0] == "0":
            continue
        else:
            national = digits
            number = PhoneNumber(country_code=country_code, national_number=int(digits))
        if len(national) in lengths and phonenumbers.is_valid_number_for_region(number, region):
            return True
    return False


def _phones(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    size = len(text)
    for m in _PHONE.finditer(text, pos):
        start, end = m.span()
        candidate = m.group()
        digit_count = len(_NON_DIGIT.sub("", candidate))
        if digit_count < 7 or digit_count > 17 or _DATE_START.match(candidate):
            continue
        if end < size and (text[end].isalpha() or text[end] == "_"):
            continue
        if _UNIT_AFTER.match(text, end):
            continue
        context = _phone_context(text, start)
        if context is False:
            continue
        cued = context is True
        if _valid_phone(candidate, cued=cued):
            out.append((_RANK["phone"], start, end, "phone"))
            continue
        # Two numbers joined by a slash ("415-555-2671/332-445-1234"): each side on its own.
        offset = 0
        for side in candidate.split("/") if "/" in candidate else ():
            if len(_NON_DIGIT.sub("", side)) >= 7 and _valid_phone(side, cued=cued):
                out.append((_RANK["phone"], start + offset, start + offset + len(side), "phone"))
            offset += len(side) + 1


# --- secrets -------------------------------------------------------------------------------------

_STRONG_SECRET = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d{2}-)?[A-Za-z0-9_-]{20,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|whsec_[A-Za-z0-9]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|AIza[A-Za-z0-9_-]{35}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    # Webhook URLs are their own credential: anyone holding one can post.
    r"|hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}"
    r"|discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{30,}"
    r")(?![\w-])"
)
_BEARER = re.compile(
    r"(?i)\b(?:bearer|authorization:\s*basic)[ \t]+(?=([A-Za-z0-9\-._~+/]{16,}=*))"
)
_URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:([^\s/@]+)@")
# A key ("password", "api_key", "AWS_SECRET_ACCESS_KEY", "recovery key") and its value.
_KEY_VALUE = re.compile(
    r"(?i)(?<![a-z0-9])(?:password|passwd|passphrase|passcode|pwd|pass|pw|secret|token"
    r"|(?:client|app|api|access|secret|private|recovery|backup|encryption|master|auth|refresh"
    r"|bearer|session)[_ -]?(?:secret|key|token|code|password))"
    r"[\"']?[ \t]{0,3}(:|=|\bis\b|\bwas\b)[ \t]{0,3}(?=[\"'`]?([^\s\"'`,;]{4,128}))"
)  # the value is read in a look-ahead: each key is judged on its own, wherever a scan starts
_KEY_HINTS = ("pass", "pw", "secret", "key", "token", "code")  # substrings of every key above
_MASKED = re.compile(r"[*x•.#-]+|[\[<{$(].*", re.IGNORECASE)  # ****, <your password>, ${VAR}
_NOT_A_VALUE = _words(
    "reset changed change forgotten forgot expired expiring required incorrect wrong invalid "
    "none null empty unknown same correct blank missing hidden protected optional true false "
    "yes not never still always working broken enabled disabled set updated saved stored "
    "accepted rejected valid revoked needed please where what which there here below above "
    "attached sent generated"
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{20,}={0,2}(?![A-Za-z0-9_+/-])")
_LONG_RUN = re.compile(r"[A-Za-z0-9_+/.~=-]{15,}")  # every secret pattern lies inside such a run
_ID_CUE = re.compile(r"(?i)\b(?:id|identifier|uuid|hash|checksum)\s*(?:[:=#]|\bis\b)?\s*$")
_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^A-Za-z\d]+")
_WORDLIKE = re.compile(r"[A-Z]?[a-z]{2,}|[A-Z]{2,}|\d{1,8}|[vV]\d+")
_PART_SEPARATOR = re.compile(r"[-_/+]")
MIN_SECRET_ENTROPY = 3.0  # bits per character; a random 20-character token has about 4
MIN_SEGMENT_DENSITY = 0.3  # case/digit changes per character; CamelCase words have about 0.2


def _entropy(value: str) -> float:
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in Counter(value).values())


def _random_looking(token: str) -> bool:
    """Upper, lower and digits, high entropy, changing class often, not made of words."""
    if not (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    ):
        return False
    parts = [p for p in _PART_SEPARATOR.split(token) if p]
    if len(parts) >= 2 and sum(1 for p in parts if _WORDLIKE.fullmatch(p)) >= 2:
        return False  # Q3_Report_FINAL_v2, Screenshot_2024-11-28_at_10
    core = token.rstrip("=")
    if len(_SEGMENT.findall(core)) / len(core) < MIN_SEGMENT_DENSITY:
        return False  # MyVacationPhotos2024Backup
    return _entropy(core) >= MIN_SECRET_ENTROPY


def _in_url(text: str, start: int) -> bool:
    """Whether the whitespace-delimited word holding ``start`` is a URL (links pass)."""
    i = start
    floor = max(0, start - 300)
    while i > floor and not text[i - 1].isspace():
        i -= 1
    head = text[i:start]
    return "://" in head or head.lower().startswith("www.")


def _secret_value_ok(value: str, separator: str) -> bool:
    core = value.rstrip(".,!?)]")  # "The password is wrong!" ends a sentence
    if len(core) < 4 or _OWN_ID.search(core) or _MASKED.fullmatch(core):
        return False
    if core.lower() in _NOT_A_VALUE:
        return False
    if separator != "=":
        # "my password is hunter2", "password: Tr0ub4dor" but not "the password is incorrect"
        # or "Reset your password: open Settings": a plain word after ':' or 'is' is prose.
        return not (core.isalpha() and (core.islower() or core.istitle()))
    return True


def _secrets(
    text: str, pos: int, key_pos: int, lower: str, out: list[tuple[int, int, int, str]]
) -> None:
    """Secrets starting at ``pos``; patterns with a key before the value ("password: …",
    "Bearer …", "://user:…@") start looking at ``key_pos``. ``lower`` is ``text[key_pos:]``
    lower-cased, for the cheap checks that skip a pattern."""
    strong = _RANK["strong_secret"]
    for run in _LONG_RUN.finditer(text, pos):
        # One cheap scan for long runs, then the expensive patterns inside them only (the
        # character after the run is in view for their look-aheads).
        bound = min(len(text), run.end() + 1)
        for m in _STRONG_SECRET.finditer(text, run.start(), bound):
            if _DIGIT.search(m.group()):
                out.append((strong, m.start(), m.end(), "secret"))
        for m in _TOKEN.finditer(text, run.start(), bound):
            token = m.group()
            if _OWN_ID.search(token) or not _random_looking(token) or _in_url(text, m.start()):
                continue
            if _ID_CUE.search(text, max(0, m.start() - 20), m.start()):
                continue  # "folder ID: 1BxiMVs0XRA5nF…" names something, it opens nothing
            out.append((_GENERIC_SECRET_RANK, m.start(), m.end(), "secret"))
    if "bearer" in lower or "basic" in lower:
        for m in _BEARER.finditer(text, key_pos):
            value = m.group(1)
            if _DIGIT.search(value) and not _OWN_ID.search(value):
                out.append((strong, m.start(1), m.end(1), "secret"))
    if "://" in lower:
        for m in _URL_CREDENTIALS.finditer(text, key_pos):
            out.append((strong, m.start(1), m.end(1), "secret"))
    if any(hint in lower for hint in _KEY_HINTS):
        for m in _KEY_VALUE.finditer(text, key_pos):
            value = m.group(2)
            if _secret_value_ok(value, m.group(1)):
                # A sentence's full stop is not part of the password; a final "!" may be.
                end = m.start(2) + len(value.rstrip(".,?)]"))
                out.append((strong, m.start(2), end, "secret"))


# --- detection -----------------------------------------------------------------------------------


# (digits one match needs, detector), for the kinds made of digits.
_NUMERIC_DETECTORS: tuple[
    tuple[int, Callable[[str, int, list[tuple[int, int, int, str]]], None]], ...
] = (
    (1, _ipv6s),
    (2, _ibans),
    (3, _cvvs),
    (4, _ipv4s),
    (7, _phones),
    (9, _ssns),
    (13, _cards),
)


def _detect(text: str, *, lo: int = 0, scan_from: int = 0) -> list[tuple[int, int, str]]:
    """Resolved (start, end, kind) spans of ``text`` that start at or after ``lo``.

    Detectors scan from ``lo``, except that key-value secrets are looked for from ``scan_from``
    (<= lo) so that a value at ``lo`` whose key lies before it is still seen; every
    left-context rule reads the whole of ``text``.
    """
    candidates: list[tuple[int, int, int, str]] = []
    if text.find("@", lo) >= 0:
        _emails(text, lo, candidates)
    _secrets(text, lo, scan_from, text[scan_from:].lower(), candidates)
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
    matches = [PiiMatch(kind, s, e, text[s:e]) for s, e, kind in _detect(text)]
    if allowlist:
        matches = [m for m in matches if not allowlist.allows(m)]
    return matches


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
            for s, e, kind in _detect(text, lo=lo, scan_from=max(0, lo - _STREAM_CONTEXT))
        ]
        if found and self._allowlist:
            found = [m for m in found if not self._allowlist.allows(m)]
        self.matches.extend(found)
        self._done = cut
        return _replace(text, found, lo, cut) if found else text[lo:cut]
