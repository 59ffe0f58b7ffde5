"""A workflow end to end in a real Celery worker process on the Redis broker: submitted here,
run there against the same test database, its progress reaching a socket of this process through
the Redis channel layer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connection

from chat.sessions import session_create
from supportbot.asgi import application
from supportbot.celery import app as celery_app
from tools.models import Ticket, WorkflowExecution
from tools.workflows import workflow_submit

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    """The test database as a URL for the worker (pytest-django renamed it)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host, port, user = db["HOST"] or "127.0.0.1", db["PORT"] or 5432, db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker(redis_url: str, tmp_path: Path, kb) -> Iterator[subprocess.Popen[bytes]]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ} | {
        "DJANGO_SETTINGS_MODULE": "supportbot.settings",
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": celery_app.conf.broker_url,
        "LOG_LEVEL": "WARNING",
        "OPENAI_API_KEY": "",
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "supportbot",
            "worker",
            "--pool=threads",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    celery_app.conf.task_always_eager = False
    try:
        yield process
    finally:
        celery_app.conf.task_always_eager = True
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def test_an_escalation_runs_in_a_real_worker_and_reports_progress(worker, tmp_path) -> None:
    channel_layers.backends.clear()  # the Redis layer of this test's event loop
    session = await sync_to_async(session_create)()
    ws = WebsocketCommunicator(
        application,
        f"/ws?sessionId={session.id}",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    assert (await ws.connect())[0]
    await ws.receive_json_from()

    execution, created = await sync_to_async(workflow_submit)(
        workflow_type="escalation",
        session_id=session.id,
        parameters={"query": "The customer asked for a person", "priority": "high"},
    )
    assert created
    frames: list[dict] = []
    try:
        async with asyncio.timeout(60):
            while True:
                frame = await ws.receive_json_from(timeout=60)
                frames.append(frame)
                if frame["type"] == "workflow_progress" and frame["data"]["status"] in (
                    "completed",
                    "compensated",
                    "failed",
                ):
                    break
    except TimeoutError:
        log = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
        pytest.fail(f"no final progress from the worker; its log:\n{log}")
    finally:
        await ws.disconnect()
        channel_layers.backends.clear()

    await execution.arefresh_from_db()
    assert execution.status == "completed", execution.error
    assert execution.deliveries == 1 and execution.finished_at is not None
    ticket = await Ticket.objects.aget(session_id=session.id)
    assert ticket.priority == "high"
    progress = [f["data"] for f in frames if f["type"] == "workflow_progress"]
    assert progress[-1]["executionId"] == execution.id and progress[-1]["progress"] == 1.0
    # The system message of the "notify" step reached this socket from the worker's process.
    notices = [f["data"] for f in frames if f["type"] == "message"]
    assert notices and ticket.id in notices[0]["content"]
    assert await WorkflowExecution.objects.acount() == 1
