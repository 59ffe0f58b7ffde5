"""Metrics recording benchmark (issue 15): what recording costs one answered chat turn.

Target: recording costs the turn <= 0.2 ms at p95. A turn records exactly what a real answered
turn records (chat/pipeline.py ``_model_round`` and ``_measure``, the middleware, the guards): one
``record_request``, one ``record_model_call`` with tokens and cost, one ``record_tool_call``, two
or three ``incr`` (a PII redaction, a session event, every other turn a vote), one ``record_turn``
with its first token and one ``record_usage``. Their arguments are drawn beforehand from bounded
label sets (3 transports, 2 model links, 5 tools, 8 PII kinds, 3 routes, 3,000 customers), so
only the calls are timed: ``time.perf_counter_ns`` around each turn's calls.

The background flusher runs (``METRICS_FLUSH_SECONDS``, 0.2 s by default: a run lasts a few
seconds) and writes to the shared store during the run; its writes are counted and timed (a
wrapper around the store's ``write``, which it leaves unchanged). Baseline, in the same run: the
same loop and timing with no call in between (an empty turn). Then the same recording from 4
threads at once (each thread timing its own turns: the buffer's lock and the GIL are shared),
with the empty turn from 4 threads as its baseline. At the end, after ``metrics.flush()``, the
store's totals (``metrics.read_totals()``) must count every recorded turn, model call, tool call
and request, and the ``UsageDay`` rows every turn: nothing lost.

Note that a run records back to back (~40,000 turns in a few seconds, a day's traffic of a busy
site), so each flush carries far more fields and usage rows than it would in production.

Set-ups, each in a process of its own (settings are read once):

- embedded: the default, SQLite (a scratch file), the database store;
- redis+postgresql: ``REDIS_URL`` (the Redis store, under a prefix of this run, removed after)
  and a throwaway PostgreSQL database beside ``DATABASE_URL``'s, when both are set (either one
  alone gives redis+sqlite or postgresql);
- postgresql: the database store on that PostgreSQL database, without Redis (for information).

    .venv/bin/python -m bench.metrics_bench [--turns 20000] [--runs 3] [--flush-seconds 0.2]
                                            [--only embedded,redis,postgresql]

Prints each run, the median and range of the runs, then the results as one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.rest_bench import percentile

# Both read settings only when called: Django is set up before that (``django_child``).
from supportbot import metrics, metrics_store

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET_P95_MS = 0.2
THREADS = 4
WARM_UP_TURNS = 1_000
RESULT_MARK = "RESULT "
SETUPS = ("embedded", "redis", "postgresql")  # --only; redis runs on PostgreSQL when it is set

# Bounded label sets, as production records them.
TRANSPORTS = ("rest", "websocket", "sse")
MODEL_LINKS = (("primary", "gpt-4o-mini"), ("fallback", "gpt-4.1-mini"))
TOOLS = ("kb.search", "create_ticket", "fetch_status", "request_human", "run_workflow")
PII_KINDS = ("email", "phone", "ssn", "card", "iban", "ip", "secret", "unknown")
CHAT_ROUTES = ("api/chat", "api/session/<session_id>", "api/session")


# --- set-ups (shared with bench.dashboard_bench) ----------------------------------------------


@dataclass
class Setup:
    name: str
    title: str
    env: dict[str, str]


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else ""


@contextlib.contextmanager
def throwaway_postgres(url: str, name: str) -> Iterator[str]:
    """A new database beside ``url``'s (same server and user), dropped afterwards."""
    import psycopg

    admin = psycopg.connect(url, autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def redis_problem(url: str) -> str:
    """Why nothing usable answers at ``url`` ("" when Redis does)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        client.ping()
        client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def base_env(flush_seconds: float) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "supportbot.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "LOG_LEVEL": "WARNING",
        "METRICS_FLUSH_SECONDS": str(flush_seconds),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "VAR_DIR"):
        env.pop(name, None)
    return env


def setups(
    only: set[str], database_name: str, flush_seconds: float, resources: contextlib.ExitStack
) -> tuple[list[Setup], dict[str, str]]:
    """The set-ups asked for that can run here; the others, with the reason."""
    chosen: list[Setup] = []
    skipped: dict[str, str] = {}
    env = base_env(flush_seconds)
    if "embedded" in only:
        chosen.append(Setup("embedded", "the default: SQLite file", env))
    redis_url = os.environ.get("REDIS_URL", "")
    pg = postgres_url()
    pg_database = ""
    if pg and ({"redis", "postgresql"} & only):
        pg_database = resources.enter_context(throwaway_postgres(pg, database_name))
    if "redis" in only:
        name = "redis+postgresql" if pg else "redis+sqlite"
        problem = redis_problem(redis_url) if redis_url else "REDIS_URL is not set"
        if problem:
            skipped[name] = problem
        else:
            redis_env = {**env, "REDIS_URL": redis_url}
            database = "SQLite file"  # the database holds only the usage rows here
            if pg_database:
                redis_env["DATABASE_URL"] = pg_database
                database = "PostgreSQL (throwaway database)"
            chosen.append(Setup(name, f"Redis, {database}", redis_env))
    if "postgresql" in only:
        if pg_database:
            title = "PostgreSQL (throwaway database), no Redis"
            chosen.append(Setup("postgresql", title, {**env, "DATABASE_URL": pg_database}))
        else:
            skipped["postgresql"] = "DATABASE_URL is not a PostgreSQL URL"
    return chosen, skipped


def run_child(module: str, setup: Setup, args: list[str]) -> dict[str, Any]:
    """Run ``module --child PREFIX`` in the set-up's environment, its metrics under a Redis
    prefix of its own, removed afterwards; its result (the RESULT line)."""
    prefix = f"bench-{module.rsplit('.', 1)[-1]}:{uuid.uuid4().hex}"
    try:
        done = subprocess.run(
            [PY, "-m", module, "--child", prefix, *args],
            cwd=ROOT,
            env=setup.env,
            stdout=subprocess.PIPE,
            text=True,
        )
    finally:
        # Also what the child's exit flush wrote after it cleared the store (its breakers).
        if setup.env.get("REDIS_URL"):
            drop_prefix(setup.env["REDIS_URL"], prefix)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    raise RuntimeError(f"{setup.name}: no result (exit {done.returncode})")


def drop_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def django_child(prefix: str) -> None:
    """Django set up in this child: a scratch VAR_DIR, migrated, metrics under ``prefix``."""
    from bench.django_setup import setup

    setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    settings.METRICS_PREFIX = prefix  # read by supportbot.metrics at each store look-up


def stats_ms(values_ns: list[int]) -> dict[str, float]:
    values = [v / 1e6 for v in values_ns]
    return {
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 3),
    }


def combine(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range (min, max) over the runs of every number of the rows (one level deep)."""
    out: dict[str, Any] = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = combine([r[key] for r in rows])
        elif isinstance(value, int | float):
            values = [r[key] for r in rows]
            out[key] = {"median": statistics.median(values), "range": [min(values), max(values)]}
    return out


# --- one turn's recording --------------------------------------------------------------------


Turn = tuple[Any, ...]


def draw_turns(count: int, seed: int) -> list[Turn]:
    """Each turn's arguments, drawn before timing starts."""
    rng = random.Random(seed)
    turns = []
    for i in range(count):
        transport = rng.choice(TRANSPORTS)
        provider, model = MODEL_LINKS[0] if rng.random() < 0.95 else MODEL_LINKS[1]
        prompt, completion = rng.randint(400, 3000), rng.randint(40, 600)
        total = rng.lognormvariate(7.3, 0.5)  # ~1.5 s a turn
        turns.append(
            (
                transport,
                total,
                total * rng.uniform(0.15, 0.4),  # first token
                rng.random() < 0.8,  # sourced
                provider,
                model,
                total * 0.7,
                prompt,
                completion,
                provider == "fallback",
                rng.choice(TOOLS),
                rng.lognormvariate(3.5, 0.8),  # tool ms
                rng.choice(PII_KINDS),
                ("created", "ended")[i % 2],
                ("up", "down")[rng.random() < 0.2] if i % 2 else "",
                f"user_{rng.randrange(3000)}" if rng.random() < 0.6 else "",
                (prompt * 0.15 + completion * 0.6) / 1e6,
                rng.choice(CHAT_ROUTES),
                total + rng.uniform(1, 20),
            )
        )
    return turns


def record(turn: Turn) -> None:
    """The metrics calls of one answered turn, in the order the code makes them."""
    (
        transport,
        total,
        first,
        sourced,
        provider,
        model,
        model_ms,
        prompt,
        completion,
        fallback,
        tool,
        tool_ms,
        pii,
        session_event,
        vote,
        user,
        cost,
        route,
        request_ms,
    ) = turn
    metrics.incr("guard", outcome="redacted", detail=pii)
    metrics.record_tool_call(tool=tool, ok=True, latency_ms=tool_ms)
    metrics.record_model_call(
        provider=provider,
        model=model,
        ok=True,
        latency_ms=model_ms,
        prompt_tokens=prompt,
        completion_tokens=completion,
        fallback=fallback,
    )
    metrics.record_turn(
        transport=transport,
        ok=True,
        total_ms=total,
        first_token_ms=first,
        sourced=sourced,
        fallback=fallback,
    )
    metrics.record_usage(
        user_id=user, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost
    )
    metrics.incr("sessions", event=session_event)
    if vote:
        metrics.incr("answer_votes", vote=vote, sourced="yes" if sourced else "no")
    metrics.record_request(route=route, method="POST", status=200, latency_ms=request_ms)


def time_turns(turns: list[Turn], work: Callable[[Turn], None] | None) -> list[int]:
    """ns per turn; ``work`` None times the empty turn (the harness alone)."""
    clock = time.perf_counter_ns
    out: list[int] = []
    append = out.append
    if work is None:
        for _turn in turns:
            started = clock()
            append(clock() - started)
    else:
        for turn in turns:
            started = clock()
            work(turn)
            append(clock() - started)
    return out


def time_threads(turns: list[Turn], work: Callable[[Turn], None] | None) -> list[int]:
    """``time_turns`` on THREADS threads at once, each its share of ``turns``."""
    barrier = threading.Barrier(THREADS)
    results: list[list[int]] = [[] for _ in range(THREADS)]

    def one(index: int) -> None:
        barrier.wait()
        results[index] = time_turns(turns[index::THREADS], work)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [value for result in results for value in result]


class FlushMeter:
    """Counts and times the flusher's writes to the store (the write itself unchanged)."""

    def __init__(self) -> None:
        store = metrics_store.store()
        self.durations: list[float] = []
        write = store.write

        def timed(batch: metrics.Batch) -> None:
            started = time.perf_counter()
            try:
                write(batch)
            finally:
                self.durations.append((time.perf_counter() - started) * 1000)

        store.write = timed  # type: ignore[method-assign]  # instrumentation, see docstring

    def since(self, mark: int) -> dict[str, float]:
        taken = self.durations[mark:]
        return {
            "flushes": len(taken),
            "flush_ms_p50": round(statistics.median(taken), 2) if taken else 0.0,
            "flush_ms_max": round(max(taken), 2) if taken else 0.0,
        }


def one_run(turns: list[Turn], meter: FlushMeter) -> dict[str, Any]:
    mark = len(meter.durations)
    started = time.perf_counter()
    empty = time_turns(turns, None)
    recorded = time_turns(turns, record)
    empty4 = time_threads(turns, None)
    recorded4 = time_threads(turns, record)
    row: dict[str, Any] = {
        "empty": stats_ms(empty),
        "turn": stats_ms(recorded),
        "empty_4_threads": stats_ms(empty4),
        "turn_4_threads": stats_ms(recorded4),
    }
    row["recording_p95"] = round(row["turn"]["p95"] - row["empty"]["p95"], 4)
    row["recording_p95_4_threads"] = round(
        row["turn_4_threads"]["p95"] - row["empty_4_threads"]["p95"], 4
    )
    row["seconds"] = round(time.perf_counter() - started, 2)
    row.update(meter.since(mark))
    return row


def nothing_lost(turns_recorded: int, requests_recorded: int) -> dict[str, Any]:
    """The store's totals against what was recorded, after a last flush."""
    from django.db.models import Sum

    from supportbot.models import UsageDay

    metrics.flush()
    totals = metrics.read_totals()

    def total(kind: str) -> int:
        return int(sum(v for k, v in totals.items() if k.startswith(kind) and k.endswith("|n")))

    found = {
        "turns": total("turn|"),
        "model_calls": total("model|"),
        "tool_calls": total("tool|"),
        "requests": total("http|"),
        "usage_turns": int(UsageDay.objects.aggregate(n=Sum("turns"))["n"] or 0),
        "dropped": int(totals.get("count|metrics_dropped|", 0)),
    }
    expected = {
        "turns": turns_recorded,
        "model_calls": turns_recorded,
        "tool_calls": turns_recorded,
        "requests": requests_recorded,
        "usage_turns": turns_recorded,
        "dropped": 0,
    }
    return {
        "expected": expected,
        "found": found,
        "lost": {k: expected[k] - found[k] for k in expected if found[k] != expected[k]},
    }


def child(args: argparse.Namespace) -> dict[str, Any]:
    django_child(args.child)
    from django.conf import settings

    metrics.reset()
    backend = metrics.backend_name()
    meter = FlushMeter()
    turns = draw_turns(args.turns, seed=15)
    recorded = 0
    try:
        time_turns(turns[:WARM_UP_TURNS], record)  # imports, first flusher start, caches
        recorded += WARM_UP_TURNS
        rows = []
        for _ in range(args.runs):
            rows.append(one_run(turns, meter))
            recorded += 2 * len(turns)  # one thread, then 4
        check = nothing_lost(recorded, recorded)
    finally:
        metrics.reset()  # the Redis prefix's keys, the database's rows
    return {
        "backend": backend,
        "flush_seconds": float(settings.METRICS_FLUSH_SECONDS),
        "turns_per_run": len(turns),
        "runs": rows,
        "combined": combine(rows),
        "check": check,
    }


# --- report ------------------------------------------------------------------------------------


def cells(stats: dict[str, float]) -> str:
    return "/".join(f"{stats[q]:g}" for q in ("p50", "p95", "p99", "max"))


def spread(found: dict[str, Any]) -> str:
    low, high = found["range"]
    return f"{found['median']:g} ({low:g}..{high:g})"


def report(name: str, title: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: {title}; {result['backend']} store, flush every {result['flush_seconds']} s")
    print(
        f"   {result['turns_per_run']:,} turns per run, ms per turn: p50 / p95 / p99 / max; "
        f"4 threads: {THREADS} x {result['turns_per_run'] // THREADS:,} turns"
    )
    for number, row in enumerate(result["runs"], 1):
        print(
            f"   run {number}: turn {cells(row['turn'])}  empty {cells(row['empty'])}  "
            f"| 4 threads: turn {cells(row['turn_4_threads'])}  "
            f"empty {cells(row['empty_4_threads'])}  | {row['flushes']} flushes "
            f"(p50 {row['flush_ms_p50']} ms, max {row['flush_ms_max']} ms) in {row['seconds']} s"
        )
    combined = result["combined"]
    print(
        f"   median (range) of {len(result['runs'])} runs: turn p95 "
        f"{spread(combined['turn']['p95'])}, p99 {spread(combined['turn']['p99'])}; "
        f"empty p95 {spread(combined['empty']['p95'])}; "
        f"recording p95 (turn - empty) {spread(combined['recording_p95'])}"
    )
    print(
        f"   4 threads: turn p95 {spread(combined['turn_4_threads']['p95'])}, "
        f"p99 {spread(combined['turn_4_threads']['p99'])}; "
        f"empty p95 {spread(combined['empty_4_threads']['p95'])}"
    )
    p95 = combined["turn"]["p95"]["median"]
    p95_4 = combined["turn_4_threads"]["p95"]["median"]
    for label, value in (("one thread", p95), ("4 threads", p95_4)):
        verdict = "PASS" if value <= TARGET_P95_MS else "MISS"
        print(f"   {label}: turn p95 {value:g} ms, target <= {TARGET_P95_MS} ms {verdict}")
    check = result["check"]
    if check["lost"]:
        print(f"   nothing lost: NO; expected {check['expected']}, found {check['found']}")
    else:
        print(f"   nothing lost: yes ({check['found']})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flush-seconds", type=float, default=0.2)
    parser.add_argument("--only", default="", help=f"comma list of {','.join(SETUPS)}")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(RESULT_MARK + json.dumps(child(args)), flush=True)
        return
    only = set(args.only.split(",")) if args.only else set(SETUPS)
    passed = [f"--turns={args.turns}", f"--runs={args.runs}"]
    run_setups(
        "bench.metrics_bench",
        only=only,
        database="supportbot_metrics_bench",
        flush_seconds=args.flush_seconds,
        passed=passed,
        report=report,
    )


def run_setups(
    module: str,
    *,
    only: set[str],
    database: str,
    flush_seconds: float,
    passed: list[str],
    report: Callable[[str, str, dict[str, Any]], None],
) -> None:
    """Run ``module`` in a child per chosen set-up, report each, and print the results as JSON."""
    results: dict[str, Any] = {}
    started = time.perf_counter()
    with contextlib.ExitStack() as resources:
        chosen, skipped = setups(only, database, flush_seconds, resources)
        for setup in chosen:
            print(f"{setup.name}: {setup.title}", flush=True)
            try:
                results[setup.name] = run_child(module, setup, passed)
                report(setup.name, setup.title, results[setup.name])
            except Exception as exc:  # one set-up failing still reports the others
                results[setup.name] = {"error": repr(exc)[:300]}
                print(f"   not measured: {exc!r}", flush=True)
    for name, reason in skipped.items():
        print(f"\n{name}: skipped: {reason}")
        results[name] = {"skipped": reason}
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
