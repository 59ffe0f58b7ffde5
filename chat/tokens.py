"""Token counting for context budgets: a real tokenizer when one is available offline.

tiktoken fetches its encodings from the network on first use, which this product must never
do; it is used only when ``TIKTOKEN_CACHE_DIR`` holds the encoding already. Otherwise a
conservative estimate (about four characters per token, never fewer tokens than words) stands in.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable
from typing import Any

_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# Per-message framing the chat format adds (role markers and separators).
MESSAGE_OVERHEAD_TOKENS = 4


def _estimate(text: str) -> int:
    if not text:
        return 0
    return max(math.ceil(len(text) / 4), len(_WORDS.findall(text)))


@functools.cache
def _counter() -> Callable[[str], int]:
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        return _estimate
    try:
        # Imported only when an encoding is cached: without one tiktoken is never used, so those
        # processes skip its import (~25 ms), and a broken install degrades to the estimate.
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:
        return _estimate
    return lambda text: len(encoding.encode(text, disallowed_special=()))


# Every turn re-counts the conversation's recent messages (up to the whole context budget), so
# counts of short texts are remembered; at most 4,096 texts of at most 1,024 characters are kept.
_CACHED_MAX_CHARS = 1024


@functools.lru_cache(maxsize=4096)
def _count_short(text: str) -> int:
    return _counter()(text)


def count_tokens(text: str) -> int:
    """Tokens in ``text``: exact with a cached tiktoken encoding, else an upper-leaning estimate."""
    if len(text) <= _CACHED_MAX_CHARS:
        return _count_short(text)
    return _counter()(text)


def count_message_tokens(message: dict[str, Any]) -> int:
    """Tokens one chat message costs in a prompt."""
    content = message.get("content") or ""
    return MESSAGE_OVERHEAD_TOKENS + count_tokens(
        content if isinstance(content, str) else str(content)
    )
