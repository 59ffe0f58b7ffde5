from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.llm.chain import reset_chain
from supportbot import metrics


@pytest.fixture
def memory_metrics(settings, db) -> Iterator[None]:
    """Metrics in the database store (no Redis), empty at the start of the test."""
    settings.REDIS_URL = ""
    metrics.reset()
    yield
    metrics.reset()


@pytest.fixture
def offline_only(settings) -> Iterator[None]:
    """No model configured: the chain is the offline assistant alone."""
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""
    settings.OPENAI_API_KEY = ""
    reset_chain()
    yield
    reset_chain()
