"""OpenAIProvider against the fake OpenAI-compatible server, through the real ``openai`` client."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from chat.llm.base import (
    CompletionRequest,
    Finish,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallRequest,
    Usage,
)
from chat.llm.openai_provider import OpenAIProvider
from tests.fakes.openai_server import (
    Drop,
    FakeOpenAIServer,
    HttpError,
    Reply,
    Stall,
    ToolCall,
    ToolCallReply,
    count_prompt_tokens,
    wait_until_async,
)

MESSAGES = [
    {"role": "system", "content": "You are a support assistant."},
    {"role": "user", "content": "Where is my order 1234?"},
]
REQUEST = CompletionRequest(messages=MESSAGES, max_tokens=200)
ProviderFactory = Callable[..., OpenAIProvider]


@pytest.fixture
async def make_provider(fake_llm: FakeOpenAIServer) -> AsyncIterator[ProviderFactory]:
    """Providers on the fake with small timeouts and near-zero backoff, so failures are fast."""
    made: list[OpenAIProvider] = []

    def make(**overrides: Any) -> OpenAIProvider:
        options: dict[str, Any] = {
            "base_url": fake_llm.base_url,
            "api_key": "test-key",
            "model": "support-model",
            "max_tokens_cap": 512,
            "connect_timeout": 0.5,
            "first_token_timeout": 0.5,
            "inter_token_timeout": 0.3,
            "max_retries": 2,
            "retry_base_delay": 0.01,
            "retry_max_delay": 2.0,
        }
        options.update(overrides)
        made.append(OpenAIProvider(options.pop("name", "primary"), **options))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def collect(provider: OpenAIProvider, request: CompletionRequest = REQUEST) -> list[Any]:
    return [event async for event in provider.stream(request)]


async def collect_until_error(
    provider: OpenAIProvider, request: CompletionRequest = REQUEST
) -> tuple[list[StreamEvent], ProviderError]:
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(request):
            events.append(event)
    return events, caught.value


def text_of(events: list[Any]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


# --- success ----------------------------------------------------------------------------------


async def test_streamed_tokens_arrive_in_order_and_usage_is_the_servers(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Reply("Your order ships tomorrow morning."))

    events = await collect(make_provider())

    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert deltas == ["Your", " order", " ships", " tomorrow", " morning."]
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.provider == "primary"
    assert finish.model == "support-model"  # the fake echoes the requested model
    assert finish.finish_reason == "stop"
    assert finish.usage == Usage(prompt_tokens=count_prompt_tokens(MESSAGES), completion_tokens=5)
    assert finish.fallback_used is False
    body = fake_llm.chat_requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.3
    assert "tools" not in body


async def test_finish_reports_the_model_the_server_named(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.reported_model = "support-model-2025-01-01"

    events = await collect(make_provider())

    assert events[-1].model == "support-model-2025-01-01"


async def test_usage_is_zero_when_the_server_sends_none(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Reply("Plain answer.", send_usage=False))

    events = await collect(make_provider())

    assert text_of(events) == "Plain answer."
    assert events[-1].usage == Usage(0, 0)


async def test_max_tokens_is_sent_capped_on_every_request(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    provider = make_provider(max_tokens_cap=64)
    fake_llm.script(HttpError(503), Reply("one"), Reply("two"))

    await collect(provider, CompletionRequest(messages=MESSAGES, max_tokens=1000))
    await collect(provider, CompletionRequest(messages=MESSAGES, max_tokens=20))

    assert [r.body["max_tokens"] for r in fake_llm.chat_requests] == [64, 64, 20]


async def test_sends_the_api_key_as_bearer_token(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    await collect(make_provider(api_key="sk-secret-1"))

    assert fake_llm.chat_requests[0].headers["authorization"] == "Bearer sk-secret-1"


async def test_tool_call_deltas_are_assembled_into_complete_calls(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "fetch_status", "parameters": {"type": "object"}},
        }
    ]
    fake_llm.script(
        ToolCallReply(
            calls=(
                ToolCall("fetch_status", {"ticketId": "TKT-42", "verbose": True}, id="call_a"),
                ToolCall("kb.search", {"query": "refund policy for damaged items"}, id="call_b"),
            ),
            content="Let me check.",
            arg_chunks=4,
        )
    )

    events = await collect(make_provider(), CompletionRequest(MESSAGES, 100, tools=tools))

    assert text_of(events) == "Let me check."
    calls = [event for event in events if isinstance(event, ToolCallRequest)]
    assert [(call.id, call.name) for call in calls] == [
        ("call_a", "fetch_status"),
        ("call_b", "kb.search"),
    ]
    assert json.loads(calls[0].arguments) == {"ticketId": "TKT-42", "verbose": True}
    assert json.loads(calls[1].arguments) == {"query": "refund policy for damaged items"}
    assert events[-1].finish_reason == "tool_calls"
    assert events.index(calls[0]) > max(
        i for i, event in enumerate(events) if isinstance(event, TextDelta)
    )
    assert fake_llm.chat_requests[0].body["tools"] == tools


# --- retries ----------------------------------------------------------------------------------


async def test_server_error_is_retried_once_then_succeeds(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(HttpError(500), Reply("Recovered answer."))

    events = await collect(make_provider())

    assert text_of(events) == "Recovered answer."
    assert len(fake_llm.chat_requests) == 2


async def test_retries_stop_after_max_retries(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.set_default(HttpError(502))

    _, error = await collect_until_error(make_provider(max_retries=2))

    assert error.kind == "http_5xx"
    assert error.permanent is False
    assert len(fake_llm.chat_requests) == 3


async def test_retry_after_is_honoured(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(HttpError(429, retry_after=1), Reply("After the pause."))

    started = time.monotonic()
    events = await collect(make_provider())
    elapsed = time.monotonic() - started

    assert text_of(events) == "After the pause."
    assert len(fake_llm.chat_requests) == 2
    assert elapsed >= 0.95  # jittered backoff alone would be about 0.01 s


async def test_huge_retry_after_gives_up_at_once(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(HttpError(429, retry_after=3600))

    started = time.monotonic()
    _, error = await collect_until_error(make_provider())

    assert time.monotonic() - started < 0.5
    assert error.kind == "rate_limited"
    assert error.retry_after == 3600
    assert len(fake_llm.chat_requests) == 1


async def test_retry_after_as_http_date_is_understood(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)
    fake_llm.script(HttpError(503, retry_after=in_an_hour))

    _, error = await collect_until_error(make_provider())

    assert error.kind == "http_5xx"
    assert error.retry_after is not None
    assert 3590 < error.retry_after <= 3600
    assert len(fake_llm.chat_requests) == 1


async def test_unauthorized_is_permanent_and_not_retried(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.api_key = "the-right-key"

    _, error = await collect_until_error(make_provider(api_key="a-wrong-key"))

    assert error.kind == "auth"
    assert error.permanent is True
    assert error.provider == "primary"
    assert len(fake_llm.chat_requests) == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_bad_request_is_permanent_and_not_retried(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory, status: int
) -> None:
    fake_llm.script(HttpError(status))

    _, error = await collect_until_error(make_provider())

    assert (error.kind, error.permanent) == ("http_4xx", True)
    assert len(fake_llm.chat_requests) == 1


async def test_connection_refused_is_a_connection_error(
    refused_base_url: str, make_provider: ProviderFactory
) -> None:
    _, error = await collect_until_error(make_provider(base_url=refused_base_url))

    assert error.kind == "connection"
    assert error.emitted_text is False
    assert error.permanent is False


async def test_connection_dropped_before_the_response_is_retried(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Drop(), Reply("Second time lucky."))

    events = await collect(make_provider())

    assert text_of(events) == "Second time lucky."
    assert len(fake_llm.chat_requests) == 2


# --- timeouts and stalls ----------------------------------------------------------------------


async def test_first_token_timeout(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Reply("Too late.", first_delay=5))

    started = time.monotonic()
    events, error = await collect_until_error(make_provider(max_retries=0))
    elapsed = time.monotonic() - started

    assert events == []
    assert error.kind == "timeout"
    assert error.emitted_text is False
    assert 0.45 <= elapsed < 1.5
    # The socket was closed, so the server noticed and dropped the response.
    assert await wait_until_async(lambda: fake_llm.abandoned == 1)


async def test_timeout_before_any_text_is_retried(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Stall(chunks_before=0), Reply("Fresh attempt."))

    events = await collect(make_provider())

    assert text_of(events) == "Fresh attempt."
    assert len(fake_llm.chat_requests) == 2


async def test_stall_after_text_is_reported_within_the_inter_token_timeout(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Stall(text="Your refund was approved and", chunks_before=3))

    started = time.monotonic()
    events, error = await collect_until_error(make_provider())
    elapsed = time.monotonic() - started

    assert text_of(events) == "Your refund was"
    assert error.kind == "stalled"
    assert error.emitted_text is True
    assert elapsed < 0.3 + 0.5
    assert len(fake_llm.chat_requests) == 1  # text was shown: never retried
    assert await wait_until_async(lambda: fake_llm.abandoned == 1)


async def test_slow_but_steady_stream_is_not_a_stall(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    # Each gap (0.15 s) is under the inter-token timeout although the whole answer takes longer.
    fake_llm.script(Reply("one two three four five six", first_delay=0.3, delay=0.15))

    events = await collect(make_provider())

    assert text_of(events) == "one two three four five six"


async def test_connection_cut_mid_answer_is_not_retried(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Drop(text="Half an answer", chunks_before=2))

    events, error = await collect_until_error(make_provider())

    assert text_of(events) == "Half an"
    assert error.kind == "connection"
    assert error.emitted_text is True
    assert len(fake_llm.chat_requests) == 1


# --- check and logging ------------------------------------------------------------------------


async def test_check_lists_models_and_never_asks_for_a_completion(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    assert await make_provider().check() is True
    fake_llm.models_status = 503
    assert await make_provider().check() is False

    assert [(r.method, r.path) for r in fake_llm.requests] == [("GET", "/v1/models")] * 2


async def test_check_is_false_when_the_server_refuses_connections(
    refused_base_url: str, make_provider: ProviderFactory
) -> None:
    assert await make_provider(base_url=refused_base_url).check() is False


async def test_logs_carry_provider_kind_and_attempt_but_no_content_or_key(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(HttpError(500), Reply("The secret answer text."))
    request = CompletionRequest(
        messages=[{"role": "user", "content": "my card number is 4111"}], max_tokens=50
    )

    with capture_logs() as logs:
        await collect(make_provider(api_key="sk-very-secret"), request)

    failed = [entry for entry in logs if entry["event"] == "llm.attempt.failed"]
    assert len(failed) == 1
    assert failed[0]["provider"] == "primary"
    assert failed[0]["kind"] == "http_5xx"
    assert failed[0]["attempt"] == 0
    assert failed[0]["will_retry"] is True
    finished = [entry for entry in logs if entry["event"] == "llm.stream.finished"]
    assert finished[0]["completion_tokens"] == 4
    dumped = json.dumps(logs, default=str)
    for secret in ("4111", "secret answer", "sk-very-secret"):
        assert secret not in dumped


async def test_a_reader_that_stops_early_releases_the_connection(
    fake_llm: FakeOpenAIServer, make_provider: ProviderFactory
) -> None:
    fake_llm.script(Reply("a long and slow answer that nobody reads to the end", delay=0.2))

    stream = make_provider().stream(REQUEST)
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # e.g. the user closed the tab

    assert await wait_until_async(lambda: fake_llm.abandoned == 1, within=1.0)
