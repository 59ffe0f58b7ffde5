"""POST/GET/DELETE /api/session: the documented shapes."""

from __future__ import annotations

import json
import re
import time

import pytest

from chat.models import ChatSession

pytestmark = pytest.mark.django_db(transaction=True)


async def create(api, body=None):
    data = "" if body is None else json.dumps(body)
    return await api.post("/api/session", data=data, content_type="application/json")


async def test_create_session_returns_201_and_the_documented_shape(api):
    before = int(time.time() * 1000)
    response = await create(api, {"userId": "user-42", "metadata": {"plan": "pro"}})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"sessionId", "createdAt", "expiresAt", "status", "configuration"}
    assert re.fullmatch(r"sess_[A-Za-z0-9_-]{32}", body["sessionId"])
    assert body["status"] == "active"
    assert before <= body["createdAt"] <= int(time.time() * 1000)
    assert body["expiresAt"] - body["createdAt"] == 24 * 3600 * 1000
    assert set(body["configuration"]) == {"voiceEnabled", "toolsEnabled", "maxTokens"}
    stored = await ChatSession.objects.aget(pk=body["sessionId"])
    assert stored.user_id == "user-42" and stored.metadata == {"plan": "pro"}


async def test_create_session_accepts_an_empty_body(api):
    response = await create(api)
    assert response.status_code == 201
    assert response.json()["sessionId"].startswith("sess_")


async def test_session_ids_are_unique_and_unguessable(api):
    ids = {(await create(api, {})).json()["sessionId"] for _ in range(20)}
    assert len(ids) == 20
    # 32 url-safe characters = 192 random bits.
    assert all(len(i) == len("sess_") + 32 for i in ids)


async def test_get_session_shape_and_paging(api, kb):
    session_id = (await create(api, {})).json()["sessionId"]
    for text in ("How do I reset my password?", "And how do I turn on two-step verification?"):
        response = await api.post(
            "/api/chat",
            data=json.dumps({"message": text, "sessionId": session_id}),
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
    body = (await api.get(f"/api/session/{session_id}")).json()
    for key in (
        "sessionId",
        "status",
        "createdAt",
        "lastActivity",
        "messageCount",
        "summary",
        "recentMessages",
        "activeTopics",
        "resolvedIssues",
    ):
        assert key in body
    assert body["status"] == "active" and body["messageCount"] == 4
    assert [m["seq"] for m in body["recentMessages"]] == [1, 2, 3, 4]
    assert [m["role"] for m in body["recentMessages"]] == ["user", "assistant", "user", "assistant"]
    assert body["recentMessages"][0]["content"] == "How do I reset my password?"
    assert "account" in body["activeTopics"] or "security" in body["activeTopics"]

    page = (await api.get(f"/api/session/{session_id}?limit=2&offset=1")).json()
    assert [m["seq"] for m in page["recentMessages"]] == [2, 3]
    no_summary = (await api.get(f"/api/session/{session_id}?include_summary=false")).json()
    assert no_summary["summary"] is None


async def test_delete_ends_the_session(api):
    created = (await create(api, {})).json()
    response = await api.delete(f"/api/session/{created['sessionId']}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"sessionId", "status", "endedAt", "summary", "messageCount", "duration"}
    assert body["status"] == "ended" and body["messageCount"] == 0
    assert body["duration"] == body["endedAt"] - created["createdAt"]
    shown = (await api.get(f"/api/session/{created['sessionId']}")).json()
    assert shown["status"] == "ended"


async def test_expired_session_is_not_found(api, settings):
    session_id = (await create(api, {})).json()["sessionId"]
    session = await ChatSession.objects.aget(pk=session_id)
    session.expires_at = session.created_at
    await session.asave()
    response = await api.get(f"/api/session/{session_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SESSION_NOT_FOUND"
