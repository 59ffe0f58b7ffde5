"""The HTTP surface around the API: CORS, OpenAPI and docs, security headers, access logs."""

from __future__ import annotations

import json
import logging

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


async def test_cors_preflight_allows_only_configured_origins(api, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]
    headers = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-request-id",
    }
    response = await api.options("/api/chat", headers=headers)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "x-request-id" in response["Access-Control-Allow-Headers"]

    evil = {**headers, "Origin": "https://evil.example"}
    response = await api.options("/api/chat", headers=evil)
    assert "Access-Control-Allow-Origin" not in response

    response = await api.post(
        "/api/session",
        data="{}",
        content_type="application/json",
        headers={"Origin": "https://shop.example"},
    )
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "X-Request-ID" in response["Access-Control-Expose-Headers"]


async def test_no_cross_origin_access_by_default(api):
    response = await api.post(
        "/api/session",
        data="{}",
        content_type="application/json",
        headers={"Origin": "https://shop.example"},
    )
    assert response.status_code == 201
    assert "Access-Control-Allow-Origin" not in response


async def test_openapi_lists_the_documented_endpoints(api):
    response = await api.get("/api/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/session",
        "/api/session/{session_id}",
        "/api/chat",
        "/api/tools/search",
        "/api/status",
    ):
        assert path in paths
    assert set(paths["/api/session/{session_id}"]) == {"get", "delete"}


async def test_docs_are_served_from_our_own_static_files(api):
    response = await api.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "unsafe-inline" not in response["Content-Security-Policy"]


async def test_security_headers_on_every_response(api):
    for path in ("/", "/api/nope", "/health"):
        response = await api.get(path)
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Frame-Options"] == "DENY"
        assert "default-src 'self'" in response["Content-Security-Policy"]


async def test_access_log_is_structured_with_request_and_session(api, caplog):
    caplog.set_level(logging.INFO, logger="supportbot.access")
    response = await api.post("/api/session", data="{}", content_type="application/json")
    session_id = response.json()["sessionId"]
    records = [r for r in caplog.records if r.name == "supportbot.access"]
    event = records[-1].msg
    assert isinstance(event, dict)
    assert event["request_id"] == response["X-Request-ID"]
    assert event["session_id"] == session_id
    assert event["path"] == "/api/session" and event["status"] == 201
    assert event["latency_ms"] >= 0
    json.dumps(event)  # serialisable as the JSON line it becomes
