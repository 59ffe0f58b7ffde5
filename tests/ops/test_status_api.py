"""GET /api/status: headline metrics, active sessions (one COUNT), limits and breaker states."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat.llm.chain import reset_chain
from chat.models import ChatSession
from supportbot import metrics

# get_chain() imports the offline assistant for every chain; until chat.llm.offline lands no
# chain can be built, and the breaker states (the "models" part) cannot be tested.


def _session(*, minutes_ago: float, status: str = ChatSession.Status.ACTIVE) -> ChatSession:
    return ChatSession.objects.create(
        status=status, last_activity=timezone.now() - timedelta(minutes=minutes_ago)
    )


@pytest.mark.django_db
def test_status_counts_only_sessions_active_within_the_idle_window(
    settings, offline_only, memory_metrics, django_assert_num_queries
):
    settings.SESSION_IDLE_MINUTES = 15
    _session(minutes_ago=1)
    _session(minutes_ago=14)
    _session(minutes_ago=2, status=ChatSession.Status.IDLE)  # stored idle, but active again
    _session(minutes_ago=16)  # quiet too long
    _session(minutes_ago=1, status=ChatSession.Status.ENDED)
    _session(minutes_ago=60 * 30)

    Client().get("/api/status")  # builds the chain, whose breaker state is then written
    metrics.flush()
    # One COUNT, and the shared metrics' minutes and totals (the test process has no flusher
    # thread; a reader writes its own numbers first, none here).
    with django_assert_num_queries(3):
        response = Client().get("/api/status")

    assert response.status_code == 200
    assert response.json()["metrics"]["activeSessions"] == 3


@pytest.mark.django_db
def test_status_shape_limits_and_breakers(settings, offline_only, memory_metrics):
    settings.MAX_MESSAGE_CHARS = 1234
    settings.SESSION_TTL_HOURS = 12.0
    settings.RATE_LIMITS_ENABLED = False
    client = Client()
    for _ in range(3):
        client.get("/api/status")
    metrics.record_request(route="api/chat", method="POST", status=503, latency_ms=20.0)
    metrics.record_model_call(
        provider="primary",
        model="m",
        ok=True,
        latency_ms=300.0,
        prompt_tokens=120,
        completion_tokens=30,
    )

    response = client.get("/api/status")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "metrics", "limits", "models", "timestamp"}
    numbers = body["metrics"]
    assert set(numbers) == {
        "activeSessions",
        "requestsPerMinute",
        "averageLatencyMs",
        "errorRatePercent",
        "aiTokenUsage",
    }
    # Three earlier GETs and the 503; the current request is logged after its body is built.
    assert numbers["requestsPerMinute"] == round(4 / 5, 2)
    assert numbers["errorRatePercent"] == 25.0
    assert numbers["averageLatencyMs"] > 0
    assert numbers["aiTokenUsage"] == {
        "prompt": 120,
        "completion": 30,
        "total": 150,
        "totalSinceStart": 150,
    }
    limits = body["limits"]
    assert limits["maxMessageLength"] == 1234
    assert limits["sessionTtlHours"] == 12.0
    assert limits["rateLimitsEnabled"] is False
    assert limits["maxBodyBytes"] == 64 * 1024


@pytest.mark.django_db
def test_status_is_healthy_with_closed_breakers(offline_only, memory_metrics):
    body = Client().get("/api/status").json()
    assert body["status"] == "healthy"
    assert [(b["name"], b["state"]) for b in body["models"]] == [("offline", "closed")]


@pytest.mark.django_db
def test_status_is_degraded_while_a_breaker_is_open(settings, fake_llm, memory_metrics):
    from chat.llm.chain import get_chain

    settings.LLM_BASE_URL = fake_llm.base_url
    settings.LLM_MODEL = fake_llm.model
    settings.OPENAI_API_KEY = ""
    reset_chain()
    try:
        primary = get_chain().links[0]
        for _ in range(settings.LLM_BREAKER_THRESHOLD):
            primary.breaker.record_failure()

        body = Client().get("/api/status").json()
    finally:
        reset_chain()

    assert body["status"] == "degraded"
    assert [(b["name"], b["state"]) for b in body["models"]] == [
        ("primary", "open"),
        ("offline", "closed"),
    ]
    assert fake_llm.requests == []  # status never probes the model
