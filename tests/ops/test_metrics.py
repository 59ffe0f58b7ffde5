"""supportbot.metrics: the numbers a snapshot reports, in memory and on Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from supportbot import metrics
from tests.fakes.openai_server import refusing_socket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_metrics(settings, redis_url: str) -> Iterator[str]:
    """Metrics on the real Redis, under a prefix of this test's own."""
    prefix = f"test-metrics:{uuid.uuid4().hex}"
    settings.REDIS_URL = redis_url
    settings.METRICS_PREFIX = prefix
    metrics.reset()
    yield prefix
    metrics.reset()


def _record_sample() -> None:
    """Ten requests on one route (nine fast, one slow and failing), model and tool calls."""
    for _ in range(9):
        metrics.record_request(route="api/chat", method="POST", status=200, latency_ms=8.0)
    metrics.record_request(route="api/chat", method="POST", status=502, latency_ms=2000.0)
    metrics.record_model_call(
        provider="primary",
        model="m1",
        ok=True,
        latency_ms=400.0,
        prompt_tokens=100,
        completion_tokens=20,
    )
    metrics.record_model_call(
        provider="fallback",
        model="m2",
        ok=False,
        latency_ms=30.0,
        prompt_tokens=0,
        completion_tokens=0,
    )
    metrics.record_tool_call(tool="kb.search", ok=True, latency_ms=12.5)
    metrics.incr("ws.close", code="1000")
    metrics.incr("ws.close", code="1000")
    metrics.incr("ws.close", code="4401")


def _assert_sample(snap: dict) -> None:
    assert snap["requests"] == 10
    assert snap["requestsPerMinute"] == 2.0  # ten over the five-minute window
    assert snap["errorRatePercent"] == 10.0
    assert snap["averageLatencyMs"] == round((9 * 8.0 + 2000.0) / 10, 2)
    route = snap["routes"]["POST /api/chat"]
    assert (route["count"], route["errors"]) == (10, 1)
    # Nine of ten fall in the (5, 10] ms bucket, one in (1000, 2500].
    assert 5 <= route["p50"] <= 10
    assert 1000 < route["p95"] <= 2500
    assert 1000 < route["p99"] <= 2500
    assert snap["aiTokenUsage"] == {
        "prompt": 100,
        "completion": 20,
        "total": 120,
        "totalSinceStart": 120,
    }
    primary = snap["models"]["primary:m1"]
    assert (primary["count"], primary["errors"], primary["promptTokens"]) == (1, 0, 100)
    assert 250 < primary["p50"] <= 500
    assert snap["models"]["fallback:m2"]["errors"] == 1
    tool = snap["tools"]["kb.search"]
    assert (tool["count"], tool["errors"], tool["averageMs"]) == (1, 0, 12.5)
    assert snap["counters"] == {
        "ws.close": {"code=1000": 2, "code=4401": 1},
        "tool_outcomes": {"outcome=ok,tool=kb.search": 1},
    }


def test_snapshot_numbers_in_the_database(memory_metrics):
    _record_sample()
    snap = metrics.snapshot()
    assert snap["backend"] == "database"
    _assert_sample(snap)


def test_empty_snapshot_is_all_zeros(memory_metrics):
    snap = metrics.snapshot(window_minutes=1)
    assert snap["requests"] == 0
    assert snap["requestsPerMinute"] == 0.0
    assert snap["averageLatencyMs"] == 0.0
    assert snap["errorRatePercent"] == 0.0
    assert snap["aiTokenUsage"]["total"] == 0
    assert snap["routes"] == {}


@pytest.mark.django_db
def test_middleware_records_requests_under_their_url_pattern(memory_metrics):
    client = Client()
    client.get("/api/status")
    client.get("/api/status")
    client.get("/api/session/sess_" + "x" * 30)  # a pattern with the id in it
    client.get("/no/such/page/12345")
    client.generic("BREW", "/api/status")  # an unknown verb is one label, not a new one each

    routes = metrics.snapshot()["routes"]

    assert routes["GET /api/status"]["count"] == 2
    assert routes["GET unmatched"]["count"] == 1
    assert routes["OTHER /api/status"]["count"] == 1
    session_routes = [label for label in routes if label.startswith("GET /api/session/")]
    assert len(session_routes) == 1
    assert "<" in session_routes[0]  # the pattern, e.g. /api/session/<session_id>
    assert not any("sess_" in label or "12345" in label for label in routes)


def test_percentile_interpolates_within_buckets():
    buckets = [0.0] * (len(metrics.LATENCY_BUCKETS_MS) + 1)
    index = metrics.LATENCY_BUCKETS_MS.index(100)  # the (50, 100] ms bucket
    buckets[index] = 4
    assert metrics.percentile(buckets, 0.5) == 75.0
    buckets[-1] = 1  # above the last bound: reported as that bound
    assert metrics.percentile(buckets, 0.99) == metrics.LATENCY_BUCKETS_MS[-1]


def test_unreachable_redis_never_breaks_the_caller(settings):
    sock = refusing_socket()
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        settings.METRICS_PREFIX = f"test-metrics:{uuid.uuid4().hex}"
        started = time.monotonic()
        for _ in range(20):
            metrics.record_request(route="health", method="GET", status=200, latency_ms=1.0)
        snap = metrics.snapshot()
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert snap["backend"] == "redis"
    assert snap["requests"] == 0
    # The first failure backs off: twenty records and a snapshot cost one refused connect.
    assert elapsed < 1.0


def test_snapshot_numbers_on_redis(redis_metrics):
    _record_sample()
    snap = metrics.snapshot()
    assert snap["backend"] == "redis"
    _assert_sample(snap)


_RECORD_SCRIPT = """
import sys
import django

django.setup()
from django.conf import settings
from supportbot import metrics

settings.METRICS_PREFIX = sys.argv[1]
for _ in range(3):
    metrics.record_request(route="api/chat", method="POST", status=200, latency_ms=40.0)
metrics.record_model_call(
    provider="primary", model="m1", ok=True, latency_ms=10.0, prompt_tokens=7, completion_tokens=3
)
"""


def test_redis_numbers_are_shared_between_processes(redis_metrics, redis_url):
    metrics.record_request(route="api/chat", method="POST", status=200, latency_ms=40.0)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "supportbot.settings", "REDIS_URL": redis_url}
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_SCRIPT, redis_metrics],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    snap = metrics.snapshot()

    assert snap["routes"]["POST /api/chat"]["count"] == 4
    assert snap["aiTokenUsage"]["total"] == 10
    assert json.loads(json.dumps(snap)) == snap  # plain JSON all the way down
