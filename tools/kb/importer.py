"""Importing Markdown articles: per file a YAML front matter (validated) and a Markdown body,
upserted by id (``manage.py loadkb``, by default of the bundled starter knowledge base)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tools.models import ARTICLE_ID_MAX, Article

_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)
_url_validator = URLValidator(schemes=["http", "https"])


class FrontMatter(BaseModel):
    """The YAML header of an article file; unknown keys are ignored for forward compatibility."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str | None = Field(None, pattern=rf"^kb_[A-Za-z0-9_-]{{1,{ARTICLE_ID_MAX - 3}}}$")
    title: str = Field(min_length=1, max_length=300)
    category: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    tags: list[str] = Field(default_factory=list, max_length=32)
    url: str = Field("", max_length=500)
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
    updated: dt.date | None = None

    @field_validator("category", "language", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        tags = [tag.strip().lower() for tag in value]
        if any(not tag or len(tag) > 64 for tag in tags):
            raise ValueError("each tag must be 1 to 64 characters")
        return list(dict.fromkeys(tags))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value:
            try:
                _url_validator(value)
            except DjangoValidationError as exc:
                raise ValueError("must be an http(s) URL") from exc
        return value

    @field_validator("updated", mode="before")
    @classmethod
    def _date_only(cls, value: object) -> object:
        # YAML reads "2026-03-17 10:00" as a datetime; the article keeps its day.
        return value.date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True)
class ImportProblem:
    file: str
    message: str


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Markdown files without front matter (a README): not articles, not errors.
    skipped: list[str] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged)


class _NotAnArticle(Exception):
    pass


_IMPORTED_FIELDS = ("title", "content", "url", "category", "tags", "language", "updated")


def parse_article_file(path: Path) -> dict[str, Any]:
    """The article fields of one Markdown file; raises ValueError saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        if text.startswith("---"):
            raise ValueError("front matter is not closed by a '---' line")
        raise _NotAnArticle
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (front matter line {where.line + 1})" if where is not None else ""
        raise ValueError(f"front matter is not valid YAML{line}") from exc
    if not isinstance(header, dict):
        raise ValueError("front matter must be a YAML mapping of fields")
    try:
        meta = FrontMatter.model_validate(header)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'front matter'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(problems) from exc
    body = match.group(2).strip()
    if not body:
        raise ValueError("the article has no body")
    updated = meta.updated or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date()
    return {
        # No id in the file: derive one from its name, so importing it again updates, not adds.
        "id": meta.id or "kb_" + re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)[: ARTICLE_ID_MAX - 3],
        "title": meta.title,
        "content": body,
        "url": meta.url,
        "category": meta.category,
        "tags": meta.tags,
        "language": meta.language,
        "updated": updated,
    }


def import_articles(*, path: Path) -> ImportReport:
    """Upsert every ``*.md`` article under ``path`` (a folder or one file) by id; idempotent."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    files = [path] if path.is_file() else sorted(path.glob("*.md"))
    report = ImportReport()
    parsed: dict[str, tuple[str, dict[str, Any]]] = {}
    for file in files:
        try:
            values = parse_article_file(file)
        except _NotAnArticle:
            report.skipped.append(file.name)
            continue
        except (ValueError, OSError) as exc:
            report.errors.append(ImportProblem(file=file.name, message=str(exc)))
            continue
        if values["id"] in parsed:
            first = parsed[values["id"]][0]
            report.errors.append(
                ImportProblem(file=file.name, message=f"id {values['id']} is also used by {first}")
            )
            continue
        parsed[values["id"]] = (file.name, values)

    with transaction.atomic():
        existing = Article.objects.in_bulk(list(parsed))
        new: list[Article] = []
        for article_id, (_name, values) in parsed.items():
            article = existing.get(article_id)
            if article is None:
                new.append(Article(**values))
                report.created.append(article_id)
                continue
            changed = [f for f in _IMPORTED_FIELDS if getattr(article, f) != values[f]]
            if not changed:
                report.unchanged.append(article_id)
                continue
            for name in changed:
                setattr(article, name, values[name])
            article.save(update_fields=[*changed, "modified"])
            report.updated.append(article_id)
        Article.objects.bulk_create(new, batch_size=500)
    return report
