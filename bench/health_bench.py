"""GET /health latency while its slow probes refresh in the background.

A real server (``python -m supportbot.server``, as ``make run`` starts it) on the embedded
default (SQLite, memory cache and rate limits, filesystem broker, offline assistant) and no Celery
worker: every worker ping waits out its whole timeout, the worst case for a probe made inside a
request. Sequential requests, paced so that the run spans several worker refresh periods
(``ops.health.WORKER_CACHE_SECONDS``); latency is measured by the client, connection kept alive.
Target: p95 under 50 ms, and no request as slow as a ping. ``--with-worker`` runs a Celery
worker beside it, as ``make run`` does (the pings are then answered, after about a second each).

    .venv/bin/python bench/health_bench.py [--requests 300] [--interval 0.1] [--with-worker]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.rest_bench import free_port, percentile, wait_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET_P95_MS = 50.0
# How supportbot is served (Makefile ``run``).
SERVE = [PY, "-m", "supportbot.server"]
WORKER_PING_TIMEOUT_MS = 1500.0  # ops.health.WORKER_PING_TIMEOUT (not imported: no Django here)


def start_worker(tmp: Path) -> subprocess.Popen[bytes]:
    """A Celery worker on the server's filesystem broker, as ``make run`` starts it."""
    worker_cmd = [PY, "-m", "celery", "-A", "supportbot", "worker", "--loglevel=WARNING"]
    return subprocess.Popen(
        [*worker_cmd, "--pool=threads", "--concurrency=4"],
        cwd=ROOT,
        env=bench_env(tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def bench_env(tmp: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "VAR_DIR": str(tmp),
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "LOG_LEVEL": "WARNING",
        "LLM_BASE_URL": "",
        "OPENAI_API_KEY": "",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "RATE_LIMIT_STORAGE_URL"):
        env.pop(name, None)
    return env


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = bench_env(tmp)
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    port = free_port()
    server = subprocess.Popen(
        [*SERVE, "-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return server, f"http://127.0.0.1:{port}"


def measure(base: str, requests: int, interval: float) -> dict[str, Any]:
    latencies: list[float] = []
    worker_details: dict[str, int] = {}
    answers: set[float] = set()  # arrival times (rounded) of the worker answers seen
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        for _ in range(requests):
            sent = time.perf_counter()
            response = client.get("/health")
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"/health: {response.status_code} {response.text[:200]}")
            worker = response.json()["components"]["worker"]
            detail = str(worker.get("detail", worker["status"]))
            worker_details[detail] = worker_details.get(detail, 0) + 1
            if "ageSeconds" in worker:
                answers.add(round(time.monotonic() - worker["ageSeconds"], 0))
            time.sleep(interval)
    p95 = percentile(latencies, 95)
    return {
        "requests": requests,
        "seconds": round(time.monotonic() - started, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "first_ms": round(latencies[0], 2),  # includes the server's lazy start-up work
        "as_slow_as_a_ping": sum(1 for x in latencies if x >= WORKER_PING_TIMEOUT_MS),
        "worker_answers_seen": len(answers),
        "worker_details": worker_details,
        "target_p95_met": p95 < TARGET_P95_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.1, help="pause between requests (s)")
    parser.add_argument("--with-worker", action="store_true", help="a Celery worker runs too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        server, base = start_server(Path(tmp))
        worker = start_worker(Path(tmp)) if args.with_worker else None
        try:
            result = measure(base, args.requests, args.interval)
        finally:
            for process in (worker, server):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=20)
    print(
        f"GET /health x{result['requests']} sequential over {result['seconds']} s "
        f"(embedded default, {'a Celery worker running' if worker else 'no Celery worker'})"
    )
    print(
        f"p50 {result['p50_ms']} ms  p95 {result['p95_ms']} ms  p99 {result['p99_ms']} ms  "
        f"max {result['max_ms']} ms (first request {result['first_ms']} ms)"
    )
    print(
        f"requests as slow as a worker ping: {result['as_slow_as_a_ping']}; "
        f"worker answers seen: {result['worker_answers_seen']} {result['worker_details']}"
    )
    verdict = "met" if result["target_p95_met"] else "MISSED"
    print(f"target p95 < {TARGET_P95_MS:g} ms: {verdict}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
