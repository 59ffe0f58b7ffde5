"""Guard-stage benchmark: the time the guards add to one chat message.

What one REST chat message goes through before it is stored: the per-IP API limit (the
middleware), the turn's rate limits (session burst and minute, token budgets, global model
calls) and ``screen_message`` (validation, content filter, PII redaction, security events). The
baseline, measured in the same run, is what the stage did before the guards: input validation
alone. Also the reply guard over a typical streamed answer (PII redaction while streaming and the
leak check), per answer.

Messages are the labelled sets' texts (``bench/content_messages.jsonl``,
``bench/pii_sentences.jsonl``): attacks, near-misses, PII and plain questions, spread over 50
sessions and 10 client addresses, with every limit high enough that nothing is refused. Runs on
the embedded default (memory counters, a scratch SQLite file) and, when ``REDIS_URL`` is set,
with Redis counters too. Security events are logged as in production (to /dev/null here).
Medians of three runs.

    .venv/bin/python -m bench.guard_bench [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = [f"sess_bench{n:04d}aaaaaaaaaaaaaaaaaa" for n in range(50)]
CLIENTS = [f"198.51.100.{n}" for n in range(10)]
ANSWER = (
    "To reset your password, open **Settings → Security** and choose *Reset password*. "
    "We'll send a link to the address on your account; it is valid for 30 minutes. If the "
    "email doesn't arrive, check your spam folder or add no-reply@nimbus.example to your "
    "contacts. Still stuck? I can open a ticket (it usually takes about 24 hours) — our team "
    "can also call you back. See [Reset your password](https://help.nimbus.example/articles/"
    "reset-password) for screenshots. Error NB-1042 means the link has expired; request a "
    "new one from the sign-in page and use it within the half hour."
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def load_messages() -> list[str]:
    texts: list[str] = []
    for name in ("content_messages.jsonl", "pii_sentences.jsonl"):
        path = ROOT / "bench" / name
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    texts.append(json.loads(line)["text"])
    return [t for t in texts if 0 < len(t) <= 4000]


def baseline_stage(text: str, session_id: str, client: str) -> None:
    from chat.guards import GuardInput
    from chat.guards.validation import InputValidation

    InputValidation().check(GuardInput(text, session_id, client))


def guard_stage(text: str, session_id: str, client: str) -> None:
    from chat.guards import ContentBlocked, GuardInput, limit_turn, screen_message
    from supportbot import ratelimit
    from supportbot.clients import client_label

    ratelimit.hit(("ip_api_requests", client_label(client)), client_ip=client)
    limit_turn(session_id=session_id, client_ip=client, transport="rest")
    from chat.guards.review import current_allowlist

    with contextlib.suppress(ContentBlocked):
        screen_message(
            GuardInput(text, session_id, client, "rest", "req_bench"), current_allowlist()
        )


def reply_stage() -> None:
    from chat.guards.pii import EMPTY_ALLOWLIST
    from chat.guards.reply import ReplyGuard
    from chat.memory import load_prompt

    guard = ReplyGuard(allowlist=EMPTY_ALLOWLIST, system_prompt=load_prompt("system"))
    words = ANSWER.split(" ")
    for i, word in enumerate(words):
        guard.feed(word if i == 0 else " " + word)
    guard.end_round()


def time_stage(stage: Callable[[str, str, str], None], messages: list[str]) -> list[float]:
    timings: list[float] = []
    for i, text in enumerate(messages):
        session_id = SESSIONS[i % len(SESSIONS)]
        client = CLIENTS[i % len(CLIENTS)]
        start = time.perf_counter()
        stage(text, session_id, client)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def measure(label: str, stage: Callable[[str, str, str], None], messages: list[str], runs: int):
    stage(messages[0], SESSIONS[0], CLIENTS[0])  # imports, model load, allowlist read
    p50s, p95s, p99s = [], [], []
    for _ in range(runs):
        timings = time_stage(stage, messages)
        p50s.append(statistics.median(timings))
        p95s.append(percentile(timings, 95))
        p99s.append(percentile(timings, 99))
    return {
        "label": label,
        "messages": len(messages),
        "p50_ms": round(statistics.median(p50s), 3),
        "p95_ms": round(statistics.median(p95s), 3),
        "p99_ms": round(statistics.median(p99s), 3),
    }


def measure_reply(runs: int, repeat: int = 200) -> dict[str, Any]:
    reply_stage()
    p50s, p95s = [], []
    for _ in range(runs):
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            reply_stage()
            timings.append((time.perf_counter() - start) * 1000)
        p50s.append(statistics.median(timings))
        p95s.append(percentile(timings, 95))
    return {
        "label": f"reply guard, {len(ANSWER)}-char answer in {len(ANSWER.split())} deltas",
        "p50_ms": round(statistics.median(p50s), 3),
        "p95_ms": round(statistics.median(p95s), 3),
    }


def high_limits() -> None:
    from django.conf import settings

    from supportbot import ratelimit

    settings.RATE_LIMITS_ENABLED = True
    for spec in ratelimit.configured_limits().values():
        setattr(settings, spec.setting, 10_000_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="guard-bench-")
    os.environ["VAR_DIR"] = scratch.name
    os.environ["DJANGO_SETTINGS_MODULE"] = "supportbot.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch.name}/bench.sqlite3"
    redis_url = os.environ.pop("REDIS_URL", "")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from supportbot import ratelimit

    call_command("migrate", verbosity=0)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
    high_limits()
    messages = load_messages()
    if not messages:
        print("no labelled messages found under bench/")
        return 1

    results = [measure("baseline: validation only", baseline_stage, messages, args.runs)]
    settings.REDIS_URL = ""
    ratelimit.reset_backend()
    results.append(measure("guards, embedded (memory)", guard_stage, messages, args.runs))
    if redis_url:
        settings.RATE_LIMIT_STORAGE_URL = redis_url
        ratelimit.reset_backend()
        results.append(measure("guards, Redis counters", guard_stage, messages, args.runs))
        ratelimit.reset_backend()
    else:
        print("Redis not measured: REDIS_URL is not set")
    results.append(measure_reply(args.runs))

    print(f"\n{'stage':<58} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for row in results:
        print(
            f"{row['label']:<58} {row['p50_ms']:>8} {row['p95_ms']:>8} {row.get('p99_ms', ''):>8}"
        )
    base = results[0]["p95_ms"] or 1e-9
    for row in results[1:-1]:
        print(f"{row['label']}: p95 {row['p95_ms'] / base:.0f}x the baseline's")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
