"""Secrets stay out of logs and out of other users' reach, checked on a real server process
(both ways of starting it): session ids are masked in every log line it writes (daphne's access
log on stdout and our JSON lines on stderr), and its data directory, database, secret key and
archives are readable by its own user only."""

from __future__ import annotations

import asyncio
import json
import stat
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from supportbot.logconfig import mask_session_ids
from tests.fakes.live_server import LiveServer


@pytest.fixture(scope="module", params=["supportbot.server", "daphne"])
def server(request, tmp_path_factory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("private") / "var",
        env={"LOG_LEVEL": "INFO"},
        launcher=request.param,
    ).prepare()
    try:
        yield live.start()
    finally:
        live.close()


def call(server: LiveServer, method: str, path: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(
        f"{server.base_url}{path}",
        data=body,
        method=method,
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def open_and_close_socket(server: LiveServer, session_id: str) -> None:
    async with websockets.connect(
        f"{server.ws_url}?sessionId={session_id}", origin=websockets.Origin(server.base_url)
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_established"


def test_mask_keeps_a_prefix_and_leaves_other_text_alone() -> None:
    session_id = "sess_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    assert mask_session_ids(f"GET /api/session/{session_id}?x=1") == (
        "GET /api/session/sess_AbCdEf***?x=1"
    )
    assert mask_session_ids(f"/ws?sessionId={session_id}&watch=1") == (
        "/ws?sessionId=sess_AbCdEf***&watch=1"
    )
    assert mask_session_ids("sess_short and plain text") == "sess_short and plain text"


def test_session_ids_are_masked_in_every_log_line(server: LiveServer) -> None:
    session_id = server.create_session()
    assert call(server, "GET", f"/api/session/{session_id}?limit=5") == 200
    assert call(server, "GET", f"/api/session/{session_id}/nope") == 404
    body = json.dumps({"query": "sync", "sessionId": session_id}).encode()
    assert call(server, "POST", "/api/tools/search", body) == 200
    asyncio.run(open_and_close_socket(server, session_id))
    assert call(server, "DELETE", f"/api/session/{session_id}") == 200
    masked = session_id[: len("sess_") + 6] + "***"
    deadline = time.monotonic() + 10
    while True:
        text = server.log_path.read_text(errors="replace")
        seen = [line for line in text.splitlines() if masked in line]
        # the access line of the last request (one JSON line per request, ours)
        done = any('"method": "DELETE"' in line for line in seen)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert session_id not in text
    assert any(
        line.startswith("{") and f'"path": "/api/session/{masked}"' in line for line in seen
    ), text[-3000:]
    # The socket's lines carry its path only (not the query string with the session id).
    assert '"event": "websocket"' in text and '"path": "/ws"' in text


def test_the_data_directory_is_private_to_the_service_user(server: LiveServer) -> None:
    session_id = server.create_session()
    assert call(server, "DELETE", f"/api/session/{session_id}") == 200  # archived at once (eager)
    var: Path = server.var_dir

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(var) == 0o700
    for name in ("secret_key", "db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"):
        assert mode(var / name) == 0o600, name
    archives = [path for path in (var / "archives").rglob("*") if session_id in path.name]
    assert archives, list((var / "archives").rglob("*"))
    assert mode(archives[0]) == 0o600
    folder = archives[0].parent
    while folder != var:
        assert mode(folder) == 0o700, folder
        folder = folder.parent
