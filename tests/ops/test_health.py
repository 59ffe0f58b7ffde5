"""GET /health: the shape, each component's verdict, the overall status and its HTTP code, and
the background refreshers that keep the slow probes (worker ping, model endpoints) out of every
request."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from chat.llm.chain import get_chain, reset_chain
from ops import health
from ops.refresher import HUNG_GRACE_SECONDS
from tests.fakes.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = {
    "database",
    "cache",
    "channelLayer",
    "model",
    "storage",
    "worker",
    "beat",
    "rateLimits",
}
# A request that waits for nothing answers in milliseconds; a worker ping with nobody to answer
# takes WORKER_PING_TIMEOUT (1.5 s; about 2 s on the filesystem broker, which polls each second).
FAST = 0.5
# get_chain() imports the offline assistant for every chain; until chat.llm.offline lands, no
# chain can be built, so the model component reports a failed check and its tests are skipped.


@pytest.fixture
def primary_model(settings, fake_llm: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The primary link points at the fake OpenAI-compatible server; no fallback."""
    settings.LLM_BASE_URL = fake_llm.base_url
    settings.LLM_MODEL = fake_llm.model
    settings.OPENAI_API_KEY = ""
    settings.HEALTH_MODEL_CACHE_SECONDS = 60
    reset_chain()
    yield fake_llm
    reset_chain()


@pytest.fixture(autouse=True)
def _no_background_answers() -> Iterator[None]:
    """Every test starts before the refreshers' first answers (their threads live on)."""
    health.forget_answers()
    yield
    health.forget_answers()


async def _get_health() -> tuple[int, dict]:
    response = await AsyncClient().get("/health")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


async def _timed_health() -> tuple[float, dict]:
    started = time.monotonic()
    _, body = await _get_health()
    return time.monotonic() - started, body


async def _settled_health(*names: str, within: float = 10.0) -> tuple[int, dict]:
    """/health once the named background components have their first answer."""
    deadline = time.monotonic() + within
    while True:
        status, body = await _get_health()
        pending = [n for n in names if body["components"][n].get("detail") == health.CHECKING]
        if not pending:
            return status, body
        assert time.monotonic() < deadline, f"no answer for {pending} within {within} s"
        await asyncio.sleep(0.05)


@pytest.mark.django_db(transaction=True)
async def test_health_reports_every_component_and_only_the_missing_worker_degrades(offline_only):
    status, body = await _settled_health("worker")

    assert status == 200
    assert set(body) == {"status", "components", "uptime", "version", "timestamp"}
    components = body["components"]
    assert set(components) == COMPONENTS
    for name in ("database", "cache", "channelLayer", "storage"):
        assert components[name]["status"] == "up", (name, components[name])
    for component in components.values():
        assert isinstance(component["latencyMs"], float | int) and component["latencyMs"] >= 0
    # No Celery worker runs during tests: the chat works without one, so "degraded", not "down".
    assert components["worker"]["status"] == "degraded"
    assert components["worker"]["detail"] == "no worker answered"
    assert 0 <= components["worker"]["ageSeconds"] < 5
    assert components["rateLimits"]["status"] == "up"
    assert components["beat"]["status"] == "degraded"
    assert components["beat"]["detail"] == "no beat has run"
    assert body["status"] == "degraded"
    assert body["uptime"] > 0
    assert body["version"]
    assert abs(body["timestamp"] - time.time() * 1000) < 60_000
    assert components["model"] == {
        "status": "up",
        "latencyMs": components["model"]["latencyMs"],
        "detail": "offline assistant",
    }


@pytest.mark.django_db(transaction=True)
async def test_beat_is_up_while_one_holds_its_lease_and_reported_stale_after(offline_only):
    from ops.models import SchedulerLease
    from ops.scheduler import lease_take

    assert await sync_to_async(lease_take)(holder="beat-a", seconds=30)
    _, body = await _get_health()
    assert body["components"]["beat"]["status"] == "up"

    # The beat died 95 s ago (a lease of 30 s renewed every 10 s).
    stale = timezone.now() - timedelta(seconds=95)
    await SchedulerLease.objects.filter(name="beat").aupdate(
        renewed_at=stale, expires_at=stale + timedelta(seconds=30)
    )
    _, body = await _get_health()
    assert body["components"]["beat"] == {
        "status": "degraded",
        "latencyMs": body["components"]["beat"]["latencyMs"],
        "detail": "no beat for 95 s",
    }


@pytest.mark.django_db(transaction=True)
async def test_in_memory_channel_layer_is_named_in_the_detail(offline_only, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    _, body = await _get_health()
    assert body["components"]["channelLayer"]["status"] == "up"
    assert body["components"]["channelLayer"]["detail"] == "in-memory (this process only)"


@pytest.mark.django_db(transaction=True)
async def test_post_to_health_is_405_in_the_json_error_shape():
    response = await AsyncClient().post("/health", data={})
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    body = response.json()
    assert body["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert body["path"] == "/health"
    assert body["method"] == "POST"
    assert body["requestId"] == response["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
async def test_model_probe_is_cached_so_two_probes_hit_models_once(primary_model):
    first_status, first = await _settled_health("model")
    _, second = await _get_health()

    model_lists = [r for r in primary_model.requests if r.path.startswith("/v1/models")]
    assert len(model_lists) == 1
    assert primary_model.chat_requests == []  # never a paid completion
    for body in (first, second):
        assert body["components"]["model"]["status"] == "up"
        assert body["components"]["model"]["detail"] == "primary: fake-model"
    assert first_status == 200


@pytest.mark.django_db(transaction=True)
async def test_unreachable_model_is_down_but_service_only_degraded(primary_model):
    primary_model.models_status = 500

    status, body = await _settled_health("model")

    model = body["components"]["model"]
    assert model["status"] == "down"
    assert model["detail"] == "primary unreachable; answering with the offline assistant"
    assert (status, body["status"]) == (200, "degraded")


@pytest.mark.django_db(transaction=True)
async def test_open_breaker_makes_the_model_degraded(primary_model, settings):
    primary = get_chain().links[0]
    for _ in range(settings.LLM_BREAKER_THRESHOLD):
        primary.breaker.record_failure()

    _, body = await _settled_health("model")

    model = body["components"]["model"]
    assert model == {
        "status": "degraded",
        "latencyMs": model["latencyMs"],
        "detail": "primary breaker open",
        "ageSeconds": model["ageSeconds"],
    }


@pytest.mark.django_db(transaction=True)
async def test_unwritable_archive_storage_is_down(offline_only, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the archive directory should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "archives": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker / "archives")},
        },
    }

    status, body = await _get_health()

    storage = body["components"]["storage"]
    assert storage["status"] == "down"
    assert storage["detail"].startswith("check failed: ")
    assert str(tmp_path) not in json.dumps(body)  # no paths or messages leak out
    assert (status, body["status"]) == (200, "degraded")


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A "Redis" that accepts connections (the kernel's backlog does) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


@pytest.mark.django_db(transaction=True)
async def test_hung_cache_times_out_instead_of_hanging_health(offline_only, settings, hung_redis):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": hung_redis,
            # Longer than the health check's own timeout: only that timeout can end the wait.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 6, "SOCKET_TIMEOUT": 6},
        }
    }
    started = time.monotonic()

    status, body = await _get_health()

    elapsed = time.monotonic() - started
    assert elapsed < health.CHECK_TIMEOUT + 1.5
    assert body["components"]["cache"] == {
        "status": "down",
        "latencyMs": body["components"]["cache"]["latencyMs"],
        "detail": f"no answer within {health.CHECK_TIMEOUT:g} s",
    }
    assert body["components"]["database"]["status"] == "up"
    assert (status, body["status"]) == (200, "degraded")


_PROBE_SCRIPT = """
import json
import django

django.setup()
from django.test import Client

response = Client().get("/health", HTTP_HOST="localhost")
print(json.dumps({"status": response.status_code, "text": response.content.decode()}))
"""


def test_broken_database_makes_health_unhealthy_with_503(tmp_path):
    # A separate process whose database cannot be opened: the settings are read at start-up,
    # and nothing of ours is patched.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "supportbot.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path}/missing-directory/db.sqlite3",
        "VAR_DIR": str(tmp_path / "var"),
        "LLM_BASE_URL": "",
        "OPENAI_API_KEY": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    body = json.loads(outcome["text"])

    assert outcome["status"] == 503
    assert body["status"] == "unhealthy"
    database = body["components"]["database"]
    assert database["status"] == "down"
    assert database["detail"] == "check failed: OperationalError"
    assert body["components"]["storage"]["status"] == "up"
    assert "Traceback" not in outcome["text"]
    assert "missing-directory" not in outcome["text"]


# --- the background refreshers -----------------------------------------------------------------


def _answered_at(component: dict) -> float:
    """When (``time.monotonic()`` of this host) a background component's answer arrived."""
    return time.monotonic() - component["ageSeconds"]


@pytest.mark.django_db(transaction=True)
async def test_a_worker_ping_nobody_answers_never_delays_a_request(offline_only, settings):
    # No Celery worker runs during tests: every ping waits out its whole timeout, on the real
    # broker of the run (filesystem, or Redis with REDIS_URL). Pinged again every 0.2 s.
    settings.HEALTH_WORKER_CACHE_SECONDS = 0.2
    await AsyncClient().get("/api/status")  # warm-up: URL conf, middleware
    # Before the first request, which starts the ping: under load that request itself can take
    # a good part of the ping's timeout, so timing from its end would shorten the ping.
    began = time.monotonic()
    first_elapsed, first = await _timed_health()
    started = time.monotonic()
    elapsed: list[float] = [first_elapsed]
    answers: list[float] = []  # arrival times of the distinct answers seen
    while len(answers) < 2:
        assert time.monotonic() - started < 15, "no second answer from the refresher"
        took, body = await _timed_health()
        elapsed.append(took)
        worker = body["components"]["worker"]
        if worker["detail"] == health.CHECKING:
            assert not answers, "an answer, once given, is not taken back"
            continue
        assert worker["status"] == "degraded"
        assert worker["detail"] == "no worker answered"
        arrived = _answered_at(worker)
        if not answers or arrived > answers[-1] + 0.1:
            answers.append(arrived)
            # The ping's own time: it waited for a pong the whole timeout.
            assert worker["latencyMs"] >= health.WORKER_PING_TIMEOUT * 1000 - 50
        await asyncio.sleep(0.02)

    assert first["components"]["worker"] == {
        "status": "degraded",
        "latencyMs": 0.0,
        "detail": "checking…",  # never "up" before a worker has answered
    }
    # The first answer took a whole ping, yet no request waited for it.
    assert answers[0] - began >= health.WORKER_PING_TIMEOUT - 0.3
    assert max(elapsed) < FAST, sorted(elapsed)[-5:]
    assert len(elapsed) > 10


@pytest.mark.django_db(transaction=True)
async def test_the_model_refresher_answer_appears_once_ready_and_follows_the_endpoint(
    primary_model, settings
):
    settings.HEALTH_MODEL_CACHE_SECONDS = 0.2
    took, first = await _timed_health()
    assert first["components"]["model"]["detail"] == health.CHECKING
    assert first["components"]["model"]["status"] == "degraded"
    assert took < FAST

    _, body = await _settled_health("model")
    assert body["components"]["model"]["status"] == "up"
    assert body["components"]["model"]["detail"] == "primary: fake-model"
    assert body["components"]["model"]["ageSeconds"] < 1

    async def model_once(expected: str) -> dict:
        deadline = time.monotonic() + 5
        while True:
            took, body = await _timed_health()
            assert took < FAST
            if body["components"]["model"]["status"] == expected:
                return body["components"]["model"]
            assert time.monotonic() < deadline, body["components"]["model"]
            await asyncio.sleep(0.05)

    primary_model.models_status = 500  # the endpoint breaks: the next probe sees it
    down = await model_once("down")
    assert down["detail"] == "primary unreachable; answering with the offline assistant"
    primary_model.models_status = 200
    up = await model_once("up")
    assert up["detail"] == "primary: fake-model"
    probes = [r for r in primary_model.requests if r.path.startswith("/v1/models")]
    assert len(probes) >= 3
    assert primary_model.chat_requests == []


# --- the rate-limit store ------------------------------------------------------------------------


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.django_db(transaction=True)
async def test_rate_limits_in_memory_are_up_for_this_process_only(offline_only, settings):
    settings.RATE_LIMIT_STORAGE_URL = ""
    settings.REDIS_URL = ""

    _, body = await _get_health()

    limits = body["components"]["rateLimits"]
    assert (limits["status"], limits["detail"]) == ("up", "in-memory (this process only)")


@pytest.mark.django_db(transaction=True)
async def test_rate_limits_on_redis_are_up_while_redis_answers(offline_only, settings, redis_url):
    settings.RATE_LIMIT_STORAGE_URL = redis_url

    _, body = await _get_health()

    limits = body["components"]["rateLimits"]
    assert limits["status"] == "up"
    assert "detail" not in limits


@pytest.mark.parametrize(
    ("fail_closed", "detail"),
    [
        (False, "redis unreachable: requests are admitted unlimited (fails open)"),
        (True, "redis unreachable: API requests are refused (fails closed)"),
    ],
)
@pytest.mark.django_db(transaction=True)
async def test_unreachable_rate_limit_redis_degrades_and_says_how_the_limiter_fails(
    offline_only, settings, closed_redis_url, fail_closed, detail
):
    settings.RATE_LIMIT_STORAGE_URL = closed_redis_url
    settings.RATE_LIMIT_FAIL_CLOSED = fail_closed

    took, body = await _timed_health()

    limits = body["components"]["rateLimits"]
    assert (limits["status"], limits["detail"]) == ("degraded", detail)
    assert body["status"] == "degraded"
    assert closed_redis_url not in json.dumps(body)
    assert took < FAST  # a refused connection is an answer at once


@pytest.mark.django_db(transaction=True)
async def test_rate_limits_switched_off_are_disabled(offline_only, settings, closed_redis_url):
    settings.RATE_LIMITS_ENABLED = False
    settings.RATE_LIMIT_STORAGE_URL = closed_redis_url  # not even asked

    _, body = await _get_health()

    assert body["components"]["rateLimits"] == {
        "status": "disabled",
        "latencyMs": body["components"]["rateLimits"]["latencyMs"],
        "detail": "RATE_LIMITS_ENABLED is off",
    }


# --- refreshers in processes of their own: a hung broker, a failing broker, a fork -------------

_REFRESHER_SCRIPT = """
import json
import os
import sys
import threading
import time

import django

django.setup()
from django.conf import settings
from django.test import Client

settings.HEALTH_WORKER_CACHE_SECONDS = 0.2


def probe():
    started = time.monotonic()
    response = Client().get("/health", HTTP_HOST="localhost")
    components = response.json()["components"]
    return {
        "elapsed": time.monotonic() - started,
        "at": time.monotonic(),
        "worker": components["worker"],
        "database": components["database"]["status"],
    }


def watch(seconds, until=lambda seen: False):
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until(seen):
        seen.append(probe())
        time.sleep(0.05)
    return seen


def answered_after(moment):
    def check(seen):
        worker = seen[-1]["worker"] if seen else {}
        return "ageSeconds" in worker and seen[-1]["at"] - worker["ageSeconds"] > moment
    return check


Client().get("/api/status", HTTP_HOST="localhost")  # warm-up: URL conf, middleware
mode = sys.argv[1]
if mode == "watch":
    print(json.dumps({"seen": watch(float(sys.argv[2]))}))
elif mode == "fork":
    watch(10, answered_after(0))  # the parent's refresher has answered
    forked_at = time.monotonic()
    pid = os.fork()
    if pid == 0:
        seen = watch(10, answered_after(forked_at))
        threads = [thread.name for thread in threading.enumerate()]
        print(json.dumps({"seen": seen, "forked_at": forked_at, "threads": threads}), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def _run_refresher_script(tmp_path: Path, *args: str, **environ: str) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "supportbot.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "VAR_DIR": str(tmp_path / "var"),
        "LLM_BASE_URL": "",
        "OPENAI_API_KEY": "",
        "LOG_LEVEL": "ERROR",
        **environ,
    }
    result = subprocess.run(
        [sys.executable, "-c", _REFRESHER_SCRIPT, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def hung_broker() -> Iterator[str]:
    """A Celery broker URL on a server that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


def test_a_hung_broker_never_delays_a_request_and_is_reported_after_the_ping_timeout(
    tmp_path, hung_broker
):
    outcome = _run_refresher_script(tmp_path, "watch", "5", CELERY_BROKER_URL=hung_broker)

    seen = outcome["seen"]
    assert len(seen) > 10
    assert max(s["elapsed"] for s in seen) < FAST, sorted(s["elapsed"] for s in seen)[-5:]
    assert seen[0]["worker"]["detail"] == "checking…"
    last = seen[-1]["worker"]
    assert last["status"] == "degraded"
    silent = health.WORKER_PING_TIMEOUT + HUNG_GRACE_SECONDS
    assert last["detail"] == f"no answer for {last['latencyMs'] / 1000:.0f} s"
    assert last["latencyMs"] > silent * 1000
    assert all(s["worker"]["status"] == "degraded" for s in seen)


def test_a_broker_that_fails_every_ping_does_not_stop_the_refresher(tmp_path):
    # A typo in the broker's scheme: every ping raises at once (kombu: no such transport).
    outcome = _run_refresher_script(tmp_path, "watch", "2", CELERY_BROKER_URL="redus://x/0")

    answers = {
        round(s["at"] - s["worker"]["ageSeconds"], 1)
        for s in outcome["seen"]
        if "ageSeconds" in s["worker"]
    }
    failed = [s["worker"] for s in outcome["seen"] if "ageSeconds" in s["worker"]]
    assert failed and all(
        (w["status"], w["detail"]) == ("degraded", "check failed: KeyError") for w in failed
    )
    assert len(answers) >= 3  # pinged again and again, every 0.2 s


def test_a_forked_process_gets_a_refresher_of_its_own(tmp_path):
    outcome = _run_refresher_script(tmp_path, "fork")

    seen = outcome["seen"]
    last = seen[-1]
    # An answer the child's own refresher gave after the fork; the parent's thread is gone.
    assert last["at"] - last["worker"]["ageSeconds"] > outcome["forked_at"]
    assert last["worker"]["detail"] == "no worker answered"
    assert "health-worker" in outcome["threads"]
    # The child's checks run on threads of its own: on the inherited pool, which has none, every
    # blocking check would wait out CHECK_TIMEOUT and report "no answer".
    assert all(s["database"] == "up" for s in seen)
    assert max(s["elapsed"] for s in seen) < health.CHECK_TIMEOUT
