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

Where things live: ``matches`` (kinds, ``PiiMatch``, fingerprints, the allowlist), the detectors
``contacts`` (e-mail, phone), ``numbers`` (IBAN, card, SSN), ``ip_addresses`` and ``credentials``
(secrets), which share ``candidates``; ``detection`` (``find_pii``) and ``redact`` (``redact_pii``,
``StreamRedactor``). This package re-exports what the rest of the project imports.
"""

from __future__ import annotations

from chat.guards.pii.detection import find_pii
from chat.guards.pii.matches import (
    EMPTY_ALLOWLIST,
    KINDS,
    PLACEHOLDERS,
    Allowlist,
    PiiMatch,
    value_fingerprint,
)
from chat.guards.pii.redact import Redaction, StreamRedactor, redact_pii

__all__ = [
    "EMPTY_ALLOWLIST",
    "KINDS",
    "PLACEHOLDERS",
    "Allowlist",
    "PiiMatch",
    "Redaction",
    "StreamRedactor",
    "find_pii",
    "redact_pii",
    "value_fingerprint",
]
