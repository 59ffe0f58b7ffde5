"""The ops dashboard: its figures from the shared metrics, its charts, its ranges and faults."""

from __future__ import annotations

import itertools
import re
import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client

from supportbot import metrics
from tests.fakes.openai_server import refusing_socket

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(db) -> Client:
    user = User.objects.create_user(
        "lead", password="pw-lead-12345", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(user)
    return client


def _record_turns() -> None:
    for index in range(8):
        metrics.record_turn(
            transport="rest",
            ok=True,
            total_ms=400.0 + index,
            first_token_ms=120.0,
            sourced=index % 2 == 0,
            fallback=index == 0,
        )
    metrics.record_turn(
        transport="websocket",
        ok=False,
        total_ms=30_000.0,
        first_token_ms=None,
        error_code="AI_SERVICE_UNAVAILABLE",
    )
    metrics.record_model_call(
        provider="primary",
        model="gpt-4o-mini",
        ok=True,
        latency_ms=300.0,
        prompt_tokens=1_000_000,
        completion_tokens=100_000,
    )
    metrics.record_usage(user_id="cust-42", prompt_tokens=1000, completion_tokens=200, cost_usd=0.5)
    metrics.incr("guard", outcome="redacted", detail="email")
    metrics.incr("guard", outcome="rate_limited", detail="ip_api_requests")


def test_dashboard_shows_the_figures_of_the_range(staff_client, memory_metrics):
    _record_turns()
    response = staff_client.get("/admin/ops/dashboard/?range=1h")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "Turn latency" in html
    assert "cust-42" in html
    # 9 turns, one failed: 11.11 %
    assert "11.11 %" in html
    # gpt-4o-mini at 0.15 + 0.60 per million: 0.15 + 0.06
    assert "$0.21" in html


@pytest.mark.parametrize("path", ["/admin/ops/dashboard/", "/admin/ops/knowledge-gaps/"])
def test_unknown_range_is_a_clear_400(staff_client, memory_metrics, path):
    response = staff_client.get(path + "?range=2y")
    assert response.status_code == 400
    assert "range must be one of" in response.content.decode().lower()


def test_api_metrics_json(staff_client, memory_metrics):
    _record_turns()
    body = staff_client.get("/api/metrics?range=1h").json()
    assert body["turns"]["count"] == 9
    assert body["turns"]["errorsByCode"] == {"code=AI_SERVICE_UNAVAILABLE": 1}
    assert body["models"]["links"]["primary:gpt-4o-mini"]["costUsd"] == pytest.approx(0.21)
    assert body["usage"][0]["userId"] == "cust-42"


def test_api_metrics_refuses_strangers_and_bad_names(memory_metrics, settings):
    assert Client().get("/api/metrics").status_code == 401
    settings.METRICS_TOKEN = "t" * 32
    ok = Client().get("/api/metrics", HTTP_AUTHORIZATION="Bearer " + "t" * 32)
    assert ok.status_code == 200
    bad = Client().get(
        "/api/metrics?metrics=turns,nonsense", HTTP_AUTHORIZATION="Bearer " + "t" * 32
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "INVALID_FIELD_VALUE"


def test_prometheus(memory_metrics, settings):
    from prometheus_client.parser import text_string_to_metric_families

    assert Client().get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "s" * 32
    assert Client().get("/metrics").status_code == 401
    _record_turns()
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + "s" * 32).content.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "supportbot_turn_duration_seconds" in families


def test_dead_redis_degrades_the_dashboard(staff_client, settings):
    sock = refusing_socket()
    try:
        settings.REDIS_URL = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        settings.METRICS_PREFIX = f"test-metrics:{uuid.uuid4().hex}"
        response = staff_client.get("/admin/ops/dashboard/")
    finally:
        sock.close()
    assert response.status_code == 200
    assert re.search("metrics cannot be read", response.content.decode())


def test_gaps_page(staff_client, memory_metrics):
    response = staff_client.get("/admin/ops/knowledge-gaps/")
    assert response.status_code == 200


def test_chart_text_is_escaped_and_axis_labels_never_crowd():
    from ops.charts import Point, Series, bar_chart, chart_table, line_chart, x_ticks

    points = [Point(f"<b>{i}</b>", {"a": float(i), "b": None}) for i in range(3)]
    series = [Series("a", "<script>x</script>"), Series("b", "b & c")]
    for html in (
        str(line_chart("t", points, series)),
        str(bar_chart("t", points, series)),
        str(chart_table(points, series)),
    ):
        assert "<script>" not in html and "<b>" not in html
        assert "&lt;script&gt;" in html
    # 168 hourly points labelled "Mon 18:00": evenly strided, and few enough to sit side by side.
    hours = [Point("Mon 18:00", {}) for _ in range(168)]
    ticks = x_ticks(hours)
    assert ticks[0] == 0 and len(ticks) <= 4
    assert len({b - a for a, b in itertools.pairwise(ticks)}) == 1
