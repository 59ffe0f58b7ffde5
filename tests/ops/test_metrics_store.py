"""The lasting metrics store: minutes roll up into hours and totals, old buckets go, a store that
cannot be written loses the flush and counts it, usage is kept per customer, and every process's
breakers are seen by all. Both stores: the database (embedded default) and Redis."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from supportbot import metrics, metrics_store
from supportbot.models import MetricPoint
from tests.fakes.openai_server import refusing_socket

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["database", "redis"])
def store(request, settings) -> Iterator[str]:
    """Each test on the database store and on Redis (under a prefix of its own)."""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        settings.REDIS_URL = redis_url
        settings.METRICS_PREFIX = f"test-metrics:{uuid.uuid4().hex}"
    else:
        settings.REDIS_URL = ""
    metrics.reset()
    yield request.param
    metrics.reset()


def test_minutes_add_up_into_hours_and_totals(store):
    now = time.time()
    minute = int(now // 60)
    batch = metrics.Batch(
        minutes={
            minute - 2: {"count|x|k=a": 2, "turn|rest|n": 1},
            minute - 1: {"count|x|k=a": 3},
            minute: {"count|x|k=b": 1},
        }
    )
    metrics_store.store().write(batch)
    metrics_store.store().write(metrics.Batch(minutes={minute: {"count|x|k=b": 4}}))

    minutes = metrics.read_buckets("m", [minute - 2, minute - 1, minute])
    assert minutes[minute - 2] == {"count|x|k=a": 2, "turn|rest|n": 1}
    assert minutes[minute] == {"count|x|k=b": 5}
    hours = metrics.read_buckets("h", sorted({m // 60 for m in (minute - 2, minute)}))
    merged = metrics.sum_fields(hours.values())
    assert merged == {"count|x|k=a": 5, "count|x|k=b": 5, "turn|rest|n": 1}
    assert metrics.read_totals() == merged


def test_records_reach_the_store_through_the_buffer(store):
    for _ in range(3):
        metrics.record_turn(
            transport="rest", ok=True, total_ms=120.0, first_token_ms=40.0, sourced=True
        )
    metrics.record_turn(
        transport="websocket", ok=False, total_ms=9.0, first_token_ms=None, error_code="X"
    )
    snap = metrics.snapshot(window_minutes=1)
    assert snap["turns"]["count"] == 4
    assert snap["turns"]["errors"] == 1
    assert snap["firstToken"]["count"] == 3
    assert snap["counters"]["turn_errors"] == {"code=X": 1}
    assert snap["counters"]["answers"] == {"sourced=yes": 3}


def test_the_database_store_prunes_old_minutes_and_hours(settings):
    settings.REDIS_URL = ""
    settings.METRICS_RETENTION_DAYS = 2
    metrics.reset()
    now = time.time()
    minute = int(now // 60)
    store = metrics_store.store()
    store.write(
        metrics.Batch(
            minutes={
                minute: {"count|x|": 1},
                minute - 27 * 60: {"count|x|": 1},  # a minute over a day old: its minute goes
                minute - 3 * 24 * 60: {"count|x|": 1},  # three days: its hour goes too
            }
        )
    )
    store.prune(now)
    kept = set(MetricPoint.objects.values_list("resolution", "start"))
    assert ("m", minute) in kept
    assert ("m", minute - 27 * 60) not in kept
    assert ("h", (minute - 27 * 60) // 60) in kept
    assert ("h", (minute - 3 * 24 * 60) // 60) not in kept
    assert metrics.read_totals() == {"count|x|": 3}  # totals are never pruned


def test_a_store_that_cannot_be_written_drops_the_flush_and_counts_it(settings):
    settings.REDIS_URL = ""
    metrics.reset()
    sock = refusing_socket()
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        metrics.incr("lost_one")
        metrics.incr("lost_two")
        started = time.monotonic()
        assert metrics.flush() is False
        metrics.incr("lost_three")  # within the cooldown: dropped without trying Redis again
        assert metrics.flush() is False
        assert time.monotonic() - started < 1.5
    finally:
        sock.close()
    settings.REDIS_URL = ""  # the store is back (another one here): the loss is reported
    metrics_store.reset_cooldown()
    totals = metrics.read_totals()
    assert totals.get("count|metrics_dropped|") == 3
    assert not any(name.startswith("count|lost_") for name in totals)


def test_usage_is_kept_per_customer_and_day(store):
    metrics.record_usage(user_id="ann", prompt_tokens=100, completion_tokens=10, cost_usd=0.01)
    metrics.record_usage(user_id="ann", prompt_tokens=50, completion_tokens=5, cost_usd=0.02)
    metrics.record_usage(user_id="bob", prompt_tokens=1000, completion_tokens=0, cost_usd=0.0)
    metrics.record_usage(user_id="", prompt_tokens=1, completion_tokens=1, cost_usd=0.0)
    rows = metrics.usage_rows(since=datetime.now(tz=UTC).date() - timedelta(days=1))
    assert rows[0] == {
        "user_id": "ann",
        "api_key": "",
        "turns": 2,
        "prompt_tokens": 150,
        "completion_tokens": 15,
        "cost_usd": pytest.approx(0.03),
    }
    assert [r["user_id"] for r in rows] == ["ann", "bob", ""]


def test_cost_follows_the_price_table(store, settings):
    settings.MODEL_PRICES = {"m-priced": (1.0, 2.0)}
    metrics.record_model_call(
        provider="p",
        model="m-priced",
        ok=True,
        latency_ms=5,
        prompt_tokens=1000,
        completion_tokens=500,
    )
    metrics.record_model_call(
        provider="p", model="m-unknown", ok=True, latency_ms=5, prompt_tokens=7, completion_tokens=3
    )
    totals = metrics.read_totals()
    assert totals["tokens|cost|usd"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1_000_000)
    assert totals["tokens|unpriced|n"] == 10


def test_breakers_of_every_process_are_seen(store):
    calls = []

    def source() -> list[dict]:
        calls.append(1)
        return [{"kind": "llm", "name": "primary", "state": "open", "consecutiveFailures": 5}]

    metrics.register_breakers(source)
    try:
        states = metrics.breaker_states()
    finally:
        metrics_store.unregister_breakers(source)
    mine = [s for s in states if s["name"] == "primary"]
    assert mine and mine[0]["state"] == "open"
    assert mine[0]["process"].endswith(str(os.getpid()))


def test_labels_cannot_smuggle_separators(store):
    metrics.incr("weird", code="a|b,c=d")
    counters = metrics.counters(metrics.read_totals())
    assert counters["weird"] == {"code=a/b;c:d": 1}
