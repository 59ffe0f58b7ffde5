"""What a real server process puts on the wire and in its log, started both ways (``python -m
supportbot.server``, as ``make run`` does, and plain ``daphne``): every status line carries its
standard reason phrase (Twisted's table has none for 429 and says "Unknown Status"), and every
request leaves exactly one access line, ours (JSON), never daphne's NCSA line beside it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from supportbot.server import reason_phrase
from tests.fakes.live_server import LiveServer


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    return LiveServer(tmp_path_factory.mktemp("server-surface")).prepare().var_dir


@pytest.fixture(scope="module", params=["supportbot.server", "daphne"])
def server(request, var_dir) -> Iterator[LiveServer]:
    # One session creation per address and hour; the refusals come from 10.9.9.9 (behind the
    # trusted proxy 127.0.0.1), so the test's own address keeps its one creation.
    env = {
        "LOG_LEVEL": "INFO",
        "RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR": "1",
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    live = LiveServer(var_dir, env=env, launcher=request.param).start()
    try:
        yield live
    finally:
        live.close()


def exchange(server: LiveServer, raw: bytes) -> tuple[str, bytes]:
    """Send one raw request; return the status line and the rest of the response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    status_line, _, rest = data.partition(b"\r\n")
    return status_line.decode("latin-1"), rest


def request(
    method: str, path: str, body: bytes = b"", *, request_id: str = "", client: str = ""
) -> bytes:
    extra = f"X-Request-ID: {request_id}\r\n" if request_id else ""
    extra += f"X-Forwarded-For: {client}\r\n" if client else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    ("code", "phrase"),
    [
        (429, b"Too Many Requests"),
        (422, HTTPStatus(422).phrase.encode()),
        (413, HTTPStatus(413).phrase.encode()),
        (503, b"Service Unavailable"),
        (200, b"OK"),
    ],
)
def test_reason_phrases_are_the_standard_ones(code, phrase):
    assert reason_phrase(code) == phrase


@pytest.mark.parametrize("code", [0, 99, 299, 599, 999])
def test_a_code_without_a_standard_phrase_has_none(code):
    assert reason_phrase(code) is None


def test_every_status_line_carries_its_standard_reason_phrase(server):
    # One creation per hour for this address: the first is 201, the next a 429.
    first, _ = exchange(server, request("POST", "/api/session", b"{}", client="10.9.9.9"))
    refused, rest = exchange(server, request("POST", "/api/session", b"{}", client="10.9.9.9"))
    assert first == "HTTP/1.1 201 Created"
    assert refused == "HTTP/1.1 429 Too Many Requests", refused
    assert b"Unknown Status" not in rest
    assert b"retry-after:" in rest.lower()
    cases = [
        (request("GET", "/no/such/path"), 404),
        (request("POST", "/health"), 405),
        (request("POST", "/api/chat", b"x" * (100 * 1024)), 413),  # the application's own 413
        (request("POST", "/api/chat", b"[1"), 400),
        (request("GET", "/api/status"), 200),
    ]
    for raw, code in cases:
        status_line, _ = exchange(server, raw)
        assert status_line == f"HTTP/1.1 {code} {HTTPStatus(code).phrase}", status_line


def access_lines(server: LiveServer, needle: str, *, wait: float = 5.0) -> list[str]:
    """The lines of the server's output that mention ``needle`` (after the line shows up)."""
    deadline = time.monotonic() + wait
    while True:
        lines = [line for line in server.log_path.read_text().splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            time.sleep(0.3)  # a second line, if any, would come right after the first
            return [line for line in server.log_path.read_text().splitlines() if needle in line]
        time.sleep(0.05)


def test_a_request_leaves_exactly_one_access_line_ours(server):
    marker = f"/api/status?probe={time.monotonic_ns()}"
    status_line, _ = exchange(server, request("GET", marker, request_id="req_onelinetest"))
    assert status_line.startswith("HTTP/1.1 200")
    path = marker.split("?")[0]
    lines = access_lines(server, "req_onelinetest")
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert (entry["event"], entry["path"], entry["status"]) == ("request", path, 200)
    assert entry["latency_ms"] >= 0 and entry["method"] == "GET"
    assert not access_lines(server, f'"GET {marker}"', wait=0)  # daphne's NCSA line


def test_static_files_and_websockets_are_logged_once_as_json_too(server):
    asset = f"/static/chat/page.css?v={time.monotonic_ns()}"
    status_line, _ = exchange(server, request("GET", asset))
    assert status_line == "HTTP/1.1 200 OK"
    lines = access_lines(server, asset.split("?")[1])
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert (entry["event"], entry["status"], entry["method"]) == ("request", 200, "GET")

    def websocket_lines() -> list[str]:
        return [line for line in server.log_path.read_text().splitlines() if '"websocket"' in line]

    before = len(websocket_lines())
    with ws_connect(f"{server.ws_url}?sessionId={server.create_session()}") as ws:
        ws.recv(timeout=5)  # connection_established, or an error frame
    deadline = time.monotonic() + 5
    while len(websocket_lines()) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    new = [json.loads(line) for line in websocket_lines()[before:]]
    assert [entry["action"] for entry in new] == ["connected", "disconnected"], new
    assert all(entry["path"] == "/ws" for entry in new)
    log = server.log_path.read_text()
    assert "WSCONNECT" not in log and "WSDISCONNECT" not in log and '] "GET ' not in log
