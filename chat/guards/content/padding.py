"""Padding and stuffing for the content filter: a character repeated hundreds of times, text
that compresses to almost nothing, whitespace, symbol or token stuffing (``length_reasons``)."""

from __future__ import annotations

import re
import zlib

_WORD_CHAR_RUN = re.compile(r"([^\W_])\1{49,}")
_ANY_CHAR_RUN = re.compile(r"(\S)\1{199,}")
_WHITESPACE_RUN = re.compile(r"\s{300,}")
_LONG_TOKEN = re.compile(r"\S{1000,}")
_ENCODED_TOKEN = re.compile(r"(?:data:[\w/+.-]+;base64,)?[A-Za-z0-9+/=_-]+|https?://\S+")


def length_reasons(text: str) -> list[str]:
    """Padding and stuffing: what pushes a payload out of sight or floods the context."""
    reasons = []
    if _WORD_CHAR_RUN.search(text) or _ANY_CHAR_RUN.search(text):
        reasons.append("length:char_run")
    if len(text) >= 400:
        if _WHITESPACE_RUN.search(text) or sum(c.isspace() for c in text) > 0.6 * len(text):
            reasons.append("length:whitespace_padding")
        encoded = text.encode("utf-8")
        if len(zlib.compress(encoded, 1)) < 0.1 * len(encoded):
            reasons.append("length:repetition")
        symbols = sum(1 for c in text if not (c.isalnum() or c.isspace() or c in ".,;:!?'\"()-/"))
        if symbols > 0.5 * len(text):
            reasons.append("length:symbol_stuffing")
        for token in _LONG_TOKEN.findall(text):
            if not _ENCODED_TOKEN.fullmatch(token):
                reasons.append("length:token_stuffing")
                break
    return reasons
