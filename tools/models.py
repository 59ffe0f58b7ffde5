"""The knowledge base: help-centre articles the assistant searches and cites.

The full-text index is not a Django field. It is maintained by the database itself, so every
write path (admin, ``loadkb``, ORM ``save``/``update``/``delete``, raw SQL) keeps it in sync:
on SQLite an FTS5 table fed by triggers, on PostgreSQL a generated ``tsvector`` column. Both are
created in ``tools/migrations/0002_search_index.py``; ``tools/kb.py`` queries them.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

ARTICLE_ID_MAX = 64


def new_article_id() -> str:
    """A fresh ``kb_`` id for an article created without one (80 random bits)."""
    return "kb_" + secrets.token_hex(10)


def today() -> dt.date:
    return timezone.now().date()


class Article(models.Model):
    """One knowledge-base article (Markdown body, metadata from its front matter)."""

    id = models.CharField(primary_key=True, max_length=ARTICLE_ID_MAX, default=new_article_id)
    title = models.CharField(max_length=300)
    content = models.TextField(help_text="Markdown body.")
    url = models.URLField(max_length=500, blank=True, default="")
    category = models.CharField(max_length=64, db_index=True)
    tags = models.JSONField(default=list, blank=True, help_text='A list, e.g. ["sso", "saml"].')
    language = models.CharField(max_length=16, default="en", db_index=True)
    updated = models.DateField(default=today, help_text="When the article's content last changed.")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id}: {self.title}"

    def clean(self) -> None:
        if not self.id.startswith("kb_"):
            raise ValidationError({"id": "Article ids start with kb_."})
        if not isinstance(self.tags, list) or not all(
            isinstance(tag, str) and tag.strip() for tag in self.tags
        ):
            raise ValidationError({"tags": "Tags must be a list of non-empty strings."})
        self.tags = [tag.strip().lower() for tag in self.tags]
        self.category = self.category.strip().lower()
