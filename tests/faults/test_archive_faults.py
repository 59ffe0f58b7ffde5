"""S3 stopped while sessions are archived: nothing is lost, the archive is written when S3 is back.

Real processes on PostgreSQL and Redis: a live server ends sessions (``DELETE
/api/session/{id}`` queues the archive task), a Celery worker archives them to S3 (moto over
HTTP, behind a TCP gate this test opens and closes: closed, connections are refused and open
ones cut). While S3 is down the archive task is retried with backoff, and an expiry run (the
sessions' deadline moved into the past, as 24 hours of quiet would) must keep every row. When S3
is back each archive is written, read back from the bucket (sha256 and messages as stored), and
only then does expiry delete the rows.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from chat.lifecycle import STOP_AFTER_FAILURES
from tests.fakes.live_server import LiveServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Bucket
from tests.faults.celery_processes import (
    CeleryWorker,
    PostgresDatabase,
    base_env,
    flush_redis,
    migrate,
    redis_db,
    services,
    wait_for,
)

SESSIONS = 4
TURNS = 2  # per session: 2 user messages and 2 answers stored
OUTAGE = 5.0  # seconds S3 stays down after the sessions ended
BACK_WITHIN = 30.0  # seconds after S3 returns by which every archive is written


class TcpGate:
    """A TCP forwarder on one 127.0.0.1 port in front of a server. ``close()`` stops listening
    and cuts every open connection (to a client the server is down: connections refused);
    ``open()`` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> TcpGate:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            self._cut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._cut(source)
            self._cut(sink)

    def _cut(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with self._lock:
            self._connections.discard(sock)


@pytest.fixture
def archive_db() -> Iterator[PostgresDatabase]:
    found = services()
    database = PostgresDatabase.create(found.database_url, "h_fault2_archive")
    try:
        yield database
    finally:
        database.close()


def send_task(broker_url: str, name: str) -> str:
    """Queue a task by name (what beat does on its schedule); returns its id."""
    app = Celery("faults", broker=broker_url, set_as_current=False)
    try:
        return str(app.send_task(name).id)
    finally:
        app.close()


def session_rows(database: PostgresDatabase, session_ids: list[str]) -> dict[str, list[str]]:
    """The stored messages of each session still in the database, in order."""
    rows = database.query(
        "SELECT s.id, m.content FROM chat_chatsession s "
        "LEFT JOIN chat_message m ON m.session_id = s.id WHERE s.id = ANY(%s) "
        "ORDER BY s.id, m.seq",
        [session_ids],
    )
    found: dict[str, list[str]] = {}
    for session_id, content in rows:
        found.setdefault(str(session_id), [])
        if content is not None:
            found[str(session_id)].append(str(content))
    return found


def test_s3_stopped_during_archiving_loses_nothing(
    archive_db: PostgresDatabase, s3_server: S3Bucket, tmp_path: Path, figure: Any
) -> None:
    redis_url = redis_db(services().redis_url, 9)
    flush_redis(redis_url)
    gate = TcpGate(int(s3_server.endpoint_url.rsplit(":", 1)[1])).open()
    model = FakeOpenAIServer().start()
    settings = {
        "DATABASE_URL": archive_db.url,
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "RATE_LIMITS_ENABLED": "false",
        "LLM_BASE_URL": model.base_url,
        "LLM_API_KEY": "test-key",
        "LLM_MODEL": "fake-model",
        "AWS_STORAGE_BUCKET_NAME": s3_server.name,
        "AWS_S3_ENDPOINT_URL": gate.url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_S3_REGION_NAME": REGION,
    }
    server = LiveServer(tmp_path / "web", env=settings)
    worker = CeleryWorker(
        tmp_path / "logs", env=base_env(tmp_path / "worker", **settings), concurrency=2
    )
    try:
        migrate(base_env(tmp_path / "migrate", DATABASE_URL=archive_db.url))
        server.var_dir.mkdir(parents=True, exist_ok=True)
        (tmp_path / "worker").mkdir()
        worker.start()
        server.start()
        worker.wait_ready()
        session_ids = []
        with httpx.Client(base_url=server.base_url, timeout=20, trust_env=False) as client:
            for n in range(SESSIONS):
                session_id = client.post("/api/session", json={}).json()["sessionId"]
                session_ids.append(session_id)
                for turn in range(TURNS):
                    response = client.post(
                        "/api/chat",
                        json={
                            "sessionId": session_id,
                            "message": f"How do I export my data? ({n}.{turn})",
                            "requestId": f"archive-{n}-{turn}",
                        },
                    )
                    assert response.status_code == 200, response.text
            stored = session_rows(archive_db, session_ids)
            assert all(len(stored[s]) == 2 * TURNS for s in session_ids), stored

            gate.close()  # S3 is down
            down_at = time.monotonic()
            waits = []
            for session_id in session_ids:
                started = time.monotonic()
                response = client.delete(f"/api/session/{session_id}")
                waits.append(time.monotonic() - started)
                assert response.status_code == 200, response.text

        # A day passes: expiry runs while S3 is still down and must keep every row.
        archive_db.query(
            "UPDATE chat_chatsession SET expires_at = now() - interval '1 second' "
            "WHERE id = ANY(%s)",
            [session_ids],
        )
        expiry = send_task(redis_url, "chat.expire_sessions")
        ran = f"chat.expire_sessions[{expiry}] succeeded"
        assert wait_for(lambda: ran in worker.log(), within=20), worker.log_tail()
        # It tried to archive the sessions itself (S3 refused them; after STOP_AFTER_FAILURES in
        # a row it leaves the rest to its next run) and deleted none.
        tried = min(SESSIONS, STOP_AFTER_FAILURES)
        assert worker.log().count("archive_failed") >= tried, worker.log_tail()
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        during = session_rows(archive_db, session_ids)
        archived_during = archive_db.query(
            "SELECT count(*) FROM chat_sessionarchive WHERE session_id = ANY(%s)", [session_ids]
        )[0][0]
        retries = len(re.findall(r"chat\.archive_session\[[^\]]+\] retry: Retry in", worker.log()))
        figure("archive task retries while S3 was down", retries)
        assert during == stored, "rows changed while S3 was down"
        assert archived_during == 0
        assert retries >= SESSIONS, worker.log_tail()

        gate.open()  # S3 is back
        back_at = time.monotonic()

        def archives() -> dict[str, tuple[str, str, int]]:
            rows = archive_db.query(
                "SELECT session_id, key, sha256, message_count FROM chat_sessionarchive "
                "WHERE session_id = ANY(%s)",
                [session_ids],
            )
            return {str(r[0]): (str(r[1]), str(r[2]), int(str(r[3]))) for r in rows}

        wait_for(lambda: len(archives()) == SESSIONS, within=BACK_WITHIN, every=0.2)
        written = archives()
        figure("archives written after S3 returned (s)", round(time.monotonic() - back_at, 1))
        verified = {}
        for session_id, (key, sha256, count) in written.items():
            payload = s3_server.read(f"archives/{key}")
            assert hashlib.sha256(payload).hexdigest() == sha256, key
            document = json.loads(gzip.decompress(payload))
            contents = [message["content"] for message in document["messages"]]
            assert count == len(contents)
            verified[session_id] = contents
        assert set(written) == set(session_ids), (
            f"{len(written)} of {SESSIONS} archived {BACK_WITHIN:.0f} s after S3 returned:\n"
            f"{worker.log_tail()}"
        )
        assert verified == stored

        # The backoff of the sessions expiry could not archive passes, and expiry runs again.
        archive_db.query(
            "UPDATE chat_chatsession SET archive_retry_at = now() - interval '1 second' "
            "WHERE id = ANY(%s) AND archive_retry_at IS NOT NULL",
            [session_ids],
        )
        expiry = send_task(redis_url, "chat.expire_sessions")
        deleted = wait_for(lambda: not session_rows(archive_db, session_ids), within=20)
        after = session_rows(archive_db, session_ids)
        lost = sum(len(stored[s]) - len(verified.get(s, [])) for s in session_ids if s not in after)
        figure("sessions archived / ended", f"{len(verified)} / {SESSIONS}")
        figure("rows lost", lost)
        figure("DELETE /api/session while S3 was down, longest wait (s)", round(max(waits), 2))
        assert deleted, f"rows kept after the archive was written: {after}"
        assert lost == 0
        assert max(waits) < 3.0, "ending a session waited for S3"
    finally:
        worker.close()
        server.close()
        model.stop()
        gate.close()
        flush_redis(redis_url)
