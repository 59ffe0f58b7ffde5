"""An HTTP server on 127.0.0.1 in front of an S3 server that breaks what it is told to break.

Everything else is forwarded to the S3 server behind it (moto, ``tests/fakes/s3_server.py``) and
its answer relayed unchanged, so boto3 and ``S3Storage`` talk real HTTP to a real S3 throughout:

- ``die_on_put``: the first object upload (``PUT`` with a body) is accepted (``100 Continue``
  when the client asks for it), half its body read, and then the server dies: that connection
  is cut and the port stops listening, so every later connection is refused. Nothing of the
  upload reaches the S3 server.
- ``corrupt_gets``: the body of every object download (``GET`` answered 200) has one byte
  changed on the way back: the stored object is intact, what the client reads is not. boto3
  asks S3 for the object's checksum and checks it (``FlexibleChecksumError``); with
  ``checksums=False`` the proxy drops those headers, as a store that keeps none would, and
  only the reader's own check can notice.

    proxy = S3FaultProxy(s3.endpoint_url, die_on_put=True).start()
    ...  # point S3Storage(endpoint_url=proxy.endpoint_url) at it
    assert proxy.cut == [("archives/…", 2817, 1408)]  # key, body length, bytes read
    proxy.stop()
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

# Not relayed: they describe one connection, not the message (the proxy frames its own).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "expect", "te", "trailer", "upgrade"}
)


class S3FaultProxy:
    """See the module's docstring."""

    def __init__(
        self,
        upstream: str,
        *,
        die_on_put: bool = False,
        corrupt_gets: bool = False,
        checksums: bool = True,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.die_on_put = die_on_put
        self.corrupt_gets = corrupt_gets
        self.checksums = checksums
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.cut: list[tuple[str, int, int]] = []  # (path, Content-Length, bytes read) at death
        self.corrupted: list[str] = []  # paths whose download was changed
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> S3FaultProxy:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening (later connections are refused). Safe to call twice."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def die(self, connection: socket.socket) -> None:
        """Cut ``connection`` and stop listening, as a server process that died would."""
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
        connection.close()
        # From another thread: shutdown() waits for serve_forever, which waits for nothing here.
        threading.Thread(target=self.stop, daemon=True).start()

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _handler(proxy: S3FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1: keep-alive as S3 does, and "Expect: 100-continue" answered by the base class.
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request on stderr is noise in a test run

        def _forward(self) -> None:
            with proxy._lock:
                proxy.requests.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            if proxy.die_on_put and self.command == "PUT" and length > 1:
                read = len(self.rfile.read(length // 2))
                with proxy._lock:
                    proxy.cut.append((self.path, length, read))
                self.close_connection = True
                proxy.die(self.connection)
                return
            body = self.rfile.read(length) if length else b""
            status, reason, headers, answer = self._upstream(body)
            if (
                proxy.corrupt_gets
                and self.command == "GET"
                and status == 200
                and "?" not in self.path  # an object, not a bucket listing
                and answer
            ):
                answer = answer[:-1] + bytes([answer[-1] ^ 0xFF])
                with proxy._lock:
                    proxy.corrupted.append(self.path)
            self.send_response(status, reason)
            for name, value in headers:
                lower = name.lower()
                if lower in _HOP_BY_HOP or lower == "content-length":
                    continue
                if lower.startswith("x-amz-checksum-") and not proxy.checksums:
                    continue
                self.send_header(name, value)
            if self.command == "HEAD":  # no body: the object's length, as S3 gave it
                self.send_header("Content-Length", dict(headers).get("Content-Length", "0"))
            else:
                self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        def _upstream(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                }
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            finally:
                connection.close()

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

    return Handler
