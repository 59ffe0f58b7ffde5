"""PII detectors for contact details: e-mail addresses, and phone numbers (``phonenumbers``
validates them; US and Canadian numbers need no cue, national formats of ``FALLBACK_REGIONS``
need one or a leading "0"/"(", "+" and "00" numbers parse in any region).

``phonenumbers`` costs about 30 µs a parse, so it only sees digit runs shaped like phone
numbers; ``PhoneNumberMatcher`` is not used: it costs about 250 µs on any 80-character message.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumber

from chat.guards.pii.candidates import NON_DIGIT, RANK, words

_LEFT_CONTEXT = 40  # characters before a candidate that cue rules look at


# --- e-mail --------------------------------------------------------------------------------------

# Domain labels are letters and digits of any script ("müller.de"), hyphens inside.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@[^\W_](?:[\w-]{0,61}[^\W_])?"
    r"(?:\.[^\W_](?:[\w-]{0,61}[^\W_])?)*\.[^\W\d_]{2,24}(?![\w-])"
)


def detect_emails(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """E-mail addresses from ``pos`` on, appended to ``out`` as candidates."""
    for m in _EMAIL.finditer(text, pos):
        out.append((RANK["email"], m.start(), m.end(), "email"))


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
_NOT_PHONE_WORDS = words(
    "order ord invoice inv receipt ticket tkt case ref reference tracking track shipment parcel "
    "package transaction txn confirmation serial sku model build version ver po id code pin otp "
    "iban ssn routing swift bic batch lot part isbn #"
)
# "<word> number: …": unless the word is one of these, it says which (non-phone) number it is.
_NUMBER_WORDS = words("number no nr num")
_PHONE_QUALIFIERS = words(
    "phone mobile cell cellphone telephone tel contact direct new old home work office whatsapp "
    "fax callback landline my your his her their our the this that me emergency personal "
    "private business main support backup alternative alternate second other same"
)
# Anywhere in the window: it is a phone number ("call me on", "my mobile is").
_PHONE_CUE_WORDS = words(
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
    digits = NON_DIGIT.sub("", candidate)
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


def detect_phones(text: str, pos: int, out: list[tuple[int, int, int, str]]) -> None:
    """Phone numbers from ``pos`` on that ``phonenumbers`` validates, appended to ``out``."""
    size = len(text)
    for m in _PHONE.finditer(text, pos):
        start, end = m.span()
        candidate = m.group()
        digit_count = len(NON_DIGIT.sub("", candidate))
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
            out.append((RANK["phone"], start, end, "phone"))
            continue
        # Two numbers joined by a slash ("415-555-2671/332-445-1234"): each side on its own.
        offset = 0
        for side in candidate.split("/") if "/" in candidate else ():
            if len(NON_DIGIT.sub("", side)) >= 7 and _valid_phone(side, cued=cued):
                out.append((RANK["phone"], start + offset, start + offset + len(side), "phone"))
            offset += len(side) + 1
