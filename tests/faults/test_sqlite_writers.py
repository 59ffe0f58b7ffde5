"""Twenty clients chatting at once against one server on the embedded default (SQLite in WAL
mode): ten over WebSocket, ten over REST, every message a write of its own plus its answer.

No PostgreSQL or Redis: the server (daphne, a real process) and a Celery worker on the
filesystem broker share one data directory, as ``make run`` starts them, and the worker writes
conversation summaries (due every few messages here) while the server stores the turns, so two
processes contend for SQLite's one writer. Every message the server acknowledged must be stored
exactly once with its answer, no request may end in a 5xx, and neither log may show SQLite's
"database is locked".
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.faults.celery_processes import CeleryWorker, base_env
from tests.faults.clients import RestTurn, WsTurn, rest_chat, ws_chat, ws_connect

CLIENTS = 20  # half WebSocket, half REST
MESSAGES = 5  # per client, one after the other
WAIT_LIMIT = 15.0  # seconds a client may wait for one answer


@dataclass
class Embedded:
    server: LiveServer
    worker: CeleryWorker


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    with FakeOpenAIServer() as model:
        # A streamed answer of a dozen words, a few milliseconds apart: turns overlap.
        model.set_default(
            Reply("Open Settings, then Sync, and choose Sync now to retry.", delay=0.005)
        )
        settings = {
            "LLM_BASE_URL": model.base_url,
            "LLM_API_KEY": "test-key",
            "LLM_MODEL": "fake-model",
            "RATE_LIMITS_ENABLED": "false",  # a load test: twenty sessions from one address
            "CELERY_TASK_ALWAYS_EAGER": "false",  # summaries are the worker's
            "MEMORY_SUMMARY_THRESHOLD": "4",
            "MEMORY_KEEP_RECENT": "2",
        }
        var_dir = tmp_path / "var"
        live = LiveServer(var_dir, env=settings)
        var_dir.mkdir(parents=True)
        live.manage("migrate", "--noinput")
        worker = CeleryWorker(tmp_path / "logs", env=base_env(var_dir, **settings), concurrency=2)
        try:
            worker.start()
            live.start()
            worker.wait_ready()
            yield Embedded(live, worker)
        finally:
            live.close()
            worker.close()


def question(client: int, n: int) -> str:
    return f"My files stopped syncing on laptop {client}, what should I try? (message {n})"


async def websocket_client(live: LiveServer, session_id: str, client: int) -> list[WsTurn]:
    ws = await ws_connect(live, session_id)
    try:
        return [
            await ws_chat(ws, session_id, question(client, n), f"c{client}-m{n}", within=WAIT_LIMIT)
            for n in range(MESSAGES)
        ]
    finally:
        await ws.close()


async def rest_client(live: LiveServer, session_id: str, client: int) -> list[RestTurn]:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http:
        return [
            await rest_chat(
                http, session_id, question(client, n), f"c{client}-m{n}", within=WAIT_LIMIT
            )
            for n in range(MESSAGES)
        ]


async def chat_all(live: LiveServer) -> tuple[list[str], list[list[Any]]]:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http:
        sessions = [
            (await http.post("/api/session", json={})).json()["sessionId"] for _ in range(CLIENTS)
        ]
    clients = [
        websocket_client(live, session_id, n) if n % 2 == 0 else rest_client(live, session_id, n)
        for n, session_id in enumerate(sessions)
    ]
    return sessions, list(await asyncio.gather(*clients))


def test_twenty_concurrent_writers_on_sqlite(embedded: Embedded, figure: Any) -> None:
    server = embedded.server
    sessions, results = asyncio.run(chat_all(server))

    acknowledged: dict[tuple[str, str], str] = {}  # (session, requestId) -> the text sent
    failures: list[str] = []
    waits: list[float] = []
    for n, (session_id, turns) in enumerate(zip(sessions, results, strict=True)):
        for m, turn in enumerate(turns):
            waits.append(turn.waited)
            key = (session_id, f"c{n}-m{m}")
            if isinstance(turn, WsTurn):
                if turn.received is not None:
                    acknowledged[key] = question(n, m)
                if turn.response is None:
                    failures.append(f"ws {key}: error={turn.error} closed={turn.closed}")
            else:
                if turn.status == 200 and turn.body and turn.body.get("messageId"):
                    acknowledged[key] = question(n, m)
                else:
                    failures.append(f"rest {key}: {turn.status} {turn.failure} {turn.body}")

    db = sqlite3.connect(f"file:{server.var_dir / 'db.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT u.session_id, u.request_id, u.content, "
            "(SELECT count(*) FROM chat_message a WHERE a.reply_to_id = u.id "
            " AND a.role = 'assistant') "
            "FROM chat_message u WHERE u.role = 'user'"
        ).fetchall()
        summarised = db.execute("SELECT count(*) FROM chat_chatsession WHERE summary <> ''")
        summaries = int(summarised.fetchone()[0])
    finally:
        db.close()
    stored: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for session_id, request_id, content, answers in rows:
        stored.setdefault((session_id, request_id), []).append((content, answers))
    once = sum(
        1 for key, text in acknowledged.items() if stored.get(key) == [(text, 1)]
    )  # the message, stored once, with one answer
    log = server.log_tail(100_000) + embedded.worker.log()
    server_errors = [t for turns in results for t in turns if getattr(t, "status", 0) >= 500]

    figure("messages acknowledged / sent", f"{len(acknowledged)} / {CLIENTS * MESSAGES}")
    figure("acknowledged stored once with one answer", f"{once} / {len(acknowledged)}")
    figure("user messages stored", len(rows))
    figure("sessions summarised by the worker meanwhile", f"{summaries} / {CLIENTS}")
    figure("5xx answers", len(server_errors))
    figure("'database is locked' in the logs", log.count("database is locked"))
    figure("longest client wait for an answer (s)", round(max(waits), 2))
    figure("median client wait (s)", round(sorted(waits)[len(waits) // 2], 3))

    assert not failures, failures[:5]
    assert len(acknowledged) == CLIENTS * MESSAGES
    assert once == len(acknowledged), {
        key: stored.get(key) for key in acknowledged if stored.get(key) != [(acknowledged[key], 1)]
    }
    assert len(rows) == len(acknowledged), "messages stored that no client sent"
    assert not server_errors
    assert "database is locked" not in log
    assert max(waits) < WAIT_LIMIT
    assert summaries > 0, "the worker wrote nothing: no second writer"
