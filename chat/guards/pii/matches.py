"""What PII detection finds: the kinds and their placeholders, ``PiiMatch``, the keyed
``value_fingerprint`` that is stored instead of a clear value, and the ``Allowlist`` of values
that are not redacted (by fingerprint, or by a pattern the clear value fullmatches)."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

# Settings are read when a fingerprint is made, not at import: detection needs none.
from django.conf import settings

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
