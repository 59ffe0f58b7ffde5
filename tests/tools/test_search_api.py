"""``POST /api/tools/search``: the documented shape (API.md) and the documented errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tools.kb.importer import import_articles

STARTER_KB = Path(__file__).resolve().parents[2] / "tools" / "starter_kb"
URL = "/api/tools/search"

pytestmark = pytest.mark.django_db


@pytest.fixture
def starter_kb() -> None:
    import_articles(path=STARTER_KB)


def post(client: Client, body: Any, *, raw: bool = False) -> tuple[int, dict[str, Any]]:
    data = body if raw else json.dumps(body)
    response = client.post(URL, data=data, content_type="application/json")
    assert response["Content-Type"].startswith("application/json")
    return response.status_code, response.json()


def test_search_returns_the_documented_shape(client: Client, starter_kb: None) -> None:
    status, body = post(client, {"query": "  I forgot my password  ", "maxResults": 3})
    assert status == 200
    assert set(body) == {"results", "totalResults", "searchTime", "query"}
    assert body["query"] == "I forgot my password"
    assert isinstance(body["searchTime"], float)
    assert 0 < body["searchTime"] < 1000
    assert body["totalResults"] >= len(body["results"]) == 3
    first = body["results"][0]
    assert set(first) == {
        "id",
        "title",
        "content",
        "url",
        "category",
        "tags",
        "relevance",
        "lastUpdated",
    }
    assert first["id"] == "kb_002"
    assert first["title"] == "Resetting or changing your password"
    assert first["url"] == "https://help.nimbus.example/articles/reset-password"
    assert first["category"] == "account"
    assert first["tags"] == ["password", "reset", "forgot-password", "sign-in", "lockout"]
    assert first["lastUpdated"] == int(dt.datetime(2026, 3, 17, tzinfo=dt.UTC).timestamp() * 1000)
    # The best passage, not the whole article.
    assert "https://app.nimbus.example/forgot" in first["content"]
    assert len(first["content"]) <= 400
    relevances = [r["relevance"] for r in body["results"]]
    assert relevances == sorted(relevances, reverse=True)
    assert all(0 <= r <= 1 for r in relevances)


def test_default_is_five_results(client: Client, starter_kb: None) -> None:
    status, body = post(client, {"query": "sync files between computers"})
    assert status == 200
    assert len(body["results"]) == 5


def new_session_id(client: Client) -> str:
    response = client.post("/api/session", data="{}", content_type="application/json")
    return str(response.json()["sessionId"])


def test_filters_narrow_the_results(client: Client, starter_kb: None) -> None:
    status, body = post(
        client,
        {
            "query": "sync on my computer",
            "maxResults": 20,
            "filters": {"category": "sync", "language": "en", "tags": ["linux", "macos"]},
            "sessionId": new_session_id(client),
        },
    )
    assert status == 200
    assert {r["id"] for r in body["results"]} == {"kb_013", "kb_014"}
    assert body["totalResults"] == 2


def test_no_match_is_an_empty_result_not_an_error(client: Client, starter_kb: None) -> None:
    status, body = post(client, {"query": "quokka xylophone"})
    assert (status, body["results"], body["totalResults"]) == (200, [], 0)


def error_of(client: Client, body: Any, *, raw: bool = False) -> tuple[int, str, Any]:
    status, payload = post(client, body, raw=raw)
    return status, payload["error"]["code"], payload["error"].get("details")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "MISSING_REQUIRED_FIELD", "query"),
        ({"maxResults": 3}, "MISSING_REQUIRED_FIELD", "query"),
        ({"query": ""}, "INVALID_FIELD_VALUE", "query"),
        ({"query": "   \n "}, "INVALID_FIELD_VALUE", "query"),
        ({"query": "x" * 501}, "INVALID_FIELD_VALUE", "query"),
        ({"query": 42}, "INVALID_FIELD_VALUE", "query"),
        ({"query": ["password"]}, "INVALID_FIELD_VALUE", "query"),
        ({"query": "password", "maxResults": 0}, "INVALID_FIELD_VALUE", "maxResults"),
        ({"query": "password", "maxResults": 21}, "INVALID_FIELD_VALUE", "maxResults"),
        ({"query": "password", "maxResults": "5"}, "INVALID_FIELD_VALUE", "maxResults"),
        ({"query": "password", "maxResults": True}, "INVALID_FIELD_VALUE", "maxResults"),
        ({"query": "password", "maxResults": 2.5}, "INVALID_FIELD_VALUE", "maxResults"),
        ({"query": "password", "filters": "billing"}, "INVALID_FIELD_VALUE", "filters"),
        ({"query": "password", "filters": {"tags": "sso"}}, "INVALID_FIELD_VALUE", "filters.tags"),
        ({"query": "password", "sessionId": 7}, "INVALID_FIELD_VALUE", "sessionId"),
    ],
)
def test_invalid_fields_get_the_documented_error(
    client: Client, body: dict[str, Any], code: str, field: str
) -> None:
    status, got, details = error_of(client, body)
    assert (status, got) == (400, code)
    fields = [details["field"]] if "field" in details else [f["field"] for f in details["fields"]]
    assert field in fields


def test_a_query_of_500_characters_is_accepted(client: Client, starter_kb: None) -> None:
    status, _ = post(client, {"query": "password " * 55 + "reset"})
    assert status == 200


@pytest.mark.parametrize("raw", ['{"query": "password"', "query=password", "null", "[1, 2]", '"x"'])
def test_a_body_that_is_not_a_json_object_is_refused(client: Client, raw: str) -> None:
    status, code, _ = error_of(client, raw, raw=True)
    assert (status, code) == (400, "INVALID_REQUEST_FORMAT")


def test_an_empty_body_misses_the_query(client: Client) -> None:
    status, code, _ = error_of(client, "", raw=True)
    assert (status, code) == (400, "MISSING_REQUIRED_FIELD")


def test_errors_carry_the_api_error_envelope(client: Client) -> None:
    status, body = post(client, {"query": ""})
    assert status == 400
    assert set(body) >= {"error", "requestId", "timestamp", "path", "method"}
    assert (body["path"], body["method"]) == (URL, "POST")
    assert body["error"]["retryable"] is False


def test_get_is_not_allowed(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 405


def test_openapi_documents_the_endpoint(client: Client) -> None:
    schema = client.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/tools/search"]["post"]
    assert "requestBody" in operation
    body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = schema["components"]["schemas"][body_ref.rsplit("/", 1)[-1]]
    assert body_schema["required"] == ["query"]
    assert {"query", "maxResults", "filters", "sessionId"} <= set(body_schema["properties"])


def test_the_date_filter_over_rest(client: Client, starter_kb: None) -> None:
    status, body = post(
        client, {"query": "password", "maxResults": 20, "filters": {"updatedAfter": "2099-01-01"}}
    )
    assert (status, body["results"], body["totalResults"]) == (200, [], 0)
    status, payload = post(client, {"query": "password", "filters": {"updatedAfter": "soon"}})
    assert status == 400 and payload["error"]["code"] == "INVALID_FIELD_VALUE"


@pytest.mark.parametrize(
    ("session_id", "status", "code"),
    [
        ("sess_" + "a" * 32, 404, "SESSION_NOT_FOUND"),
        ("not-a-session", 400, "INVALID_SESSION"),
        ("", 400, "INVALID_SESSION"),
    ],
)
def test_a_session_given_must_exist(
    client: Client, starter_kb: None, session_id: str, status: int, code: str
) -> None:
    got, body = post(client, {"query": "password", "sessionId": session_id})
    assert (got, body["error"]["code"]) == (status, code)


def test_a_search_for_a_session_counts_as_its_request(
    client: Client, starter_kb: None, settings
) -> None:
    settings.RATE_LIMIT_SESSION_BURST = 2
    session_id = new_session_id(client)
    statuses = [post(client, {"query": "password", "sessionId": session_id})[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Without a session id the search is limited per client IP only.
    assert post(client, {"query": "password"})[0] == 200
