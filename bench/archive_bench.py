"""Archive benchmark (issue 16): archive and restore throughput on the filesystem and on S3, and
the archive browser's search over 100,000 archive records.

(a) archive: ``chat.archives.write_archive`` of N ended sessions of 20 messages (user questions
    of ~90 characters, answers of ~450 with a tool call every other one), each written, read back
    and checked against its sha256, then recorded; sessions/s. Baseline, in the same run: the raw
    ``storage.save`` of the same payloads (gzipped documents built beforehand), sessions/s.
(b) restore: the sessions' rows deleted as expiry does, then ``restore_archive`` of each archive
    (read, checked, decoded, session and 20 messages inserted); sessions/s. Baseline, in the same
    run: the raw read of the same objects (``storage.open(key).read()``).
    Both on the filesystem (``FileSystemStorage`` in a scratch folder) and on S3: moto's server in
    a thread of the benchmark's process (``tests/fakes/s3_server.py``) on 127.0.0.1, through the
    ``S3Storage`` that ``supportbot/settings.py`` builds (``supportbot.env.env_archive_storage``:
    path-style, its timeouts and retries). Moto shares this process's GIL and has no network
    latency: a real S3 or R2 adds a round trip to each of the ~5 requests of an archive (HEAD
    and PUT to write, HEAD, HEAD and GET to read back).
(c) search: 100,000 ``SessionArchive`` rows over a year, ~10 per ``userId`` (10,000 customers),
    a ticket on ~35% of them and two on ~5% (``ArchiveTicket``), bulk-created. Timed, ``--reps``
    times per run after 3 unmeasured calls, each with another target drawn beforehand:
    ``search_archives(q)`` for a userId, a ticket id (every other one in lower case) and a
    session id, and ``search_archives(since=..., until=...)`` for a 7-day range, each evaluated
    as a page of 100 ("page") and as that page plus the COUNT(*) a paginated list needs
    ("page+count"); and, when the admin's ``admin:chat_sessionarchive_changelist`` resolves, the
    archive browser itself: GET with ``?q=`` (userId, ticket id, session id) and
    ``?since=&until=`` through Django's test Client signed in as a superuser ("http").
    Target: <= 100 ms at p95 on PostgreSQL.

Set-ups, each in a process of its own (``bench.metrics_bench``'s): embedded (SQLite, a scratch
file) and postgresql (a throwaway database beside ``DATABASE_URL``'s) when it is PostgreSQL.
Three runs of everything; each set-up prints every run, the median and range of the runs, and
the machine's load average (1/5/15 min, and the CPU count) at its start and end.

    .venv/bin/python -m bench.archive_bench [--runs 3] [--sessions 200] [--rows 100000]
                                            [--reps 30] [--only embedded,postgresql]

Prints each set-up's figures, then the results as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.dashboard_bench import profile
from bench.metrics_bench import RESULT_MARK, combine, django_child, run_setups
from bench.rest_bench import percentile

TARGET_P95_MS = 100.0
MESSAGES = 20
WARM_UP = 3
PAGE = 100
KINDS = ("user", "ticket", "session", "days")
BACKENDS = ("filesystem", "s3")


def machine_load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"load": [round(one, 2), round(five, 2), round(fifteen, 2)], "cpus": os.cpu_count()}


# --- (a) and (b): archive and restore throughput ------------------------------------------------


def storage_settings(backend: str, folder: str, bucket: str, endpoint: str) -> dict[str, Any]:
    """The ``archives`` entry of STORAGES as supportbot/settings.py builds it for the backend."""
    from django.conf import settings

    from supportbot.env import env_archive_storage

    if backend == "filesystem":
        entry = env_archive_storage("", Path(folder))
    else:
        os.environ.update(
            AWS_S3_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench-access-key",
            AWS_SECRET_ACCESS_KEY="bench-secret-key",
            AWS_S3_REGION_NAME="us-east-1",
            AWS_S3_ADDRESSING_STYLE="path",
        )
        entry = env_archive_storage(bucket, Path(folder))
    return {**settings.STORAGES, "archives": entry}


def make_sessions(count: int, rng: random.Random) -> list[str]:
    """``count`` ended sessions of MESSAGES messages, bulk-created (not timed)."""
    from django.utils import timezone

    from chat.models import ChatSession, Message

    now = timezone.now()
    sessions = [
        ChatSession(
            user_id=f"cust-{rng.randrange(10_000):06d}",
            metadata={"page": "/billing", "locale": "en-GB"},
            status=ChatSession.Status.ENDED,
            created_at=now - timedelta(minutes=40),
            last_activity=now - timedelta(minutes=5),
            ended_at=now - timedelta(minutes=5),
            summary="The customer asked about invoices, refunds and their plan. " * 3,
            message_count=MESSAGES,
            last_seq=MESSAGES,
        )
        for _ in range(count)
    ]
    ChatSession.objects.bulk_create(sessions, batch_size=500)
    words = ["invoice", "refund", "plan", "export", "account", "billing", "password", "seat"]
    messages = []
    for session in sessions:
        for seq in range(1, MESSAGES + 1):
            answer = seq % 2 == 0
            text = " ".join(rng.choice(words) for _ in range(60 if answer else 12))
            messages.append(
                Message(
                    session_id=session.id,
                    seq=seq,
                    role=Message.Role.ASSISTANT if answer else Message.Role.USER,
                    content=text,
                    tool_calls=(
                        [{"id": f"call_{seq}", "name": "kb.search", "arguments": {"query": text}}]
                        if answer and seq % 4 == 0
                        else []
                    ),
                    model="gpt-4o-mini" if answer else "",
                    prompt_tokens=900 if answer else 0,
                    completion_tokens=120 if answer else 0,
                    total_tokens=1020 if answer else 0,
                    metadata={"sources": ["kb-billing-3"]} if answer else {},
                    created_at=now - timedelta(minutes=40 - seq),
                )
            )
    Message.objects.bulk_create(messages, batch_size=2000)
    return [session.id for session in sessions]


def rate(count: int, work: Callable[[], None]) -> float:
    """Sessions per second of ``work`` (which handles ``count`` sessions)."""
    started = time.perf_counter()
    work()
    return round(count / (time.perf_counter() - started), 1)


def throughput_run(count: int, run: int, rng: random.Random) -> dict[str, Any]:
    """One run of (a) and (b) on the storage configured now."""
    from django.core.files.base import ContentFile

    from chat.archives import (
        archive_storage,
        encode,
        release_restored,
        restore_archive,
        session_document,
        write_archive,
    )
    from chat.models import ChatSession, SessionArchive

    storage = archive_storage()
    ids = make_sessions(count, rng)
    payloads = [encode(session_document(s)) for s in ChatSession.objects.filter(pk__in=ids)]

    def save_raw() -> None:
        for n, payload in enumerate(payloads):
            storage.save(f"baseline/{run}/{n}.json.gz", ContentFile(payload))

    def archive_all() -> None:
        for session_id in ids:
            write_archive(session_id=session_id, reason="expired")

    row: dict[str, Any] = {"save_raw": rate(count, save_raw), "archive": rate(count, archive_all)}
    ChatSession.objects.filter(pk__in=ids).delete()  # as expiry does, once archived
    archives = list(SessionArchive.objects.filter(session_id__in=ids))

    def read_raw() -> None:
        for archive in archives:
            with storage.open(archive.key, "rb") as handle:
                handle.read()

    def restore_all() -> None:
        for archive in archives:
            restore_archive(archive, by="bench")

    row["read_raw"] = rate(count, read_raw)
    row["restore"] = rate(count, restore_all)
    row["payload_bytes_mean"] = round(statistics.mean(len(p) for p in payloads))
    for session_id in ids:
        release_restored(session_id)
    return row


@contextmanager
def moto_bucket() -> Iterator[tuple[str, str]]:
    """moto's S3 server in a thread of this process, with a fresh bucket: (endpoint, bucket)."""
    from tests.fakes.s3_server import MotoS3Server

    server = MotoS3Server().start()
    try:
        yield server.endpoint_url, server.create_bucket()
    finally:
        server.stop()


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    from django.test import override_settings

    rng = random.Random(16)
    folder = tempfile.mkdtemp(prefix="archive-bench-")
    out: dict[str, Any] = {}
    try:
        with moto_bucket() as (endpoint, bucket):
            for backend in BACKENDS:
                storages = storage_settings(backend, folder, bucket, endpoint)
                rows = []
                with override_settings(STORAGES=storages):  # resets the storage handler
                    throughput_run(10, -1, rng)  # warm up: imports, connections, first files
                    for run in range(args.runs):
                        rows.append(throughput_run(args.sessions, run, rng))
                out[backend] = {"runs": rows, "combined": combine(rows)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


# --- (c): the archive browser's search ----------------------------------------------------------


def seed_archives(rows: int, rng: random.Random) -> dict[str, Any]:
    """``rows`` archive records with their tickets; the targets searched for, and the timing."""
    from django.db import connection
    from django.utils import timezone

    from chat.models import ArchiveTicket, SessionArchive
    from supportbot.ids import new_session_id
    from tools.models import new_ticket_id

    started = time.perf_counter()
    now = timezone.now()
    users = [f"cust-{n:06d}" for n in range(max(1, rows // 10))]
    records = []
    for _ in range(rows):
        session_id = new_session_id()
        ended = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
        records.append(
            SessionArchive(
                session_id=session_id,
                user_id=rng.choice(users),
                key=f"{ended:%Y/%m/%d}/{session_id}-expired.json.gz",
                backend="s3",
                size=rng.randint(800, 40_000),
                sha256=secrets.token_hex(32),
                message_count=rng.randint(2, 60),
                reason=rng.choice(("ended", "expired")),
                started_at=ended - timedelta(minutes=rng.uniform(1, 90)),
                ended_at=ended,
                created_at=ended + timedelta(hours=24),
                integrity="ok",
                checked_at=ended + timedelta(hours=24),
            )
        )
    SessionArchive.objects.bulk_create(records, batch_size=2000)
    pks = list(SessionArchive.objects.values_list("pk", flat=True))
    tickets = []
    for pk in pks:
        roll = rng.random()
        for _ in range(2 if roll < 0.05 else 1 if roll < 0.35 else 0):
            tickets.append(ArchiveTicket(archive_id=pk, ticket_id=new_ticket_id()))
    ArchiveTicket.objects.bulk_create(tickets, batch_size=5000)
    if connection.vendor == "postgresql":  # the statistics autovacuum would have gathered by now
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_sessionarchive, chat_archiveticket")
    return {
        "rows": rows,
        "tickets": len(tickets),
        "users": len(users),
        "seconds": round(time.perf_counter() - started, 1),
    }


def targets(count: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """What each measured call searches for, drawn before timing (another one every call)."""
    from django.utils import timezone

    from chat.models import ArchiveTicket, SessionArchive

    archives = list(SessionArchive.objects.order_by("?").values("session_id", "user_id")[:count])
    tickets = list(ArchiveTicket.objects.order_by("?").values_list("ticket_id", flat=True)[:count])
    today = timezone.localdate()
    days = []
    for _ in range(count):
        since = today - timedelta(days=rng.randrange(7, 365))
        days.append({"since": since, "until": since + timedelta(days=6)})
    return {
        "user": [{"query": a["user_id"]} for a in archives],
        "ticket": [{"query": t if n % 2 else t.lower()} for n, t in enumerate(tickets)],
        "session": [{"query": a["session_id"]} for a in archives],
        "days": days,
    }


def timed(
    call: Callable[[dict[str, Any]], object], drawn: list[dict[str, Any]]
) -> dict[str, float]:
    """p50 and p95 (ms) of ``call`` over the drawn targets, after WARM_UP unmeasured calls."""
    for target in drawn[:WARM_UP]:
        call(target)
    times = []
    for target in drawn[WARM_UP:]:
        started = time.perf_counter()
        call(target)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": round(percentile(times, 50), 2), "p95": round(percentile(times, 95), 2)}


def page(target: dict[str, Any]) -> int:
    from chat.archives import search_archives

    return len(list(search_archives(target.get("query", ""), **_days(target))[:PAGE]))


def page_and_count(target: dict[str, Any]) -> int:
    from chat.archives import search_archives

    found = search_archives(target.get("query", ""), **_days(target))
    return len(list(found[:PAGE])) + found.count()


def _days(target: dict[str, Any]) -> dict[str, date]:
    return {k: target[k] for k in ("since", "until") if k in target}


def browser_client() -> tuple[Any, str] | None:
    """A test Client signed in as a superuser, and the browser's URL; None while the archive
    browser does not exist yet."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("admin:chat_sessionarchive_changelist")
    except NoReverseMatch:
        return None
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client, url


def http_get(client: Any, url: str) -> Callable[[dict[str, Any]], object]:
    def get(target: dict[str, Any]) -> object:
        params = {"q": target["query"]} if "query" in target else {}
        params.update({k: v.isoformat() for k, v in _days(target).items()})
        response = client.get(url, params)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} {params}: HTTP {response.status_code}")
        return response

    return get


def search(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(160)
    seeded = seed_archives(args.rows, rng)
    browser = browser_client()
    rows = []
    for _ in range(args.runs):
        drawn = targets(args.reps + WARM_UP, rng)
        row: dict[str, Any] = {}
        for kind in KINDS:
            row[kind] = {
                "page": timed(page, drawn[kind]),
                "page+count": timed(page_and_count, drawn[kind]),
            }
            if browser is not None:
                row[kind]["http"] = timed(http_get(*browser), drawn[kind])
        rows.append(row)
    combined = combine(rows)
    result: dict[str, Any] = {
        "seeded": seeded,
        "browser": browser is not None,
        "runs": rows,
        "combined": combined,
    }
    way = "http" if browser is not None else "page+count"
    p95 = {kind: combined[kind][way]["p95"]["median"] for kind in KINDS}
    worst = max(p95, key=lambda kind: p95[kind])
    if p95[worst] > TARGET_P95_MS or args.profile:
        call = http_get(*browser) if browser is not None else page_and_count
        target = targets(1, rng)[worst][0]
        result["profile"] = {"kind": worst, "way": way, "lines": profile(lambda: call(target))}
    return result


def child(args: argparse.Namespace) -> dict[str, Any]:
    django_child(args.child)
    from django.db import connection

    result: dict[str, Any] = {"database": connection.vendor, "load_start": machine_load()}
    result["throughput"] = throughput(args)
    result["search"] = search(args)
    result["load_end"] = machine_load()
    return result


# --- report ------------------------------------------------------------------------------------


def spread(found: dict[str, Any]) -> str:
    low, high = found["range"]
    return f"{found['median']:g} ({low:g}..{high:g})"


def load_text(found: dict[str, Any]) -> str:
    return f"load {'/'.join(f'{v:g}' for v in found['load'])} on {found['cpus']} CPUs"


def report(name: str, title: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: {title}; {result['database']}")
    print(f"   machine at start: {load_text(result['load_start'])}")
    print("   (a, b) sessions/s, median (range) of the runs; baselines are raw storage calls:")
    for backend, found in result["throughput"].items():
        combined = found["combined"]
        print(
            f"   {backend:<10} archive {spread(combined['archive'])}"
            f"   [baseline save {spread(combined['save_raw'])}]"
            f"   restore {spread(combined['restore'])}"
            f"   [baseline read {spread(combined['read_raw'])}]"
            f"   payload {combined['payload_bytes_mean']['median']:g} B"
        )
    searched = result["search"]
    seeded = searched["seeded"]
    print(
        f"   (c) search over {seeded['rows']:,} archives ({seeded['users']:,} customers, "
        f"{seeded['tickets']:,} tickets; seeded in {seeded['seconds']} s), ms p50 / p95, "
        "median (range) of the runs:"
    )
    combined = searched["combined"]
    ways = ("page", "page+count") + (("http",) if searched["browser"] else ())
    for kind in KINDS:
        cells = "   ".join(
            f"{way} {spread(combined[kind][way]['p50'])} / {spread(combined[kind][way]['p95'])}"
            for way in ways
        )
        print(f"   {kind:<8} {cells}")
    if "profile" in searched:
        found = searched["profile"]
        print(f"   one {found['way']} {found['kind']} call under cProfile:")
        for line in found["lines"]:
            print(f"     {line}")
    if not searched["browser"]:
        print("   http: not measured (admin:chat_sessionarchive_changelist does not resolve)")
    if result["database"] == "postgresql":
        way = "http" if searched["browser"] else "page+count"
        worst = max(combined[kind][way]["p95"]["median"] for kind in KINDS)
        verdict = "PASS" if worst <= TARGET_P95_MS else "MISS"
        print(f"   worst {way} p95 {worst:g} ms: target <= {TARGET_P95_MS:g} ms {verdict}")
    print(f"   machine at end: {load_text(result['load_end'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--only", default="", help="comma list of embedded,postgresql")
    parser.add_argument("--profile", action="store_true", help="profile a search even if met")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(RESULT_MARK + json.dumps(child(args), default=str), flush=True)
        return
    only = set(args.only.split(",")) if args.only else {"embedded", "postgresql"}
    passed = [
        f"--runs={args.runs}",
        f"--sessions={args.sessions}",
        f"--rows={args.rows}",
        f"--reps={args.reps}",
    ] + (["--profile"] if args.profile else [])
    run_setups(
        "bench.archive_bench",
        only=only - {"redis"},
        database="supportbot_archive_bench",
        flush_seconds=0.0,
        passed=passed,
        report=report,
    )


if __name__ == "__main__":
    main()
