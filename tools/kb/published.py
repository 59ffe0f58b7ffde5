"""The e-mail addresses the knowledge base publishes (support@, dpo@, …), which PII redaction
leaves alone."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Count, Max

from tools.models import Article

_PUBLISHED_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_published: tuple[tuple[Any, ...], frozenset[str]] | None = None


def published_addresses() -> frozenset[str]:
    """The e-mail addresses the articles give to customers (support@, dpo@, …), lower-cased.

    They are the company's, published on purpose: PII redaction leaves them alone, so an answer
    quoting an article still says where to write. Read again only when the articles changed
    (their count or newest modification), so calling this often costs one small query.
    """
    global _published

    version = tuple(Article.objects.aggregate(n=Count("id"), last=Max("modified")).values())
    cached = _published
    if cached is not None and cached[0] == version:
        return cached[1]
    found: set[str] = set()
    for content in (
        Article.objects.filter(content__contains="@").values_list("content", flat=True).iterator()
    ):
        found.update(address.lower() for address in _PUBLISHED_EMAIL.findall(content))
    _published = (version, frozenset(found))
    return _published[1]
