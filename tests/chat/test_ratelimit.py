"""Rate limits (API.md "Limits"): every limit with its headers and retryAfter, on memory and on
Redis; parallel hits never exceed a limit; session-id rotation does not help; fail-open (and
fail-closed) when Redis is down; X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from supportbot import metrics, ratelimit
from supportbot.security import recent_events
from tests.chat.conftest import completions, new_session, open_chat_socket, send
from tests.fakes.openai_server import Reply
from tests.threads import at_once

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", "redis"])
def storage(request, settings):
    """Each test runs on the memory storage and on Redis (when the run has one)."""
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    ratelimit.reset_backend()
    yield request.param
    ratelimit.reset_backend()


async def create_from(api, settings, address: str):
    """POST /api/session as ``address`` (behind this test's trusted proxy, 127.0.0.1)."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    return await api.post(
        "/api/session",
        data="{}",
        content_type="application/json",
        headers={"X-Forwarded-For": address},
    )


def limit(settings, name: str, amount: int) -> None:
    setattr(settings, ratelimit.configured_limits()[name].setting, amount)


def assert_refused(response, code: str, scope: str, kind: str, amount: int) -> dict:
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["retryable"] is True
    retry = body["error"]["retryAfter"]
    assert isinstance(retry, int) and retry >= 1
    assert response["Retry-After"] == str(retry)
    assert response["X-RateLimit-Limit"] == str(amount)
    assert response["X-RateLimit-Remaining"] == "0"
    assert response["X-RateLimit-Scope"] == scope
    assert response["X-RateLimit-Type"] == kind
    assert int(response["X-RateLimit-Reset"]) > 1_700_000_000
    return body


async def test_every_api_response_carries_the_headers(api, settings, storage):
    limit(settings, "ip_api_requests", 3)
    seen = []
    for _ in range(3):
        response = await api.get("/api/status")
        assert response.status_code == 200
        assert response["X-RateLimit-Scope"] == "ip"
        assert response["X-RateLimit-Type"] == "requests"
        assert response["X-RateLimit-Limit"] == "3"
        seen.append(int(response["X-RateLimit-Remaining"]))
    assert seen == [2, 1, 0]
    refused = await api.get("/api/session/sess_unknownunknownunknown1")
    assert_refused(refused, "RATE_LIMIT_EXCEEDED", "ip", "requests", 3)
    # Errors carry the headers too, and pages outside /api/ are not counted.
    assert (await api.get("/health")).status_code in (200, 503)


async def test_headers_name_the_tightest_limit(api, settings, storage, primary):
    limit(settings, "session_requests", 2)
    session_id = await new_session(api)
    response = await send(api, session_id, "hello")
    assert response.status_code == 200
    assert response["X-RateLimit-Scope"] == "session"
    assert response["X-RateLimit-Limit"] == "2"
    assert response["X-RateLimit-Remaining"] == "1"


async def test_session_request_limit(api, settings, storage, primary):
    limit(settings, "session_requests", 3)
    session_id = await new_session(api)
    for _ in range(3):
        assert (await send(api, session_id, "hello")).status_code == 200
    calls = len(completions(primary))
    body = assert_refused(
        await send(api, session_id, "hello"), "RATE_LIMIT_EXCEEDED", "session", "requests", 3
    )
    assert body["error"]["details"]["name"] == "session_requests"
    assert len(completions(primary)) == calls  # refused before any work
    event = recent_events("rate_limited")[0]
    assert event["limit"] == "session_requests" and event["sessionId"] == session_id
    assert event["client"] == "127.0.0.1"


async def test_session_burst_limit(api, settings, storage, primary):
    limit(settings, "session_burst", 2)
    session_id = await new_session(api)
    for _ in range(2):
        assert (await send(api, session_id, "hello")).status_code == 200
    assert_refused(await send(api, session_id, "hi"), "RATE_LIMIT_EXCEEDED", "session", "burst", 2)


async def test_token_budget_counts_real_usage_and_refuses_before_the_model(
    api, settings, storage, primary
):
    limit(settings, "session_tokens", 30)
    primary.script(Reply("A fairly long answer " * 10))
    session_id = await new_session(api)
    first = await send(api, session_id, "hello")
    assert first.status_code == 200
    assert first.json()["metadata"]["tokensUsed"] > 30
    calls = len(completions(primary))
    refused = await send(api, session_id, "hello again")
    assert_refused(refused, "TOKEN_LIMIT_EXCEEDED", "session", "tokens", 30)
    assert len(completions(primary)) == calls  # costs no model tokens


async def test_token_budget_per_ip_holds_across_session_rotation(api, settings, storage, primary):
    limit(settings, "ip_tokens", 30)
    primary.script(Reply("A fairly long answer " * 10))
    first = await new_session(api)
    assert (await send(api, first, "hello")).status_code == 200
    rotated = await new_session(api)
    assert_refused(await send(api, rotated, "hi"), "TOKEN_LIMIT_EXCEEDED", "ip", "tokens", 30)


async def test_ip_request_limit_holds_across_session_rotation(api, settings, storage, primary):
    limit(settings, "ip_api_requests", 6)
    sessions = [await new_session(api) for _ in range(3)]  # 3 requests
    for session_id in sessions:  # 3 more, one per session
        assert (await send(api, session_id, "hello")).status_code == 200
    fresh = await api.post("/api/session", data="{}", content_type="application/json")
    assert_refused(fresh, "RATE_LIMIT_EXCEEDED", "ip", "requests", 6)


async def test_session_creations_per_ip(api, settings, storage):
    limit(settings, "ip_session_creations", 2)
    for _ in range(2):
        await new_session(api)
    refused = await api.post("/api/session", data="{}", content_type="application/json")
    assert_refused(refused, "RATE_LIMIT_EXCEEDED", "ip", "sessions", 2)
    # Another address is not affected.
    other = await create_from(api, settings, "10.1.2.3")
    assert other.status_code == 201


async def test_concurrent_sessions_per_ip_and_ending_one_frees_a_slot(api, settings, storage):
    limit(settings, "ip_concurrent_sessions", 2)
    first = await new_session(api)
    await new_session(api)
    refused = await api.post("/api/session", data="{}", content_type="application/json")
    body = assert_refused(refused, "CONCURRENT_LIMIT_EXCEEDED", "ip", "concurrent", 2)
    assert body["error"]["retryAfter"] > 60  # until the oldest goes idle
    assert (await api.delete(f"/api/session/{first}")).status_code == 200
    again = await api.post("/api/session", data="{}", content_type="application/json")
    assert again.status_code == 201


async def test_global_active_sessions(api, settings, storage):
    limit(settings, "global_active_sessions", 2)
    for address in ("10.0.0.1", "10.0.0.2"):
        response = await create_from(api, settings, address)
        assert response.status_code == 201
    refused = await create_from(api, settings, "10.0.0.3")
    assert_refused(refused, "CONCURRENT_LIMIT_EXCEEDED", "global", "sessions", 2)


async def test_global_model_calls(api, settings, storage, primary):
    limit(settings, "global_model_calls", 1)
    session_id = await new_session(api)
    assert (await send(api, session_id, "hello")).status_code == 200
    other = await new_session(api)
    calls = len(completions(primary))
    refused = await send(api, other, "hello")
    assert_refused(refused, "RATE_LIMIT_EXCEEDED", "global", "model_calls", 1)
    assert len(completions(primary)) == calls


async def test_global_tool_executions_fail_the_call_not_the_turn(api, settings, storage, kb):
    settings.LLM_BASE_URL = ""  # the offline assistant searches the knowledge base
    settings.OPENAI_API_KEY = ""
    limit(settings, "global_tool_executions", 1)
    session_id = await new_session(api)
    first = (await send(api, session_id, "How do I reset my password?")).json()
    assert first["toolCalls"] and first["toolCalls"][0]["status"] == "success"
    second = await send(api, session_id, "How do I share a folder?")
    assert second.status_code == 200
    call = second.json()["toolCalls"][0]
    assert call["status"] == "failed" and call["error"]["code"] == "RATE_LIMIT_EXCEEDED"


def test_parallel_hits_never_exceed_a_limit(settings, storage):
    limit(settings, "session_requests", 5)

    def attempt() -> bool:
        try:
            ratelimit.hit(("session_requests", "sess_parallel"))
        except Exception:
            return False
        return True

    results = at_once(attempt, count=16)
    assert sum(results) == 5


async def test_parallel_http_requests_never_exceed_a_limit(api, settings, storage):
    import asyncio

    limit(settings, "ip_api_requests", 7)
    responses = await asyncio.gather(*(api.get("/api/status") for _ in range(15)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [429] * 8


async def test_disabled_limits_refuse_nothing_and_send_no_headers(api, settings, storage):
    limit(settings, "ip_api_requests", 1)
    settings.RATE_LIMITS_ENABLED = False
    for _ in range(3):
        response = await api.get("/api/status")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def memory_metrics(settings):
    settings.REDIS_URL = ""
    metrics.reset()
    yield
    metrics.reset()


async def test_redis_down_fails_open_with_a_metric(api, settings, memory_metrics):
    settings.RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    ratelimit.reset_backend()
    limit(settings, "ip_api_requests", 1)
    for _ in range(3):
        assert (await api.get("/api/status")).status_code == 200
    counters = metrics.snapshot()["counters"]
    assert counters["ratelimit_storage_errors"][""] >= 1


async def test_redis_down_fails_closed_when_configured(api, settings, memory_metrics):
    settings.RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.RATE_LIMIT_FAIL_CLOSED = True
    ratelimit.reset_backend()
    response = await api.get("/api/status")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_DEGRADED"


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(api, settings, storage):
    limit(settings, "ip_api_requests", 1)
    settings.TRUSTED_PROXIES = []
    first = await api.get("/api/status", headers={"X-Forwarded-For": "203.0.113.7"})
    assert first.status_code == 200
    # Untrusted: the header is ignored, so a second "client" is the same address.
    second = await api.get("/api/status", headers={"X-Forwarded-For": "203.0.113.8"})
    assert second.status_code == 429
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    for client in ("203.0.113.9", "203.0.113.10"):
        response = await api.get("/api/status", headers={"X-Forwarded-For": client})
        assert response.status_code == 200


async def test_hashed_client_ips_in_keys_and_events(api, settings, storage):
    settings.HASH_CLIENT_IPS = True
    limit(settings, "ip_api_requests", 1)
    await api.get("/api/status")
    await api.get("/api/status")
    event = recent_events("rate_limited")[0]
    assert event["client"].startswith("ip_") and "127.0.0.1" not in json.dumps(event)
    keys = await sync_to_async(ratelimit.busiest)()
    assert keys[0].identifier == event["client"]


async def test_busiest_keys_and_reset(settings, storage):
    limit(settings, "session_requests", 4)
    for _ in range(3):
        ratelimit.hit(("session_requests", "sess_busy"))
    ratelimit.hit(("session_requests", "sess_quiet"))
    usage = {(u.spec.name, u.identifier): u for u in ratelimit.busiest()}
    busy = usage[("session_requests", "sess_busy")]
    assert busy.used == 3 and busy.remaining == 1 and busy.reset > 1_700_000_000
    assert ratelimit.busiest()[0].identifier == "sess_busy"
    ratelimit.reset_key("session_requests", "sess_busy")
    usage = {(u.spec.name, u.identifier): u for u in ratelimit.busiest()}
    assert ("session_requests", "sess_busy") not in usage
    assert ("session_requests", "sess_quiet") in usage


async def test_websocket_messages_per_session(api, settings, storage):
    limit(settings, "session_ws_messages", 3)
    session_id = await new_session(api)
    ws = await open_chat_socket(session_id)
    for _ in range(3):
        await ws.send_json_to({"type": "ping"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
    await ws.send_json_to({"type": "ping", "requestId": "r4"})
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["requestId"] == "r4"
    data = frame["data"]
    assert data["code"] == "RATE_LIMIT_EXCEEDED" and data["retryable"] is True
    assert isinstance(data["retryAfter"], int) and 1 <= data["retryAfter"] <= 60
    assert data["details"]["name"] == "session_ws_messages"
    # Bad frames count too, and the socket stays open: once the key is reset it answers again.
    await ws.send_to(text_data="not json")
    assert (await ws.receive_json_from(timeout=5))["data"]["code"] == "RATE_LIMIT_EXCEEDED"
    ratelimit.reset_key("session_ws_messages", session_id)
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
    await ws.disconnect()


async def test_voice_inputs_per_session_and_their_length(api, settings, storage):
    limit(settings, "session_voice", 1)
    session_id = await new_session(api)
    ws = await open_chat_socket(session_id)
    frame = {
        "type": "voice_input",
        "requestId": "v1",
        "data": {"audioData": "AAAA", "format": "webm", "duration": 31, "sessionId": session_id},
    }
    await ws.send_json_to(frame)
    too_long = await ws.receive_json_from(timeout=5)
    assert too_long["data"]["code"] == "INVALID_FIELD_VALUE"
    assert too_long["data"]["details"]["field"] == "duration"
    await ws.send_json_to(frame)
    refused = await ws.receive_json_from(timeout=5)
    assert refused["data"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused["data"]["details"]["name"] == "session_voice"
    await ws.disconnect()


async def test_websocket_turns_share_the_session_request_limit(api, settings, storage, primary):
    limit(settings, "session_requests", 1)
    session_id = await new_session(api)
    assert (await send(api, session_id, "hello")).status_code == 200
    ws = await open_chat_socket(session_id)
    await ws.send_json_to(
        {
            "type": "chat_message",
            "requestId": "r1",
            "data": {"content": "hi again", "sessionId": session_id},
        }
    )
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["requestId"] == "r1"
    assert frame["data"]["code"] == "RATE_LIMIT_EXCEEDED" and frame["data"]["retryAfter"] >= 1
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
    await ws.disconnect()


def test_one_round_trip_path_agrees_with_limits_own_reading(settings, storage):
    """On Redis a call's checks go in one pipelined trip, through limits' own scripts and
    keys: limits reads the same windows back, moving and sliding."""
    limit(settings, "session_requests", 5)
    limit(settings, "session_tokens", 100)
    b = ratelimit.backend()
    assert b.pipelinable() == (storage == "redis")
    specs = ratelimit.configured_limits()
    moving, sliding = specs["session_requests"], specs["session_tokens"]
    ratelimit.spend("session_tokens", "sess_trip", 30)
    for expected_remaining in (4, 3, 2):
        (allowed, stats), (_, budget) = b.trip(
            [(moving, "sess_trip", True), (sliding, "sess_trip", False)]
        )
        assert allowed and stats.remaining == expected_remaining
        own = b.limiter(moving).get_window_stats(moving.item, moving.name, "sess_trip")
        assert own.remaining == expected_remaining
        assert abs(own.reset_time - stats.reset_time) < 1
        own_budget = b.limiter(sliding).get_window_stats(sliding.item, sliding.name, "sess_trip")
        assert budget.remaining == own_budget.remaining == 70
        # (limits' sliding reset is ttl % window: it jumps between now and now + window at the
        # very start of a window, so only its range is compared)
        assert time.time() - 1 <= budget.reset_time <= time.time() + 3600


def test_scripts_forgotten_by_redis_are_loaded_again(settings, redis_url):
    settings.REDIS_URL = redis_url
    ratelimit.reset_backend()
    ratelimit.hit(("session_requests", "sess_flush"))
    storage: Any = ratelimit.backend().storage
    storage.get_connection().script_flush()
    ratelimit.hit(("session_requests", "sess_flush"))
    usage = {(u.spec.name, u.identifier): u.used for u in ratelimit.busiest()}
    assert usage[("session_requests", "sess_flush")] == 2


async def test_the_ticket_endpoint_takes_a_global_tool_execution(api, settings, storage):
    limit(settings, "global_tool_executions", 1)
    session_id = await new_session(api)
    body = {"action": "status", "ticketId": "TKT-NOPE0000", "sessionId": session_id}
    first = await api.post(
        "/api/tools/ticket", data=json.dumps(body), content_type="application/json"
    )
    assert first.status_code == 404
    second = await api.post(
        "/api/tools/ticket", data=json.dumps(body), content_type="application/json"
    )
    assert_refused(second, "RATE_LIMIT_EXCEEDED", "global", "tool_executions", 1)


def test_workflow_tool_calls_take_global_tool_executions(settings, storage, kb):
    """A workflow's tool calls count like the assistant's: past the global limit a step is
    refused, retried after its backoff, and when it stays refused the finished steps are undone."""
    from chat.sessions import session_create
    from tools.models import Ticket
    from tools.workflows import workflow_submit

    settings.WORKFLOW_RETRY_BASE_SECONDS = 0.01
    settings.WORKFLOW_RETRY_MAX_SECONDS = 0.02
    limit(settings, "global_tool_executions", 1)
    session = session_create()
    execution, _ = workflow_submit(
        workflow_type="tool_chain",
        session_id=session.id,
        parameters={
            "tools": [
                {"tool": "create_ticket", "arguments": {"title": "Limited", "description": "x y"}},
                {"tool": "fetch_status", "arguments": {"ticketId": "$prev.ticketId"}},
            ]
        },
    )
    execution.refresh_from_db()
    steps = list(execution.steps.order_by("index"))
    assert execution.status == "compensated"
    assert "too many requests" in execution.error.lower()
    assert [(s.status, s.attempts) for s in steps] == [
        ("compensated", 1),
        ("failed", settings.WORKFLOW_STEP_ATTEMPTS),
    ]
    assert steps[0].result is not None
    assert Ticket.objects.get(pk=steps[0].result["ticketId"]).status == "cancelled"
    refusals = recent_events("rate_limited")
    assert refusals and refusals[0]["sessionId"] == session.id
    assert refusals[0]["limit"] == "global_tool_executions"


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("10.0.0.7", "", "10.0.0.7"),
        ("10.0.0.7", "203.0.113.9", "10.0.0.7"),  # not a trusted proxy: its header is ignored
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9:5123", "203.0.113.9"),
        ("127.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "[2001:db8::1]:443", "2001:db8::/64"),
        ("127.0.0.1", "2001:db8:0:0:ffff::2", "2001:db8::/64"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.9, 127.0.0.1", "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9, garbage", "127.0.0.1"),  # nothing past a garbled hop
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),
    ],
)
def test_one_client_has_one_spelling(settings, remote, forwarded, client):
    from supportbot.clients import client_address

    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert client_address(remote, forwarded) == client


async def test_a_websocket_behind_a_proxy_is_its_client(settings):
    from supportbot.clients import scope_client_ip

    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    scope = {"client": ("127.0.0.1", 40000), "headers": [(b"x-forwarded-for", b"203.0.113.9")]}
    assert scope_client_ip(scope) == "203.0.113.9"


async def test_the_headers_of_a_refusal_describe_the_limit_that_refused(api, settings, storage):
    # Two creations leave the concurrent limit with no spare room either, and it is read first;
    # the refusal is the creations limit's, and so must be the headers (and their reset).
    limit(settings, "ip_concurrent_sessions", 3)
    limit(settings, "ip_session_creations", 2)
    for _ in range(2):
        await new_session(api)
    refused = await api.post("/api/session", data="{}", content_type="application/json")
    body = assert_refused(refused, "RATE_LIMIT_EXCEEDED", "ip", "sessions", 2)
    assert body["error"]["details"]["name"] == "ip_session_creations"
    reset_in = int(refused["X-RateLimit-Reset"]) - time.time()
    assert abs(reset_in - body["error"]["retryAfter"]) <= 2


async def test_a_refused_request_spends_nothing(api, settings, storage):
    limit(settings, "session_burst", 2)
    limit(settings, "session_requests", 5)
    session_id = await new_session(api)
    for _ in range(2):
        assert (await send(api, session_id, "hello")).status_code == 200
    for _ in range(3):
        assert_refused(
            await send(api, session_id, "hello"), "RATE_LIMIT_EXCEEDED", "session", "burst", 2
        )
    usage = {(u.spec.name, u.identifier): u.used for u in ratelimit.busiest()}
    assert usage[("session_requests", session_id)] == 2
