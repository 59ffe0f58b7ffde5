"""Bad input gets the documented error shape and code, never HTML, and stores nothing."""

from __future__ import annotations

import json

import pytest

from chat.models import ChatSession, Message

pytestmark = pytest.mark.django_db(transaction=True)

ERROR_KEYS = {"error", "requestId", "timestamp", "path", "method"}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Request-ID"]
    body = response.json()
    assert set(body) >= ERROR_KEYS, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["retryable"], bool)
    assert body["requestId"] == response["X-Request-ID"]
    assert b"Traceback" not in response.content and b"<html" not in response.content.lower()
    return body


async def post(api, path: str, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await api.post(path, data=data, content_type="application/json", **extra)


@pytest.fixture
async def session_id(api) -> str:
    response = await post(api, "/api/session", {})
    return response.json()["sessionId"]


async def test_missing_message_is_missing_required_field(api, session_id):
    body = assert_error(
        await post(api, "/api/chat", {"sessionId": session_id}), 400, "MISSING_REQUIRED_FIELD"
    )
    assert body["path"] == "/api/chat" and body["method"] == "POST"
    assert "message" in body["error"]["message"]


async def test_missing_session_id_is_missing_required_field(api):
    assert_error(await post(api, "/api/chat", {"message": "hi"}), 400, "MISSING_REQUIRED_FIELD")


@pytest.mark.parametrize(
    "payload",
    [
        {"message": 123},
        {"message": ["hi"]},
        {"message": None},
        {"message": "hi", "metadata": "not an object"},
        {"message": "hi", "requestId": 7},
    ],
)
async def test_wrong_typed_fields_are_invalid_field_value(api, session_id, payload):
    payload = {"sessionId": session_id, **payload}
    assert_error(await post(api, "/api/chat", payload), 400, "INVALID_FIELD_VALUE")
    assert await Message.objects.acount() == 0


async def test_unknown_session_is_not_found(api):
    unknown = "sess_" + "A" * 32
    assert_error(
        await post(api, "/api/chat", {"message": "hi", "sessionId": unknown}),
        404,
        "SESSION_NOT_FOUND",
    )
    assert_error(await api.get(f"/api/session/{unknown}"), 404, "SESSION_NOT_FOUND")
    assert_error(await api.delete(f"/api/session/{unknown}"), 404, "SESSION_NOT_FOUND")


async def test_malformed_session_id_is_invalid_session(api):
    for bad in ("nope", "sess_short", "sess_" + "x" * 200, "../etc/passwd"):
        assert_error(
            await post(api, "/api/chat", {"message": "hi", "sessionId": bad}),
            400,
            "INVALID_SESSION",
        )


async def test_ended_session_refuses_messages_with_conflict(api, session_id):
    response = await api.delete(f"/api/session/{session_id}")
    assert response.status_code == 200
    assert_error(
        await post(api, "/api/chat", {"message": "hi", "sessionId": session_id}),
        409,
        "INVALID_SESSION",
    )
    assert_error(await api.delete(f"/api/session/{session_id}"), 409, "INVALID_SESSION")
    assert await Message.objects.acount() == 0


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"message": "hi",}', b"\xff\xfe", b"[1, 2]", b'"text"', b"null"]
)
async def test_invalid_json_is_invalid_request_format(api, raw):
    assert_error(await post(api, "/api/chat", raw), 400, "INVALID_REQUEST_FORMAT")
    assert_error(await post(api, "/api/session", raw), 400, "INVALID_REQUEST_FORMAT")


async def test_body_over_64_kib_is_refused_with_413(api, session_id):
    payload = {"message": "x" * 70_000, "sessionId": session_id}
    body = assert_error(await post(api, "/api/chat", payload), 413, "MESSAGE_TOO_LONG")
    assert body["error"]["details"]["maxBytes"] == 65536
    assert await Message.objects.acount() == 0


async def test_message_over_4000_characters_is_too_long(api, session_id):
    payload = {"message": "é" * 4001, "sessionId": session_id}
    body = assert_error(await post(api, "/api/chat", payload), 400, "MESSAGE_TOO_LONG")
    assert body["error"]["details"]["maxLength"] == 4000
    assert await Message.objects.acount() == 0


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
async def test_empty_message_is_refused(api, session_id, text):
    assert_error(
        await post(api, "/api/chat", {"message": text, "sessionId": session_id}),
        400,
        "INVALID_FIELD_VALUE",
    )


@pytest.mark.parametrize("raw", ['"a\\u0000b"', '"\\ud800"'])
async def test_unstorable_text_is_refused_not_crashing(api, session_id, raw):
    body = f'{{"message": {raw}, "sessionId": "{session_id}"}}'
    assert_error(await post(api, "/api/chat", body), 400, "INVALID_FIELD_VALUE")
    body = f'{{"userId": {raw}}}'
    assert_error(await post(api, "/api/session", body), 400, "INVALID_FIELD_VALUE")
    body = f'{{"metadata": {{"k": {raw}}}}}'
    assert_error(await post(api, "/api/session", body), 400, "INVALID_FIELD_VALUE")


async def test_get_on_a_post_route_is_405_json(api):
    body = assert_error(await api.get("/api/chat"), 405, "METHOD_NOT_ALLOWED")
    assert body["method"] == "GET"
    assert_error(
        await api.put("/api/session", data="{}", content_type="application/json"),
        405,
        "METHOD_NOT_ALLOWED",
    )


async def test_unknown_routes_are_404_json(api):
    for path in ("/api/nope", "/nope", "/api/session/sess_x/extra", "/api/"):
        assert_error(await api.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "offset=-1"])
async def test_bad_session_query_parameters(api, session_id, query):
    assert_error(await api.get(f"/api/session/{session_id}?{query}"), 400, "INVALID_FIELD_VALUE")


async def test_session_create_validates_its_fields(api):
    assert_error(await post(api, "/api/session", {"userId": 5}), 400, "INVALID_FIELD_VALUE")
    assert_error(await post(api, "/api/session", {"userId": "u" * 129}), 400, "INVALID_FIELD_VALUE")
    assert_error(await post(api, "/api/session", {"metadata": [1]}), 400, "INVALID_FIELD_VALUE")
    big = {"metadata": {"blob": "x" * 9000}}
    assert_error(await post(api, "/api/session", big), 400, "INVALID_FIELD_VALUE")
    assert await ChatSession.objects.acount() == 0


async def test_bad_request_id_is_refused(api, session_id):
    payload = {"message": "hi", "sessionId": session_id, "requestId": "has spaces and <tags>"}
    assert_error(await post(api, "/api/chat", payload), 400, "INVALID_FIELD_VALUE")


async def test_client_request_id_is_echoed(api):
    response = await api.get("/api/nope", headers={"X-Request-ID": "client-123"})
    assert response["X-Request-ID"] == "client-123"
    assert response.json()["requestId"] == "client-123"
    response = await api.get("/api/nope", headers={"X-Request-ID": "bad id <script>"})
    assert response["X-Request-ID"].startswith("req_")


async def test_json_nested_beyond_the_parser_is_invalid_format(api, session_id):
    deep = '{"a":' * 3000 + "1" + "}" * 3000
    assert_error(
        await post(api, "/api/session", f'{{"metadata": {deep}}}'), 400, "INVALID_REQUEST_FORMAT"
    )
    body = f'{{"message": "hi", "sessionId": "{session_id}", "metadata": {deep}}}'
    assert_error(await post(api, "/api/chat", body), 400, "INVALID_REQUEST_FORMAT")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_are_refused(api, session_id, constant):
    body = f'{{"metadata": {{"x": {constant}}}}}'
    assert_error(await post(api, "/api/session", body), 400, "INVALID_REQUEST_FORMAT")
    body = f'{{"message": "hi", "sessionId": "{session_id}", "metadata": {{"x": {constant}}}}}'
    response = await post(api, "/api/chat", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"INVALID_REQUEST_FORMAT", "INVALID_FIELD_VALUE"}
    assert await Message.objects.acount() == 0
