"""S3 killed while expiry archives 50 conversations: each one is either archived (its object
reads back with the recorded sha256) and deleted, or still whole in the database; never neither.
When S3 is back, expiry past the backoff archives the rest, and every archive verifies.

Real processes on PostgreSQL (``fault_database``) and the suite's own Redis: a Celery worker runs
``chat.expire_sessions`` (queued by name through the broker, as beat does), writing to S3 (moto
over HTTP) through a TCP gate this test closes part way through the run: from then on
connections are refused and those open are cut, uploads included. The 50 ended sessions of ~20
messages each are made by a process of their own (``tests.chat.archive_cast.conversation``) and
their deadline is already past, as 24 hours after they ended. The last step is
``manage.py verify_archives --all --json`` in a process of its own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from chat.lifecycle import STOP_AFTER_FAILURES
from tests.fakes.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Bucket
from tests.faults.celery_processes import ROOT, CeleryWorker, base_env, wait_for
from tests.faults.conftest import RedisProcess
from tests.faults.test_archive_faults import TcpGate

SESSIONS = 50
MESSAGES = 20
KILL_AFTER = 10  # archives recorded before S3 is killed
RETRY_MAX_SECONDS = 3  # the backoff's cap (ARCHIVE_RETRY_MAX_SECONDS): the retry comes soon

SEED = f"""
import json
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from chat.models import ChatSession
from tests.chat.archive_cast import conversation
ids = [
    conversation(user_id=f"cust-{{n % 10}}", messages={MESSAGES}).id for n in range({SESSIONS})
]
ChatSession.objects.filter(pk__in=ids).update(expires_at=timezone.now() - timedelta(seconds=1))
print(json.dumps(ids))
"""


def query(url: str, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def run_django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def send_task(broker_url: str, name: str) -> str:
    app = Celery("faults", broker=broker_url, set_as_current=False)
    try:
        return str(app.send_task(name).id)
    finally:
        app.close()


@dataclass
class State:
    """Where each session is: archived and verified, kept whole, or neither (lost)."""

    archived: dict[str, list[str]]  # session -> the messages its archive holds
    kept: dict[str, list[str]]  # session -> its messages still in the database
    lost: dict[str, str]  # session -> what is wrong
    retries: dict[str, tuple[int, bool]]  # kept session -> (archive_attempts, retry_at set)
    orphans: int  # objects in the bucket that no archive row names


def state(url: str, bucket: S3Bucket, seeded: dict[str, list[str]]) -> State:
    ids = list(seeded)
    rows: dict[str, list[str]] = {}
    retries: dict[str, tuple[int, bool]] = {}
    for session_id, attempts, retry_at, content in query(
        url,
        "SELECT s.id, s.archive_attempts, s.archive_retry_at, m.content FROM chat_chatsession s "
        "LEFT JOIN chat_message m ON m.session_id = s.id WHERE s.id = ANY(%s) ORDER BY s.id, m.seq",
        [ids],
    ):
        rows.setdefault(session_id, []).extend([content] if content is not None else [])
        retries[session_id] = (attempts, retry_at is not None)
    records = query(
        url,
        "SELECT session_id, key, sha256 FROM chat_sessionarchive WHERE session_id = ANY(%s)",
        [ids],
    )
    objects = set(bucket.keys("archives/"))
    verified: dict[str, list[str]] = {}
    broken: dict[str, str] = {}
    for session_id, key, digest in records:
        if f"archives/{key}" not in objects:
            broken[session_id] = f"no object {key}"
            continue
        payload = bucket.read(f"archives/{key}")
        if hashlib.sha256(payload).hexdigest() != digest:
            broken[session_id] = f"{key} does not match its sha256"
            continue
        document = json.loads(gzip.decompress(payload))
        verified[session_id] = [m["content"] for m in document["messages"]]
    archived, kept, lost = {}, {}, {}
    for session_id, messages in seeded.items():
        if session_id not in rows and verified.get(session_id) == messages:
            archived[session_id] = messages
        elif rows.get(session_id) == messages:
            kept[session_id] = messages
        else:
            lost[session_id] = broken.get(session_id, f"rows {len(rows.get(session_id, []))}")
    named = {f"archives/{key}" for _, key, _ in records}
    return State(
        archived=archived,
        kept=kept,
        lost=lost,
        retries={s: retries[s] for s in kept},
        orphans=len(objects - named),
    )


def expiry_runs(worker: CeleryWorker) -> list[str]:
    """The result lines of the expiry runs the worker finished, in order."""
    return [
        line
        for line in worker.log().splitlines()
        if "chat.expire_sessions[" in line and " succeeded in " in line
    ]


@pytest.mark.timeout(420)
def test_s3_killed_while_expiry_archives_50_sessions_loses_none(
    fault_database: str,
    redis_process: RedisProcess,
    s3_server: S3Bucket,
    tmp_path: Path,
    figure: Any,
) -> None:
    gate = TcpGate(int(s3_server.endpoint_url.rsplit(":", 1)[1])).open()
    env = base_env(
        tmp_path / "var",
        DATABASE_URL=fault_database,
        REDIS_URL=redis_process.url,
        CELERY_TASK_ALWAYS_EAGER="false",
        ARCHIVE_RETRY_MAX_SECONDS=str(RETRY_MAX_SECONDS),
        AWS_STORAGE_BUCKET_NAME=s3_server.name,
        AWS_S3_ENDPOINT_URL=gate.url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_S3_REGION_NAME=REGION,
        AWS_S3_ADDRESSING_STYLE="path",
    )
    (tmp_path / "var").mkdir()
    worker = CeleryWorker(tmp_path / "logs", env=env, concurrency=2)
    try:
        worker.start()
        seeded_ids = run_django(env, "-c", SEED)
        assert seeded_ids.returncode == 0, seeded_ids.stderr[-3000:]
        ids = json.loads(seeded_ids.stdout.strip().splitlines()[-1])
        messages: dict[str, list[str]] = {s: [] for s in ids}
        for session_id, content in query(
            fault_database,
            "SELECT session_id, content FROM chat_message WHERE session_id = ANY(%s) "
            "ORDER BY session_id, seq",
            [ids],
        ):
            messages[session_id].append(content)
        assert len(messages) == SESSIONS and all(len(m) == MESSAGES for m in messages.values())
        worker.wait_ready()

        # Expiry runs; S3 dies once KILL_AFTER archives are recorded.
        started = time.monotonic()
        send_task(redis_process.url, "chat.expire_sessions")

        def archived() -> int:
            return int(query(fault_database, "SELECT count(*) FROM chat_sessionarchive")[0][0])

        assert wait_for(lambda: archived() >= KILL_AFTER, within=60, every=0.01), worker.log_tail()
        gate.close()
        at_kill = archived()
        assert wait_for(lambda: expiry_runs(worker), within=300, every=0.2), worker.log_tail()
        run_seconds = time.monotonic() - started

        during = state(fault_database, s3_server, messages)
        figure("archives recorded when S3 was killed", f"{at_kill} / {SESSIONS}")
        figure("expiry run with S3 killed part way (s)", round(run_seconds, 1))
        figure(
            "after it: archived+verified / kept whole / lost",
            f"{len(during.archived)} / {len(during.kept)} / {len(during.lost)}",
        )
        figure("orphan objects (written, not recorded)", during.orphans)
        assert during.lost == {}, during.lost
        assert len(during.archived) >= KILL_AFTER and during.kept, "S3 was not killed part way"
        # Expiry stops its batch after STOP_AFTER_FAILURES sessions in a row failed: those are
        # postponed with backoff, the rest untouched until the next run.
        tried = [retry for attempts, retry in during.retries.values() if attempts]
        figure("kept sessions tried before expiry stopped its batch", len(tried))
        assert 1 <= len(tried) <= STOP_AFTER_FAILURES and all(tried)
        assert all(attempts <= 1 for attempts, _ in during.retries.values())

        # S3 is back; expiry runs again once the backoff has passed, and archives the rest.
        gate.open()
        retry_at = query(
            fault_database,
            "SELECT max(archive_retry_at) > now() FROM chat_chatsession WHERE id = ANY(%s)",
            [list(during.kept)],
        )[0][0]
        if retry_at:
            time.sleep(RETRY_MAX_SECONDS + 0.5)
        send_task(redis_process.url, "chat.expire_sessions")
        assert wait_for(lambda: len(expiry_runs(worker)) == 2, within=120), worker.log_tail()

        after = state(fault_database, s3_server, messages)
        figure("after S3 returned: archived+verified", f"{len(after.archived)} / {SESSIONS}")
        assert after.lost == {} and after.kept == {}
        assert after.archived == messages

        verified = run_django(env, "manage.py", "verify_archives", "--all", "--json")
        report = json.loads(verified.stdout)
        figure("verify_archives --all", report["states"])
        assert verified.returncode == 0, verified.stderr[-3000:]
        assert report["checked"] == SESSIONS and report["states"]["ok"] == SESSIONS
    finally:
        worker.close()
        gate.close()
