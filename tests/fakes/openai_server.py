"""An OpenAI-compatible HTTP server on 127.0.0.1 that the real ``openai`` client talks to.

Only the network edge is fake: the client, its HTTP stack, SSE parsing and our provider all run
for real against this server. Chat completions answer from a FIFO script (falling back to a
default reply), so a test can line up exactly what the "model" does next: stream a text, call a
tool, fail with an HTTP status, stall mid-answer or cut the connection.

    server = FakeOpenAIServer().start()
    server.script(HttpError(500), Reply("Hello there"))
    ...  # point AsyncOpenAI(base_url=server.base_url) at it
    assert server.requests[0].body["max_tokens"] == 256
    server.stop()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import select
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

DEFAULT_TEXT = "Hello from the fake model."
DEFAULT_MODEL = "fake-model"
DEFAULT_EMBEDDING_DIMENSIONS = 32


# --- what the fake can be told to do -----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A text answer; streamed in ``chunks`` pieces (one per word when None).

    ``first_delay`` is waited after the response headers and before the first content chunk
    (what a slow prefill looks like); ``delay`` between chunks.
    """

    text: str = DEFAULT_TEXT
    chunks: int | None = None
    first_delay: float = 0.0
    delay: float = 0.0
    finish_reason: str = "stop"
    send_usage: bool = True  # False: never send usage, even when the client asked for it

    def pieces(self) -> list[str]:
        if self.chunks is None:
            return split_words(self.text)
        return _split_even(self.text, self.chunks)


@dataclass(frozen=True)
class ToolCall:
    """One function call the fake model makes; dict arguments are sent as JSON."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ToolCallReply:
    """An answer made of tool calls (optionally after some text), streamed like OpenAI does:
    the first delta of each call carries index, id and name; its arguments follow in
    ``arg_chunks`` pieces."""

    calls: tuple[ToolCall, ...]
    content: str = ""
    arg_chunks: int = 3
    first_delay: float = 0.0
    delay: float = 0.0


@dataclass(frozen=True)
class HttpError:
    """An HTTP error with an OpenAI-shaped JSON body; ``retry_after`` becomes the header as is
    (seconds, or an HTTP date when given as a string)."""

    status: int
    message: str = "The fake server was told to fail."
    retry_after: float | str | None = None
    error_type: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Stall:
    """Stream the first ``chunks_before`` words of ``text``, then hang until the client
    disconnects, the server stops or ``max_seconds`` pass (then the stream is cut)."""

    text: str = "Let me look into that for you right away."
    chunks_before: int = 2
    max_seconds: float = 30.0


@dataclass(frozen=True)
class Drop:
    """Stream the first ``chunks_before`` words of ``text``, then cut the connection. With zero,
    the connection is closed before any response byte is sent."""

    text: str = "This answer will be cut short by the server."
    chunks_before: int = 0


@dataclass(frozen=True)
class Custom:
    """A reply computed from the parsed request body: ``fn`` returns a script item or a text."""

    fn: Callable[[dict[str, Any]], ScriptItem | str]


ScriptItem = Reply | ToolCallReply | HttpError | Stall | Drop | Custom


def tool_call(
    name: str, arguments: dict[str, Any] | str | None = None, *, call_id: str | None = None
) -> ToolCallReply:
    """A reply with a single tool call."""
    return ToolCallReply(calls=(ToolCall(name=name, arguments=arguments or {}, id=call_id),))


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


# --- deterministic accounting ------------------------------------------------------------------


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """The prompt size the fake reports: 4 per message plus the words of its text parts."""
    total = 0
    for message in messages:
        total += 4 + len(_message_text(message).split())
    return total


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        parts.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(f"{function.get('name', '')} {function.get('arguments', '')}")
    return " ".join(parts)


def split_words(text: str) -> list[str]:
    """Split into word chunks that join back to ``text`` exactly (spaces stay attached)."""
    pieces: list[str] = []
    current = ""
    for char in text:
        if char == " " and current.strip():
            pieces.append(current)
            current = ""
        current += char
    if current:
        pieces.append(current)
    return pieces


def _split_even(text: str, count: int) -> list[str]:
    count = max(1, min(count, len(text))) if text else 1
    size = math.ceil(len(text) / count) if text else 0
    if not size:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def embed_text(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector: hashed bag of words, so texts sharing words are close."""
    vector = [0.0] * dimensions
    for word in text.lower().split():
        digest = hashlib.sha256(word.strip(".,;:!?\"'()").encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] % 2 == 0 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [value / norm for value in vector]


# --- the HTTP side -----------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client disconnected or the server is stopping: abandon this response."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # We join our handler threads ourselves, with a bound, in FakeOpenAIServer.stop().
    block_on_close = False
    # socketserver's default backlog of 5 refuses bursts of concurrent clients.
    request_queue_size = 256

    def __init__(self, fake: FakeOpenAIServer) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self.open_connections: dict[socket.socket, threading.Thread] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds.
        TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-response is normal here; anything else is a bug in the
        # fake and should be loud.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    # A safety net for idle keep-alive connections; stop() also shuts sockets down directly.
    timeout = 30
    # Streamed chunks are small writes: without TCP_NODELAY, Nagle's algorithm and delayed ACKs
    # hold them back ~40 ms, which a real model server does not do.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open_connections[self.connection] = threading.current_thread()
            stopping = self.server.stopping.is_set()
        if stopping:
            self._shutdown_socket()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.open_connections.pop(self.connection, None)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded on the server instead

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    # -- routing

    def do_GET(self) -> None:
        self._record(None)
        path = self.path.split("?", 1)[0]
        if path == "/v1/models":
            self._handle_models()
        else:
            self._send_error(HttpError(404, f"Unknown path {path}", code="not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._record(raw.decode("utf-8", "replace"))
            self._send_error(HttpError(400, "Request body is not JSON."))
            return
        self._record(body)
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        try:
            if path == "/v1/chat/completions":
                self._handle_chat(body)
            elif path == "/v1/embeddings":
                self._handle_embeddings(body)
            else:
                self._send_error(HttpError(404, f"Unknown path {path}", code="not_found"))
        except _ClientGone:
            self.fake._count_abandoned()
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.fake._count_abandoned()
            self.close_connection = True

    def _record(self, body: Any) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.fake._record(RecordedRequest(self.command, self.path, headers, body))

    def _authorized(self) -> bool:
        expected = self.fake.api_key
        if expected is None or self.headers.get("Authorization") == f"Bearer {expected}":
            return True
        self._send_error(
            HttpError(
                401,
                "Incorrect API key provided.",
                error_type="invalid_request_error",
                code="invalid_api_key",
            )
        )
        return False

    # -- endpoints

    def _handle_models(self) -> None:
        if not self._authorized():
            return
        if self.fake.models_status != 200:
            self._send_error(HttpError(self.fake.models_status))
            return
        self._send_json(
            200,
            {
                "object": "list",
                "data": [
                    {"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}
                ],
            },
        )

    def _handle_embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else [str(item) for item in inputs]
        dimensions = int(body.get("dimensions") or self.fake.embedding_dimensions)
        data = []
        for index, text in enumerate(texts):
            vector = embed_text(text, dimensions)
            embedding: list[float] | str = vector
            if body.get("encoding_format") == "base64":
                # The openai client asks for base64 by default: little-endian float32.
                packed = struct.pack(f"<{dimensions}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text.split()) for text in texts)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", self.fake.model),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _handle_chat(self, body: dict[str, Any]) -> None:
        item = self.fake._next_item(body)
        if isinstance(item, HttpError):
            self._send_error(item)
        elif isinstance(item, Drop) and item.chunks_before == 0:
            self._cut_connection()
        elif body.get("stream"):
            self._stream_chat(body, item)
        else:
            self._complete_chat(body, item)

    # -- chat: streaming

    def _stream_chat(self, body: dict[str, Any], item: ScriptItem) -> None:
        completion = _Completion(self.fake, body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # OpenAI opens every stream with a role-only delta, before the first token.
        self._send_event(completion.chunk({"role": "assistant", "content": ""}))

        if isinstance(item, Reply):
            self._stream_reply(completion, item)
        elif isinstance(item, ToolCallReply):
            self._stream_tool_calls(completion, item)
        elif isinstance(item, Stall):
            for piece in split_words(item.text)[: item.chunks_before]:
                self._send_event(completion.content_chunk(piece))
            self._pause(item.max_seconds)
            self._cut_connection()
            return
        elif isinstance(item, Drop):
            for piece in split_words(item.text)[: item.chunks_before]:
                self._send_event(completion.content_chunk(piece))
            self._cut_connection()
            return

        usage_requested = bool((body.get("stream_options") or {}).get("include_usage"))
        if usage_requested and completion.send_usage:
            self._send_event(completion.usage_chunk())
        self._send_raw_event("[DONE]")
        self._write_chunk(b"")  # the terminating zero-length chunk

    def _stream_reply(self, completion: _Completion, reply: Reply) -> None:
        completion.send_usage = reply.send_usage
        for number, piece in enumerate(reply.pieces()):
            self._pause(reply.first_delay if number == 0 else reply.delay)
            self._send_event(completion.content_chunk(piece))
        self._send_event(completion.chunk({}, finish_reason=reply.finish_reason))

    def _stream_tool_calls(self, completion: _Completion, reply: ToolCallReply) -> None:
        first = True
        for piece in split_words(reply.content):
            self._pause(reply.first_delay if first else reply.delay)
            first = False
            self._send_event(completion.content_chunk(piece))
        for index, call in enumerate(reply.calls):
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            head = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            self._pause(reply.first_delay if first else reply.delay)
            first = False
            self._send_event(completion.chunk({"tool_calls": [head]}))
            completion.completion_tokens += 1
            for piece in _split_even(_arguments_json(call), reply.arg_chunks):
                self._pause(reply.delay)
                delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                self._send_event(completion.chunk(delta))
                completion.completion_tokens += 1
        self._send_event(completion.chunk({}, finish_reason="tool_calls"))

    # -- chat: one JSON response

    def _complete_chat(self, body: dict[str, Any], item: ScriptItem) -> None:
        completion = _Completion(self.fake, body)
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish_reason = "stop"
        if isinstance(item, Reply):
            self._pause(item.first_delay)
            message["content"] = item.text
            completion.completion_tokens = len(item.pieces())
            finish_reason = item.finish_reason
        elif isinstance(item, ToolCallReply):
            self._pause(item.first_delay)
            message["content"] = item.content or None
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments_json(call)},
                }
                for call in item.calls
            ]
            completion.completion_tokens = len(item.calls) * (1 + item.arg_chunks)
            finish_reason = "tool_calls"
        elif isinstance(item, Stall):
            self._pause(item.max_seconds)
            self._cut_connection()
            return
        elif isinstance(item, Drop):
            self._cut_connection()
            return
        self._send_json(
            200,
            {
                "id": completion.id,
                "object": "chat.completion",
                "created": completion.created,
                "model": completion.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": completion.usage(),
            },
        )

    # -- low-level writing

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, error: HttpError) -> None:
        headers = {}
        if error.retry_after is not None:
            value = error.retry_after
            headers["Retry-After"] = value if isinstance(value, str) else f"{value:g}"
        payload = {
            "error": {
                "message": error.message,
                "type": error.error_type or _default_error_type(error.status),
                "param": None,
                "code": error.code,
            }
        }
        self._send_json(error.status, payload, headers)

    def _send_event(self, payload: dict[str, Any]) -> None:
        self._send_raw_event(json.dumps(payload))

    def _send_raw_event(self, data: str) -> None:
        self._write_chunk(f"data: {data}\n\n".encode())

    def _write_chunk(self, data: bytes) -> None:
        if self.server.stopping.is_set():
            raise _ClientGone
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def _pause(self, seconds: float) -> None:
        """Wait, but give up (raise ``_ClientGone``) as soon as the client leaves or the server
        stops, so a stalled handler never outlives its test."""
        deadline = time.monotonic() + seconds
        while True:
            if self.server.stopping.is_set():
                raise _ClientGone
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            readable, _, _ = select.select([self.connection], [], [], min(remaining, 0.02))
            if readable and self._client_closed():
                raise _ClientGone
            if readable:
                time.sleep(min(remaining, 0.02))  # a pipelined request: not a disconnect

    def _client_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _cut_connection(self) -> None:
        self.close_connection = True
        self._shutdown_socket()

    def _shutdown_socket(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _default_error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _arguments_json(call: ToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


class _Completion:
    """Ids, model and token counts shared by the chunks of one answer."""

    def __init__(self, fake: FakeOpenAIServer, body: dict[str, Any]) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = fake.reported_model or str(body.get("model") or fake.model)
        self.prompt_tokens = count_prompt_tokens(body.get("messages") or [])
        self.completion_tokens = 0
        self.send_usage = True

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def content_chunk(self, text: str) -> dict[str, Any]:
        self.completion_tokens += 1
        return self.chunk({"content": text})

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def usage_chunk(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": self.usage(),
        }


# --- the server object tests use ---------------------------------------------------------------


class FakeOpenAIServer:
    """A scriptable OpenAI-compatible server in a background thread on 127.0.0.1."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        reported_model: str | None = None,
        api_key: str | None = None,
        embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS,
    ) -> None:
        self.model = model
        # The model name answers carry; None echoes the request's model, as most servers do.
        self.reported_model = reported_model
        # When set, requests without "Authorization: Bearer <api_key>" get a 401.
        self.api_key = api_key
        self.embedding_dimensions = embedding_dimensions
        self.models_status = 200
        self.requests: list[RecordedRequest] = []
        # Responses abandoned because the client disconnected (e.g. after a stall timeout).
        self.abandoned = 0
        self._default: ScriptItem = Reply()
        self._queue: deque[ScriptItem] = deque()
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # stop() waits at most one poll interval
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and end every handler, stalled ones included, within about a second."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        with httpd.lock:
            httpd.stopping.set()
            connections = dict(httpd.open_connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        thread.join(timeout=2)
        for handler_thread in connections.values():
            handler_thread.join(timeout=2)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting

    def script(self, *items: ScriptItem) -> None:
        """Queue responses for the next chat completions, in order."""
        with self._lock:
            self._queue.extend(items)

    def set_default(self, item: ScriptItem) -> None:
        """What chat completions answer once the script is used up."""
        with self._lock:
            self._default = item

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._default = Reply()
            self.requests.clear()
            self.abandoned = 0
            self.models_status = 200
            self.reported_model = None

    @property
    def pending(self) -> int:
        """Scripted responses not used yet."""
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/v1/chat/completions")]

    # -- used by the handler threads

    def _next_item(self, body: dict[str, Any]) -> ScriptItem:
        with self._lock:
            item = self._queue.popleft() if self._queue else self._default
        if isinstance(item, Custom):
            produced = item.fn(body)
            item = Reply(produced) if isinstance(produced, str) else produced
        return item

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _count_abandoned(self) -> None:
        with self._lock:
            self.abandoned += 1


def refusing_socket() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port but not listening: connecting is refused.

    Keep it open while the port is in use so nothing else can take the port; close it after.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_until(condition: Callable[[], bool], within: float = 2.0) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds pass (for server-side effects).

    Blocks the thread: from async tests use ``wait_until_async``, or the client's event loop
    cannot run the very socket close the test is waiting to see."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


async def wait_until_async(condition: Callable[[], bool], within: float = 2.0) -> bool:
    """``wait_until`` for async tests: the event loop keeps running while we poll."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()
