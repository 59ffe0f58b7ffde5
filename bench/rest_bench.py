"""REST chat-turn benchmark: turns/s and server overhead at 1 and 20 concurrent clients.

A real daphne process serves the app, on SQLite (a throwaway file) and, when DATABASE_URL points
at PostgreSQL, also on a throwaway database created beside it; a fake OpenAI-compatible server
with zero latency runs in its own process.
The baseline, measured in the same run, is the same chat completion sent straight to the fake
model through the ``openai`` client; a turn's server overhead is its latency minus the
baseline's median. Three runs; medians reported.

    .venv/bin/python bench/rest_bench.py [--turns 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def timed_turns(
    base: str, sessions: list[str], turns: int, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(turns):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker(slot: int) -> None:
            session_id = sessions[slot]
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                response = await client.post(
                    "/api/chat",
                    json={"sessionId": session_id, "message": f"How do I sync file {i}?"},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"turn failed: {response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, turns / elapsed


async def baseline(model_url: str, turns: int, concurrency: int) -> list[float]:
    client = openai.AsyncOpenAI(base_url=model_url, api_key="bench", max_retries=0)
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            started = time.perf_counter()
            stream = await client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": f"How do I sync file {i}?"}],
                max_tokens=256,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for _ in stream:
                pass
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(one(i) for i in range(turns)))
    await client.close()
    return latencies


async def make_sessions(base: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return [
            (await client.post("/api/session", json={})).json()["sessionId"] for _ in range(count)
        ]


@contextlib.contextmanager
def bench_database(kind: str) -> Iterator[str | None]:
    """None for SQLite; for PostgreSQL a fresh database next to DATABASE_URL's, dropped after."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    admin = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    name = "supportbot_bench"
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(url._replace(path=f"/{name}"))
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def start_stack(
    tmp: Path, database_url: str | None
) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    fake = subprocess.Popen(
        [PY, "-m", "bench.fake_model"], cwd=ROOT, stdout=subprocess.PIPE, env=dict(os.environ)
    )
    assert fake.stdout is not None
    model_port, web_port = int(fake.stdout.readline()), free_port()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp),
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMITS_ENABLED": "false",
        "LLM_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
        "LLM_MODEL": "fake-model",
        "LLM_API_KEY": "bench",
        "MEMORY_SUMMARY_THRESHOLD": "100000",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run([PY, "manage.py", "loadkb", "-v", "0"], cwd=ROOT, env=env, check=True)
    daphne = subprocess.Popen(
        [
            str(Path(PY).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(web_port),
            "supportbot.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(model_port)
    wait_port(web_port)
    return (
        [fake, daphne],
        f"http://127.0.0.1:{web_port}",
        f"http://127.0.0.1:{model_port}/v1",
    )


async def run(turns: int, runs: int) -> dict[str, object]:
    results: dict[str, object] = {}
    kinds = ["sqlite"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        kinds.append("postgresql")
    for kind in kinds:
        with bench_database(kind) as database_url:
            results.update(await run_one(kind, database_url, turns, runs))
    return results


async def run_one(
    database: str, database_url: str | None, turns: int, runs: int
) -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="supportbot-bench-") as tmp:
        procs, base, model_url = start_stack(Path(tmp), database_url)
        try:
            sessions = await make_sessions(base, 20)
            await timed_turns(base, sessions, 40, 20)  # warm-up (connections, caches)
            await baseline(model_url, 40, 20)
            for concurrency in (1, 20):
                rows = []
                for _ in range(runs):
                    base_lat = await baseline(model_url, turns, concurrency)
                    lat, rate = await timed_turns(base, sessions, turns, concurrency)
                    base_median = statistics.median(base_lat)
                    overhead = [x - base_median for x in lat]
                    rows.append(
                        {
                            "turns_per_s": rate,
                            "latency_p50": percentile(lat, 50),
                            "latency_p95": percentile(lat, 95),
                            "baseline_p50": base_median,
                            "overhead_p50": percentile(overhead, 50),
                            "overhead_p95": percentile(overhead, 95),
                        }
                    )
                results[f"{database}_c{concurrency}"] = {
                    key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0]
                }
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.turns, args.runs))
    print("REST chat turn (zero-latency fake model), medians of", args.runs, "runs")
    print(
        f"{'setup':<16}{'turns/s':>9}{'lat p50':>9}{'lat p95':>9}{'base p50':>10}"
        f"{'ovh p50':>9}{'ovh p95':>9}  (ms)"
    )
    for name, row in results.items():
        assert isinstance(row, dict)
        print(
            f"{name:<16}{row['turns_per_s']:>9}{row['latency_p50']:>9}{row['latency_p95']:>9}"
            f"{row['baseline_p50']:>10}{row['overhead_p50']:>9}{row['overhead_p95']:>9}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
