"""REST schemas and answer of the knowledge-base search (API.md "REST": ``POST /api/tools/search``).
The route is in ``chat.tools_api``, which checks the optional ``sessionId`` (chat owns sessions)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from ninja import Field, Schema
from ninja.schema import DjangoGetter
from pydantic import ConfigDict, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from supportbot.errors import ApiError
from tools.kb.search import MAX_RESULTS_LIMIT, search_articles

MAX_QUERY_CHARS = 500


class _JsonObject(Schema):
    """An input schema that accepts JSON objects only.

    ninja's Schema reads fields as attributes, so a string or a list would otherwise validate
    as an object whose fields all take their defaults ("filters": "x" would mean no filters).
    """

    @model_validator(mode="before")
    @classmethod
    def _object_only(cls, value: object) -> object:
        raw = value._obj if isinstance(value, DjangoGetter) else value  # ninja's wrapper
        if not isinstance(raw, dict):
            raise PydanticCustomError("dict_type", "Input should be a JSON object")
        return value


class SearchFilters(_JsonObject):
    category: str | None = Field(None, max_length=64)
    language: str | None = Field(None, max_length=16)
    tags: list[str] | None = Field(None, max_length=20, description="any of these tags")
    updated_after: dt.date | None = Field(
        None, alias="updatedAfter", description="only articles updated on or after this day"
    )


class SearchIn(_JsonObject):
    # ``query`` is checked by ``_query_text``, not by pydantic: the API-wide error mapping
    # drops "query" from error locations (ninja's name for the query string), which would
    # report a missing or mistyped query as a malformed body.
    model_config = ConfigDict(json_schema_extra={"required": ["query"]})

    query: Annotated[
        object,
        WithJsonSchema(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY_CHARS,
                "description": "a question in natural language",
            }
        ),
    ] = None
    # Strict: a bool or a numeric string is a client bug, not a number of results.
    max_results: int = Field(5, alias="maxResults", ge=1, le=MAX_RESULTS_LIMIT, strict=True)
    filters: SearchFilters | None = None
    session_id: str | None = Field(None, alias="sessionId", max_length=128)


class SearchHitOut(Schema):
    id: str
    title: str
    content: str = Field(description="the best-matching passage of the article")
    url: str
    category: str
    tags: list[str]
    relevance: float = Field(description="0..1: how much of the query the article covers")
    last_updated: int = Field(alias="lastUpdated", description="epoch milliseconds")


class SearchOut(Schema):
    results: list[SearchHitOut]
    total_results: int = Field(alias="totalResults", description="articles matching at all")
    search_time: float = Field(alias="searchTime", description="milliseconds")
    query: str


def _epoch_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _query_text(value: object) -> str:
    if value is None:
        raise ApiError("MISSING_REQUIRED_FIELD", "query is required.", details={"field": "query"})
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_QUERY_CHARS:
        raise ApiError(
            "INVALID_FIELD_VALUE",
            f"query must be a string of 1 to {MAX_QUERY_CHARS} characters besides spaces.",
            details={"field": "query"},
        )
    return text


async def search_answer(payload: SearchIn) -> dict[str, Any]:
    """The answer of ``POST /api/tools/search`` for a parsed body."""
    query = _query_text(payload.query)
    filters = payload.filters
    started = time.perf_counter()
    result = await sync_to_async(search_articles)(
        query=query,
        max_results=payload.max_results,
        category=filters.category if filters else None,
        language=filters.language if filters else None,
        tags=filters.tags if filters else None,
        updated_after=filters.updated_after if filters else None,
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    return {
        "results": [
            {
                "id": hit.id,
                "title": hit.title,
                "content": hit.passage,  # the passage, not the article: results stay small
                "url": hit.url,
                "category": hit.category,
                "tags": hit.tags,
                "relevance": hit.relevance,
                "lastUpdated": _epoch_ms(hit.updated),
            }
            for hit in result.hits
        ],
        "totalResults": result.total,
        "searchTime": round(elapsed_ms, 3),
        "query": query,
    }
