"""What an outside probe found at the HTTP surface: a NUL (or a lone surrogate) in any client
string, integers past 64 bits, an unknown Host header, malformed ids in paths, malformed session
ids against the rate limits. Every one is a JSON error of API.md, never a 500 or HTML. Run on
SQLite and on PostgreSQL (which refuses NUL in text where SQLite stores it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat.models import ChatSession, Message
from supportbot import ratelimit
from tests.chat.conftest import new_session
from tools.models import Ticket, WorkflowExecution

pytestmark = pytest.mark.django_db(transaction=True)

ERROR_KEYS = {"error", "requestId", "timestamp", "path", "method"}


def refused(response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) >= ERROR_KEYS, body
    assert body["error"]["code"] == code, body
    if field is not None:
        assert body["error"]["details"]["field"] == field, body
    return body


async def post(api, path: str, raw: str | dict[str, Any], **extra: Any):
    data = raw if isinstance(raw, str) else json.dumps(raw)
    return await api.post(path, data=data, content_type="application/json", **extra)


# --- NUL and lone surrogates: one rule, 400 INVALID_FIELD_VALUE naming the field -------------

NUL = "\\u0000"  # as a client's JSON spells it
SURROGATE = "\\ud800"


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
async def test_a_nul_in_a_search_query_is_refused_naming_the_field(api, kb, bad) -> None:
    raw = f'{{"query": "reset{bad}password"}}'
    refused(await post(api, "/api/tools/search", raw), 400, "INVALID_FIELD_VALUE", "query")
    raw = f'{{"query": "reset", "filters": {{"category": "a{bad}"}}}}'
    refused(
        await post(api, "/api/tools/search", raw), 400, "INVALID_FIELD_VALUE", "filters.category"
    )


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
async def test_a_nul_in_a_ticket_title_is_refused_and_opens_nothing(api, bad) -> None:
    session_id = await new_session(api)
    fields = '"description": "d", "priority": "low", "category": "general"'
    data = f'{{"title": "T{bad}", {fields}}}'
    raw = f'{{"action": "create", "sessionId": "{session_id}", "ticketData": {data}}}'
    refused(
        await post(api, "/api/tools/ticket", raw), 400, "INVALID_FIELD_VALUE", "ticketData.title"
    )
    assert await Ticket.objects.acount() == 0


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
async def test_a_nul_in_a_tool_chain_argument_is_refused_and_stores_nothing(api, kb, bad) -> None:
    session_id = await new_session(api)
    tools = f'[{{"tool": "kb.search", "arguments": {{"query": "sync{bad}"}}}}]'
    raw = (
        '{"workflowType": "tool_chain", "parameters": '
        f'{{"context": {{"sessionId": "{session_id}"}}, "tools": {tools}}}}}'
    )
    refused(
        await post(api, "/api/workflow/execute", raw),
        400,
        "INVALID_FIELD_VALUE",
        "parameters.tools.0.arguments.query",
    )
    assert await WorkflowExecution.objects.acount() == 0


async def test_a_nul_in_a_json_key_is_refused(api) -> None:
    raw = f'{{"metadata": {{"k{NUL}": 1}}}}'
    refused(await post(api, "/api/session", raw), 400, "INVALID_FIELD_VALUE", "metadata")
    assert await ChatSession.objects.acount() == 0


async def test_a_nul_in_a_chat_message_is_refused_and_stores_nothing(api) -> None:
    session_id = await new_session(api)
    raw = f'{{"sessionId": "{session_id}", "message": "hi{NUL}"}}'
    refused(await post(api, "/api/chat", raw), 400, "INVALID_FIELD_VALUE", "message")
    assert await Message.objects.acount() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/workflow/wf_exec_%00",
        "/api/workflow/%00",
        "/api/session/sess_%00",
        "/api/tools/%00",
        "/api/session?x=%00",
    ],
)
async def test_a_nul_in_the_path_or_query_is_a_json_400(api, path: str) -> None:
    body = refused(await api.get(path), 400, "INVALID_FIELD_VALUE")
    assert body["error"]["details"]["field"] in ("path", "x")


@pytest.mark.parametrize(
    "execution_id",
    ["wf_exec_" + "g" * 32, "wf_exec_" + "0" * 33, "wf_exec_%E2%80%A8", "wf_exec_" + "A" * 32],
)
async def test_a_malformed_execution_id_is_not_found(api, execution_id: str) -> None:
    refused(await api.get(f"/api/workflow/{execution_id}"), 404, "NOT_FOUND")


# --- integers past 64 bits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=99999999999999999999999", "offset"),
        ("offset=9223372036854775808", "offset"),
        ("offset=2147483648", "offset"),
        ("limit=99999999999999999999999", "limit"),
    ],
)
async def test_an_offset_past_64_bits_is_a_400_naming_it(api, query: str, field: str) -> None:
    session_id = await new_session(api)
    refused(await api.get(f"/api/session/{session_id}?{query}"), 400, "INVALID_FIELD_VALUE", field)


async def test_the_largest_offset_reads_an_empty_page(api) -> None:
    session_id = await new_session(api)
    response = await api.get(f"/api/session/{session_id}?offset=2147483647")
    assert response.status_code == 200
    assert response.json()["recentMessages"] == []


# --- an unknown Host header ------------------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    "path", ["/api/session", "/api/nope", "/health", "/", "/admin/", "/api/workflow/x"]
)
async def test_an_unknown_host_gets_the_json_error_shape(api, settings, debug, path) -> None:
    settings.DEBUG = debug
    response = await api.get(path, headers={"Host": "evil.example"})
    body = refused(response, 400, "INVALID_REQUEST_FORMAT")
    assert body["path"] == path
    assert "Host" in body["error"]["message"]
    assert response["X-Request-ID"] == body["requestId"]
    assert b"<html" not in response.content.lower()
    assert response["X-Content-Type-Options"] == "nosniff"  # headers of the middleware kept


async def test_an_unknown_host_on_a_post_gets_the_json_error_shape(api) -> None:
    response = await post(api, "/api/session", {}, headers={"Host": "evil.example"})
    refused(response, 400, "INVALID_REQUEST_FORMAT")
    assert await ChatSession.objects.acount() == 0


# --- malformed session ids spend no limit ------------------------------------------------------


async def test_a_malformed_session_id_is_400_and_never_counted(api, settings) -> None:
    for name in ("session_requests", "session_burst"):
        setattr(settings, ratelimit.configured_limits()[name].setting, 1)
    for _ in range(3):
        refused(
            await post(api, "/api/tools/search", {"query": "sync", "sessionId": "x"}),
            400,
            "INVALID_SESSION",
        )
        refused(
            await post(api, "/api/tools/ticket", {"action": "status", "sessionId": "garbage"}),
            400,
            "INVALID_SESSION",
        )
        refused(
            await post(
                api,
                "/api/workflow/execute",
                {
                    "workflowType": "complex_query",
                    "parameters": {"query": "q", "context": {"sessionId": "x"}},
                },
            ),
            400,
            "INVALID_SESSION",
        )
        refused(
            await post(api, "/api/chat", {"sessionId": "x", "message": "hi"}),
            400,
            "INVALID_SESSION",
        )
        refused(await post(api, "/api/session/garbage/report", {}), 400, "INVALID_SESSION")
    keys = {(usage.spec.name, usage.identifier) for usage in ratelimit.busiest(1000)}
    assert not [key for key in keys if key[1] in ("x", "garbage", "")], keys
