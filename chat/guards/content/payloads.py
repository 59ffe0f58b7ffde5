"""Payloads hidden in a message for the content filter to scan: base64 and hex chunks decoded,
Unicode tag characters read back, and the whole text rot13'd or reversed (``hidden_payloads``).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable
from itertools import chain, islice
from typing import Final

_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_ROT13: Final = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)
_B64_CHUNK = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{16,}={0,2}(?![\w+/=-])")
_HEX_CHUNK = re.compile(
    r"(?:\\x[0-9a-fA-F]{2}){6,}|(?<![0-9a-zA-Z])(?:0x)?(?:[0-9a-fA-F]{2}[ :]?){8,}(?![0-9a-zA-Z])"
)
_MAX_PAYLOADS = 6
# A whole-text rot13 or reversal is scanned only when it reads like an attack at all: a full rule
# pass costs about 80 µs, this check about 2 µs.
_PAYLOAD_STEMS: Final = (
    "ignor", "disregard", "forget", "instruct", "prompt", "system", "rule", "previous", "reveal",
    "dump", "database", "password", "jailbr", "pretend", "dan", "admin", "customer", "user",
    "chat", "secret", "bypass", "delete", "kill", "restrict", "filter", "guideline", "ticket",
)  # fmt: skip


def _as_text(raw: bytes) -> str | None:
    """Decoded bytes as text, when they read as text (an image header or a hash does not)."""
    if len(raw) < 4:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    letters = sum(1 for c in text if c.isalpha())
    if printable < 0.95 * len(text) or letters < 0.5 * len(text.replace(" ", "")):
        return None
    return text


def _base64_payloads(text: str) -> Iterable[str]:
    for match in _B64_CHUNK.finditer(text):
        chunk = match[0]
        if chunk.isalpha() and (chunk.islower() or chunk.isupper()):
            continue  # a long word, not base64
        body = chunk.rstrip("=")
        urlsafe = "-" in body or "_" in body
        if urlsafe and ("+" in body or "/" in body):
            continue
        body += "=" * (-len(body) % 4)
        try:
            raw = base64.b64decode(body, altchars=b"-_" if urlsafe else None, validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = _as_text(raw)
        if decoded:
            yield decoded


def _hex_payloads(text: str) -> Iterable[str]:
    for match in _HEX_CHUNK.finditer(text):
        digits = re.sub(r"\\x|0x|[ :]", "", match[0])
        if len(digits) % 2:
            continue
        decoded = _as_text(bytes.fromhex(digits))
        if decoded:
            yield decoded


def _tag_payloads(text: str) -> Iterable[str]:
    for match in _TAG_RUN.finditer(text):
        hidden = "".join(chr(ord(c) - 0xE0000) for c in match[0] if 0xE0020 <= ord(c) <= 0xE007E)
        if len(hidden) >= 4:
            yield hidden


def hidden_payloads(text: str, plain_text: str) -> list[tuple[str, str]]:
    """(kind, payload) pairs: decoded chunks and tag characters of ``text`` (at most
    six), then ``plain_text`` rot13'd and reversed when either reads like an attack."""
    raw = unicodedata.normalize("NFKC", text) if not text.isascii() else text
    decoded = chain(
        (("base64", p) for p in _base64_payloads(raw)),
        (("hex", p) for p in _hex_payloads(raw)),
        (("unicode_tags", p) for p in _tag_payloads(text)),
    )
    payloads = list(islice(decoded, _MAX_PAYLOADS))
    for kind, whole in (("rot13", plain_text.translate(_ROT13)), ("reversed", plain_text[::-1])):
        if any(stem in whole for stem in _PAYLOAD_STEMS):
            payloads.append((kind, whole))
    return payloads
