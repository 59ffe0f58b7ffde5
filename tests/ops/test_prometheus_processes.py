"""``GET /metrics`` across processes: two servers that share the metrics store (the database on
the embedded default, Redis in production) report the same totals, parsed by prometheus_client's
own parser."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.live_server import LiveServer

TOKEN = "prometheus-test-token-" + "x" * 16


def _post(server: LiveServer, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _scrape(server: LiveServer) -> dict[str, float]:
    request = urllib.request.Request(
        server.base_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + json.dumps(sample.labels, sort_keys=True)
            samples[key] = sample.value
    return samples


def _turns(samples: dict[str, float]) -> float:
    return sum(
        v for k, v in samples.items() if k.startswith("supportbot_turn_duration_seconds_count")
    )


@pytest.fixture(params=["database", "redis"])
def two_servers(request, tmp_path, redis_url_or_none) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {"METRICS_TOKEN": TOKEN, "METRICS_FLUSH_SECONDS": "0.2"}
    if request.param == "redis":
        if not redis_url_or_none:
            pytest.skip("REDIS_URL not set")
        env.update(REDIS_URL=redis_url_or_none, METRICS_PREFIX=f"test-prom:{uuid.uuid4().hex}")
    first = LiveServer(tmp_path / "var", env=env).prepare()  # one data directory: one database
    second = LiveServer(tmp_path / "var", env=env)
    first.start()
    second.start()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


@pytest.fixture
def redis_url_or_none() -> str:
    import os

    from tests.conftest import REQUIRE_SERVICES

    url = os.environ.get("REDIS_URL", "")
    if not url and REQUIRE_SERVICES:
        pytest.fail("REDIS_URL is required")
    return url


def test_two_processes_report_the_same_totals(two_servers) -> None:
    first, second = two_servers
    for server, questions in ((first, 2), (second, 3)):
        session_id = _post(server, "/api/session", {"userId": "prom-test"})["sessionId"]
        for index in range(questions):
            _post(
                server,
                "/api/chat",
                {"sessionId": session_id, "message": f"How do I reset my password? {index}"},
            )
    deadline = time.monotonic() + 20
    while True:
        scraped = [_scrape(first), _scrape(second)]
        if all(_turns(s) == 5 for s in scraped) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [_turns(s) for s in scraped] == [5, 5]
    counts = [
        {
            k: v
            for k, v in s.items()
            if k.startswith(("supportbot_turn_", "supportbot_sessions_total"))
        }
        for s in scraped
    ]
    assert counts[0] == counts[1]
    created = sum(
        v
        for k, v in scraped[0].items()
        if k.startswith("supportbot_sessions_total") and '"created"' in k
    )
    assert created == 2
