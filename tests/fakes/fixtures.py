"""Pytest fixtures around the fakes: two independent OpenAI-compatible servers and a refused port.

Each test gets fresh servers (start and stop take milliseconds), so a stalled response or a
leftover script can never leak into the next test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, refusing_socket


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAIServer]:
    """The primary model's server."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_llm_fallback() -> Iterator[FakeOpenAIServer]:
    """A second, independent server (the fallback model)."""
    with FakeOpenAIServer(model="fake-fallback-model") as server:
        yield server


@pytest.fixture
def refused_base_url() -> Iterator[str]:
    """An OpenAI base URL on 127.0.0.1 where every connection is refused."""
    sock = refusing_socket()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()
