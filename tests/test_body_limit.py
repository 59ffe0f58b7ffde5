"""The HTTP server's own body limit (``MAX_REQUEST_BODY_BYTES``, supportbot/server.py), against
real server processes started both ways: ``python -m supportbot.server`` and plain ``daphne``.

daphne (Twisted) receives a whole body and queues it for the application before the application
runs, so only the server can refuse an oversized body early and cheaply: at once from its
``Content-Length``, and as soon as a chunked body passes the limit. Raw sockets, because the
point is what happens while a body is still being sent.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.live_server import LiveServer

LIMIT = 1024 * 1024  # MAX_REQUEST_BODY_BYTES's default
APP_LIMIT = 64 * 1024  # MAX_BODY_BYTES: the application's own 413 (API.md)
GiB = 1 << 30
PIECE = b"x" * 65536
CHUNK = b"%x\r\n" % len(PIECE) + PIECE + b"\r\n"


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    """One prepared data directory, shared by both servers."""
    return LiveServer(tmp_path_factory.mktemp("body-limit")).prepare().var_dir


@pytest.fixture(scope="module", params=["supportbot.server", "daphne"])
def server(request, var_dir) -> Iterator[LiveServer]:
    live = LiveServer(var_dir, launcher=request.param).start()
    try:
        yield live
    finally:
        live.close()


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(length: int | None, *, path: str = "/api/chat", extra: str = "") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n{extra}\r\n"
    ).encode()


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], dict]:
    """One whole response (its Content-Length says where it ends): status, headers, JSON body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"closed before a response: {data!r}"
        data += piece
    raw_head, body = data.split(b"\r\n\r\n", 1)
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece, "closed inside the response body"
        body += piece
    assert len(body) == length, "more than the response arrived"
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_closed(sock: socket.socket, within: float = 5.0) -> None:
    """The server ends the connection: nothing but the end of the stream (or a reset) arrives."""
    sock.settimeout(within)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(65536) == b""


def assert_refused(status: int, headers: dict[str, str], body: dict, *, path="/api/chat") -> None:
    """API.md's one error shape, as the server itself sends it."""
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body["error"]["code"] == "MESSAGE_TOO_LONG"
    assert body["error"]["details"] == {"maxBytes": APP_LIMIT}
    assert body["error"]["retryable"] is False
    assert headers["x-request-id"] == body["requestId"]
    assert abs(body["timestamp"] - time.time() * 1000) < 60_000
    assert body["path"] == path
    assert body["method"] == "POST"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def settled_rss_kb(pid: int, *, timeout: float = 60.0) -> int:
    """The server's RSS once two readings a second apart differ by under 1 MiB (the content
    filter's model loads in the background after the start)."""
    last = rss_kb(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = rss_kb(pid)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def stream_chunks_until_answered(sock: socket.socket, budget: int) -> tuple[int, float]:
    """Send chunked body pieces until the server answers; (bytes sent, seconds to the answer)."""
    sent, started = 0, time.monotonic()
    sock.settimeout(5)
    while sent < budget:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return sent, time.monotonic() - started
        sock.sendall(CHUNK)
        sent += len(PIECE)
    raise AssertionError(f"no answer after {sent} bytes")


def push(server: LiveServer, total: int, *, chunked: bool, deadline: float) -> int:
    """Send a whole ``total``-byte body, ignoring the refusal, and again on a new connection
    when the server stops listening (as a careless or hostile client would); the bytes sent.
    Received whole, the body would be queued for the application: ``total`` more bytes of RSS."""
    pushed = 0
    while pushed < total and time.monotonic() < deadline:
        with connect(server) as sock:
            sock.sendall(head(None if chunked else total - pushed))
            try:
                while pushed < total:
                    sock.sendall(CHUNK if chunked else PIECE)
                    pushed += len(PIECE)
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # reset: the server stopped listening to this connection
    return pushed


def post_json(server: LiveServer, path: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_declared_gibibyte_is_refused_at_once_without_reading_it(server) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(head(GiB, extra="X-Request-ID: probe-declared-1\r\n"))
        status, headers, body = read_response(sock, timeout=5)
        assert time.monotonic() - started < 1.0
        assert_refused(status, headers, body)
        assert body["requestId"] == headers["x-request-id"] == "probe-declared-1"
        assert_closed(sock)


def test_expect_100_continue_gets_the_refusal_instead_of_an_invitation(server) -> None:
    with connect(server) as sock:
        sock.sendall(head(10 * GiB, extra="Expect: 100-continue\r\n"))
        status, headers, body = read_response(sock, timeout=5)  # no "100 Continue" first
        assert_refused(status, headers, body)
        assert body["requestId"].startswith("req_")
        assert_closed(sock)


def test_a_chunked_body_is_refused_once_past_the_limit(server) -> None:
    with connect(server) as sock:
        sock.sendall(head(None, path="/api/chat?stream=1"))
        sent, seconds = stream_chunks_until_answered(sock, budget=512 << 20)
        assert sent > LIMIT  # not before the limit...
        assert sent < 64 << 20, sent  # ...and not long after it (socket buffers aside)
        assert seconds < 2.0
        status, headers, body = read_response(sock, timeout=5)
        assert_refused(status, headers, body)
        assert_closed(sock)


def test_a_refusal_after_a_kept_alive_request(server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        sock.sendall(head(GiB))
        assert_refused(*read_response(sock, timeout=5))
        assert_closed(sock)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/<pid>/status")
@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_pushed_bodies_do_not_grow_the_server(server, chunked) -> None:
    pid = server.process.pid
    with connect(server) as sock:  # one refusal first: what it loads is not counted
        sock.sendall(head(GiB))
        assert_refused(*read_response(sock, timeout=5))
    before = settled_rss_kb(pid)
    pushed = push(server, 200 << 20, chunked=chunked, deadline=time.monotonic() + 60)
    assert pushed >= 200 << 20
    time.sleep(1)  # the last connection's linger
    grown_mb = (rss_kb(pid) - before) / 1024
    print(f"RSS {grown_mb:+.1f} MB after {pushed >> 20} MB pushed")
    assert grown_mb < 8, f"RSS grew by {grown_mb:.1f} MB after {pushed >> 20} MB pushed"
    # and the server still serves, on a new connection
    with urllib.request.urlopen(f"{server.base_url}/api/status", timeout=10) as response:
        assert json.load(response)["status"]


def test_bodies_up_to_the_limit_still_reach_the_application(server) -> None:
    # Over the application's 64 KiB but not the server's limit: the application's own 413, and
    # the connection stays open (the server's refusal closes it).
    for length in (APP_LIMIT + 1, LIMIT):
        with connect(server) as sock:
            sock.sendall(head(length) + b" " * length)
            status, headers, body = read_response(sock)
            assert status == 413 and body["error"]["code"] == "MESSAGE_TOO_LONG"
            assert body["error"]["details"] == {"maxBytes": APP_LIMIT}
            assert "x-ratelimit-limit" in headers  # the application's middleware answered
            assert headers.get("connection") != "close"
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock)[0] in (200, 503)
    # The same for a chunked body of exactly the limit.
    with connect(server) as sock:
        sock.sendall(head(None) + CHUNK * (LIMIT // len(PIECE)) + b"0\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 413 and "x-ratelimit-limit" in headers
        assert headers.get("connection") != "close"


def test_a_normal_chat_still_works(server) -> None:
    status, session = post_json(server, "/api/session", {})
    assert status == 201, session
    status, answer = post_json(
        server,
        "/api/chat",
        {"sessionId": session["sessionId"], "message": "How do I reset my password?"},
    )
    assert status == 200, answer
    assert answer["response"]


def test_what_follows_the_limit_in_the_same_read_is_not_parsed(server) -> None:
    # One chunk one byte over the limit, then garbage where its CRLF belongs: after the refusal
    # the rest is dropped, not parsed (a parse would add a "400 Bad Request" after the 413).
    with connect(server) as sock:
        sock.sendall(head(None) + b"%x\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1) + b"garbage\r\n")
        assert_refused(*read_response(sock, timeout=5))
        sock.settimeout(5)
        rest = b""
        with contextlib.suppress(ConnectionResetError):
            while piece := sock.recv(65536):
                rest += piece
        assert rest == b""
