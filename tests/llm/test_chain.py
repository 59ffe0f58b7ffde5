"""The fallback chain: real OpenAI providers on two fake servers, plus a small scripted link."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from chat.llm import chain as chain_module
from chat.llm.base import CompletionRequest, Finish, ProviderError, StreamEvent, TextDelta
from chat.llm.chain import Link, ModelChain, build_chain, get_chain, reset_chain
from chat.llm.openai_provider import OpenAIProvider
from supportbot.breaker import CircuitBreaker
from tests.fakes.openai_server import (
    FakeOpenAIServer,
    HttpError,
    Reply,
    Stall,
    wait_until_async,
)

REQUEST = CompletionRequest(messages=[{"role": "user", "content": "Hello?"}], max_tokens=100)
ProviderMaker = Callable[[str, FakeOpenAIServer], OpenAIProvider]


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """A local link: yields the given events, or raises ``error`` after them."""

    def __init__(
        self,
        name: str,
        events: list[StreamEvent] | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.name = name
        self.model = f"{name}-model"
        self.events = events if events is not None else [TextDelta("offline answer")]
        self.error = error
        self.calls = 0

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        for event in self.events:
            yield event
        if self.error is not None:
            raise self.error
        yield Finish(provider=self.name, model=self.model)

    async def check(self) -> bool:
        return True


@pytest.fixture
async def openai_provider() -> AsyncIterator[ProviderMaker]:
    """Real providers on a fake server: fast timeouts, no retries (the chain is under test)."""
    made: list[OpenAIProvider] = []

    def make(name: str, server: FakeOpenAIServer) -> OpenAIProvider:
        made.append(
            OpenAIProvider(
                name,
                base_url=server.base_url,
                api_key="test-key",
                model=f"{name}-model",
                max_tokens_cap=256,
                connect_timeout=0.5,
                first_token_timeout=0.5,
                inter_token_timeout=0.3,
                max_retries=0,
                retry_base_delay=0.01,
                retry_max_delay=1.0,
            )
        )
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def link(provider: Any, threshold: int = 3, clock: Callable[[], float] | None = None) -> Link:
    breaker = CircuitBreaker(
        provider.name, failure_threshold=threshold, reset_seconds=30, clock=clock or time.monotonic
    )
    return Link(provider=provider, breaker=breaker)


async def run(chain: ModelChain) -> list[StreamEvent]:
    return [event async for event in chain.stream(REQUEST)]


def finish_of(events: list[StreamEvent]) -> Finish:
    assert isinstance(events[-1], Finish)
    return events[-1]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_first_link_answers_without_fallback(
    fake_llm: FakeOpenAIServer,
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    fake_llm.script(Reply("Primary speaking."))
    chain = ModelChain(
        [
            link(openai_provider("primary", fake_llm)),
            link(openai_provider("fallback", fake_llm_fallback)),
        ]
    )

    events = await run(chain)

    assert text_of(events) == "Primary speaking."
    finish = finish_of(events)
    assert (finish.provider, finish.model, finish.fallback_used) == (
        "primary",
        "primary-model",
        False,
    )
    assert fake_llm_fallback.requests == []


async def test_falls_back_from_a_failing_primary_to_a_working_fallback(
    fake_llm: FakeOpenAIServer,
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    fake_llm.set_default(HttpError(503))
    fake_llm_fallback.script(Reply("Fallback speaking."))
    chain = ModelChain(
        [
            link(openai_provider("primary", fake_llm)),
            link(openai_provider("fallback", fake_llm_fallback)),
        ]
    )

    events = await run(chain)

    assert text_of(events) == "Fallback speaking."
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.provider, finish.fallback_used) == ("fallback", True)
    assert finish.usage.completion_tokens == 2
    assert len(fake_llm.chat_requests) == 1
    assert chain.breaker_states()[0]["consecutiveFailures"] == 1
    assert chain.breaker_states()[1]["totalSuccesses"] == 1


async def test_stall_after_text_is_not_retried_on_the_fallback(
    fake_llm: FakeOpenAIServer,
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    fake_llm.script(Stall(text="The answer is", chunks_before=2))
    primary = openai_provider("primary", fake_llm)
    # The stall under test comes after the first tokens; a slow first token on a busy machine
    # must not stand in for it (the short timeout would fail over before any text).
    primary.first_token_timeout = 5.0
    chain = ModelChain(
        [
            link(primary),
            link(openai_provider("fallback", fake_llm_fallback)),
        ]
    )

    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in chain.stream(REQUEST):
            events.append(event)

    assert text_of(events) == "The answer"
    assert (caught.value.kind, caught.value.emitted_text) == ("stalled", True)
    assert caught.value.provider == "primary"
    assert fake_llm_fallback.requests == []


async def test_every_link_failing_raises_all_failed(
    fake_llm: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    fake_llm.set_default(HttpError(429, retry_after=120))
    chain = ModelChain(
        [
            link(openai_provider("primary", fake_llm)),
            link(
                ScriptedProvider(
                    "offline",
                    events=[],
                    error=ProviderError("x", provider="offline", kind="bad_response"),
                )
            ),
        ]
    )

    with pytest.raises(ProviderError) as caught:
        await run(chain)

    error = caught.value
    assert (error.kind, error.provider, error.emitted_text) == ("all_failed", "chain", False)
    assert "primary=rate_limited" in str(error)
    assert "offline=bad_response" in str(error)
    assert error.retry_after == 120


async def test_a_crashing_link_counts_as_a_failure_and_does_not_leak(
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    crashing = ScriptedProvider("primary", events=[], error=KeyError("internal-detail-xyz"))
    chain = ModelChain([link(crashing), link(openai_provider("fallback", fake_llm_fallback))])

    with capture_logs() as logs:
        events = await run(chain)

    assert text_of(events) == "Hello from the fake model."
    assert finish_of(events).fallback_used is True
    assert chain.breaker_states()[0]["consecutiveFailures"] == 1
    crashed = [entry for entry in logs if entry["event"] == "llm.chain.link_crashed"]
    assert crashed and crashed[0]["provider"] == "primary" and crashed[0]["exc_info"] is True


async def test_a_crash_after_text_is_wrapped_and_not_retried(
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    crashing = ScriptedProvider(
        "primary", events=[TextDelta("Partial")], error=RuntimeError("boom-123")
    )
    chain = ModelChain([link(crashing), link(openai_provider("fallback", fake_llm_fallback))])

    with pytest.raises(ProviderError) as caught:
        await run(chain)

    assert (caught.value.kind, caught.value.emitted_text) == ("bad_response", True)
    assert "boom-123" not in str(caught.value)
    assert fake_llm_fallback.requests == []


async def test_breaker_opens_and_skips_the_link_then_probes_and_recovers(
    fake_llm: FakeOpenAIServer,
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    clock = FakeClock()
    fake_llm.script(HttpError(500), HttpError(500))
    chain = ModelChain(
        [
            link(openai_provider("primary", fake_llm), threshold=2, clock=clock),
            link(openai_provider("fallback", fake_llm_fallback)),
        ]
    )

    for _ in range(2):
        assert finish_of(await run(chain)).provider == "fallback"
    assert len(fake_llm.chat_requests) == 2
    assert chain.breaker_states()[0]["state"] == "open"

    # Open: the primary is not even asked.
    events = await run(chain)
    assert finish_of(events).provider == "fallback"
    assert len(fake_llm.chat_requests) == 2

    # After the reset time one probe goes through; it succeeds and closes the breaker.
    clock.now += 30
    fake_llm.script(Reply("Back online."))
    events = await run(chain)
    assert text_of(events) == "Back online."
    assert (finish_of(events).provider, finish_of(events).fallback_used) == ("primary", False)
    assert len(fake_llm.chat_requests) == 3
    assert chain.breaker_states()[0]["state"] == "closed"


async def test_failed_probe_reopens_the_breaker(
    fake_llm: FakeOpenAIServer,
    fake_llm_fallback: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    clock = FakeClock()
    fake_llm.set_default(HttpError(500))
    chain = ModelChain(
        [
            link(openai_provider("primary", fake_llm), threshold=1, clock=clock),
            link(openai_provider("fallback", fake_llm_fallback)),
        ]
    )
    await run(chain)
    clock.now += 30

    await run(chain)  # the probe fails

    assert len(fake_llm.chat_requests) == 2
    assert chain.breaker_states()[0]["state"] == "open"
    await run(chain)
    assert len(fake_llm.chat_requests) == 2


async def test_an_abandoned_probe_frees_the_probe_slot() -> None:
    clock = FakeClock()
    primary = ScriptedProvider("primary", events=[TextDelta("a"), TextDelta("b")])
    primary_link = link(primary, threshold=1, clock=clock)
    chain = ModelChain([primary_link, link(ScriptedProvider("offline"))])
    primary_link.breaker.record_failure()
    clock.now += 30

    stream = chain.stream(REQUEST)
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # the client went away mid-answer

    assert primary_link.breaker.allow() is True


async def test_open_breakers_everywhere_fail_without_calling_anyone(
    fake_llm: FakeOpenAIServer,
    openai_provider: ProviderMaker,
) -> None:
    primary_link = link(openai_provider("primary", fake_llm), threshold=1)
    primary_link.breaker.record_failure()

    with pytest.raises(ProviderError) as caught:
        await run(ModelChain([primary_link]))

    assert "primary=circuit_open" in str(caught.value)
    assert fake_llm.requests == []


def test_breaker_states_follow_chain_order() -> None:
    chain = ModelChain([link(ScriptedProvider("primary")), link(ScriptedProvider("offline"))])

    assert [state["name"] for state in chain.breaker_states()] == ["primary", "offline"]
    assert [entry.provider.name for entry in chain.links] == ["primary", "offline"]


def test_a_chain_needs_links() -> None:
    with pytest.raises(ValueError):
        ModelChain([])


# --- building from settings -------------------------------------------------------------------


@pytest.fixture
def no_llm_settings(settings: Any) -> Any:
    settings.LLM_BASE_URL = ""
    settings.LLM_API_KEY = ""
    settings.LLM_MODEL = ""
    settings.OPENAI_API_KEY = ""
    reset_chain()
    yield settings
    reset_chain()


def test_without_llm_settings_only_the_offline_link_is_built(no_llm_settings: Any) -> None:
    chain = build_chain()

    assert [entry.provider.name for entry in chain.links] == ["offline"]


def test_configured_models_come_before_offline(no_llm_settings: Any) -> None:
    no_llm_settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    no_llm_settings.LLM_MODEL = "local-model"
    no_llm_settings.OPENAI_API_KEY = "sk-test"
    no_llm_settings.OPENAI_MODEL = "gpt-test"
    no_llm_settings.LLM_BREAKER_THRESHOLD = 7

    chain = build_chain()

    assert [entry.provider.name for entry in chain.links] == ["primary", "fallback", "offline"]
    assert [entry.provider.model for entry in chain.links[:2]] == ["local-model", "gpt-test"]
    assert chain.links[0].breaker.failure_threshold == 7


def test_get_chain_is_cached_until_reset(no_llm_settings: Any) -> None:
    first = get_chain()
    first.links[0].breaker.record_failure()

    assert get_chain() is first
    assert get_chain().breaker_states()[0]["totalFailures"] == 1
    reset_chain()
    assert get_chain() is not first
    assert chain_module._chain is not None


async def test_closing_the_chain_stream_releases_the_link_connection(
    fake_llm: FakeOpenAIServer, openai_provider: ProviderMaker
) -> None:
    fake_llm.script(Reply("a slow answer the user will not wait for", delay=0.2))
    chain = ModelChain([link(openai_provider("primary", fake_llm))])

    stream = chain.stream(REQUEST)
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()

    assert await wait_until_async(lambda: fake_llm.abandoned == 1, within=1.0)
    assert chain.breaker_states()[0]["totalFailures"] == 0
