"""The fallback chain: primary model → fallback model → offline assistant.

Each link has its own circuit breaker. A link that fails before saying anything hands the turn to
the next one; a link that fails mid-answer ends the turn with an error, because continuing on
another model would splice two different answers together.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings

from chat.llm.base import CompletionRequest, Finish, Provider, ProviderError, StreamEvent, TextDelta
from chat.llm.offline import OfflineAssistant
from chat.llm.openai_provider import OpenAIProvider
from supportbot.breaker import CircuitBreaker

logger = structlog.get_logger("chat.llm")


@dataclass(frozen=True)
class Link:
    """One provider of the chain and the breaker that guards it."""

    provider: Provider
    breaker: CircuitBreaker


@dataclass
class _LinkRun:
    """Progress of one link during one turn."""

    emitted_text: bool = False
    judged: bool = False  # the breaker has been told success or failure


class ModelChain:
    """Tries its links in order until one answers."""

    def __init__(self, links: Sequence[Link]) -> None:
        if not links:
            raise ValueError("a model chain needs at least one link")
        self.links: list[Link] = list(links)

    async def stream(
        self, request: CompletionRequest, *, start_at: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer of the first link that can give one; raise ``ProviderError``
        (``kind="all_failed"``) when none can, or the link's error when it failed mid-answer.

        ``start_at`` names the link to begin with: a turn's later rounds (after tool calls)
        continue with the link that answered the first, instead of waiting out the timeouts of
        links that already failed this turn."""
        failures: list[ProviderError] = []
        names = [link.provider.name for link in self.links]
        first = names.index(start_at) if start_at in names else 0
        for position, link in enumerate(self.links):
            if position < first:
                continue
            name = link.provider.name
            if not link.breaker.allow():
                logger.info("llm.chain.skipped", provider=name, reason="circuit_open")
                failures.append(
                    ProviderError(f"{name}: circuit open", provider=name, kind="circuit_open")
                )
                continue
            run = _LinkRun()
            events = self._stream_link(link, position, request, run)
            try:
                async for event in events:
                    yield event
                return
            except ProviderError as exc:
                self._judge_failure(link, run)
                if run.emitted_text or exc.emitted_text:
                    exc.emitted_text = True
                    logger.warning("llm.chain.failed_mid_answer", provider=name, kind=exc.kind)
                    raise
                logger.warning(
                    "llm.chain.link_failed", provider=name, kind=exc.kind, permanent=exc.permanent
                )
                failures.append(exc)
            except Exception:
                # A bug or an unexpected library error in a link: it counts as a failure of that
                # link, its details go to the log only.
                self._judge_failure(link, run)
                logger.exception("llm.chain.link_crashed", provider=name)
                error = ProviderError(
                    f"{name}: unexpected error",
                    provider=name,
                    kind="bad_response",
                    emitted_text=run.emitted_text,
                )
                if run.emitted_text:
                    raise error from None
                failures.append(error)
            finally:
                await events.aclose()  # a caller that stops reading frees the link's connection now
                if not run.judged:
                    # The caller stopped reading (disconnect, cancellation) before a verdict.
                    link.breaker.release()
        raise _all_failed(failures)

    def breaker_states(self) -> list[dict[str, Any]]:
        """One breaker snapshot per link, in chain order."""
        return [link.breaker.snapshot() for link in self.links]

    @staticmethod
    async def _stream_link(
        link: Link, position: int, request: CompletionRequest, run: _LinkRun
    ) -> AsyncGenerator[StreamEvent, None]:
        name = link.provider.name
        events = link.provider.stream(request)
        try:
            async for event in events:
                if isinstance(event, Finish):
                    link.breaker.record_success()
                    run.judged = True
                    if position > 0:
                        event = dataclasses.replace(event, fallback_used=True)
                    yield event
                    return
                if isinstance(event, TextDelta):
                    run.emitted_text = True
                yield event
        finally:
            # Close the link's generator now (releasing its connection), not at garbage collection.
            if isinstance(events, AsyncGenerator):
                await events.aclose()
        raise ProviderError(
            f"{name}: stream ended without Finish",
            provider=name,
            kind="bad_response",
            emitted_text=run.emitted_text,
        )

    @staticmethod
    def _judge_failure(link: Link, run: _LinkRun) -> None:
        link.breaker.record_failure()
        run.judged = True


def _all_failed(failures: list[ProviderError]) -> ProviderError:
    summary = ", ".join(f"{error.provider}={error.kind}" for error in failures)
    waits = [error.retry_after for error in failures if error.retry_after is not None]
    error = ProviderError(
        f"every model link failed: {summary}",
        provider="chain",
        kind="all_failed",
        retry_after=min(waits) if waits else None,
    )
    if failures:
        error.__cause__ = failures[-1]
    return error


# --- the process-wide chain --------------------------------------------------------------------


def build_chain() -> ModelChain:
    """The chain the settings describe: primary and fallback when configured, offline last."""
    links: list[Link] = []
    if settings.LLM_BASE_URL and settings.LLM_MODEL:
        primary = _openai_provider(
            "primary",
            base_url=settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY or "not-needed",  # local servers take any key
            model=settings.LLM_MODEL,
        )
        links.append(_link(primary))
    if settings.OPENAI_API_KEY:
        fallback = _openai_provider(
            "fallback",
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY,
            model=settings.OPENAI_MODEL,
        )
        links.append(_link(fallback))
    # OFFLINE_FALLBACK=false makes a configured deployment answer AI_SERVICE_UNAVAILABLE rather
    # than knowledge-base excerpts when its models are down; with no model at all, offline it is.
    if settings.OFFLINE_FALLBACK or not links:
        links.append(_link(OfflineAssistant()))
    return ModelChain(links)


def _openai_provider(name: str, *, base_url: str, api_key: str, model: str) -> OpenAIProvider:
    return OpenAIProvider(
        name,
        base_url=base_url,
        api_key=api_key,
        model=model,
        max_tokens_cap=settings.LLM_MAX_TOKENS,
        connect_timeout=settings.LLM_CONNECT_TIMEOUT,
        first_token_timeout=settings.LLM_FIRST_TOKEN_TIMEOUT,
        inter_token_timeout=settings.LLM_INTER_TOKEN_TIMEOUT,
        max_retries=settings.LLM_MAX_RETRIES,
        retry_base_delay=settings.LLM_RETRY_BASE_DELAY,
        retry_max_delay=settings.LLM_RETRY_MAX_DELAY,
    )


def _link(provider: Provider) -> Link:
    breaker = CircuitBreaker(
        provider.name,
        failure_threshold=settings.LLM_BREAKER_THRESHOLD,
        reset_seconds=settings.LLM_BREAKER_RESET_SECONDS,
    )
    return Link(provider=provider, breaker=breaker)


_chain: ModelChain | None = None
_chain_lock = threading.Lock()


def get_chain() -> ModelChain:
    """The process-wide chain, built on first use; its breakers persist across turns."""
    global _chain
    with _chain_lock:
        if _chain is None:
            _chain = build_chain()
        return _chain


def built_breaker_states() -> list[dict[str, Any]]:
    """The breakers of this process's chain as the shared metrics report them (``kind`` llm,
    with the link's model), or none when no chain was built here: a process that never answers
    (a beat, a worker without model calls) does not speak for the models."""
    chain = _chain
    if chain is None:
        return []
    return [
        {**link.breaker.snapshot(), "kind": "llm", "model": link.provider.model}
        for link in chain.links
    ]


async def close_loop_clients() -> None:
    """Close the model clients opened on the running loop: a sync caller (a Celery task through
    ``async_to_sync``) calls this before its short-lived loop closes."""
    chain = _chain
    if chain is None:
        return
    for link in chain.links:
        await link.provider.aclose()


def reset_chain() -> None:
    """Forget the cached chain (tests that change LLM settings call this)."""
    global _chain
    with _chain_lock:
        _chain = None
