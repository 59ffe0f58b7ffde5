"""A fake external ticketing system speaking the protocol of ``tools/ticketing.py`` over a real
socket on 127.0.0.1: tickets in memory, ``Idempotency-Key`` honoured, bearer key checked, and
failures on demand (``fail_next``)."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeTicketing:
    api_key: str = "ticketing-key"
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses for the next requests
    by_key: dict[str, str] = field(default_factory=dict)
    refuse_cancels: bool = False  # cancels answer 503

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self._update_ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # -- control

    def start(self) -> FakeTicketing:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeTicketing:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self.failures.extend(statuses)

    def add_update(self, ticket_id: str, message: str, status: str) -> None:
        """What an agent working in the external system does."""
        with self._lock:
            ticket = self.tickets[ticket_id]
            ticket["status"] = status
            ticket["updates"].append(
                {"id": f"u{next(self._update_ids)}", "message": message, "status": status}
            )

    # -- serving

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            if headers.get("authorization") != f"Bearer {self.api_key}":
                return 401, {"error": "unauthorized"}
            if self.failures:
                return self.failures.pop(0), {"error": "told to fail"}
            parts = [p for p in path.split("/") if p]
            if parts[:2] != ["api", "tickets"]:
                return 404, {"error": "no route"}
            if method == "POST" and len(parts) == 2:
                return self._create(headers, body)
            ticket = self.tickets.get(parts[2]) if len(parts) > 2 else None
            if ticket is None:
                return 404, {"error": "no such ticket"}
            if method == "GET" and len(parts) == 3:
                return 200, ticket
            if method == "POST" and parts[3:] == ["cancel"]:
                if self.refuse_cancels:
                    return 503, {"error": "cancels are down"}
                ticket["status"] = "cancelled"
                return 200, ticket
            return 404, {"error": "no route"}

    def _create(self, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("title") or not body.get("reference"):
            return 400, {"error": "title and reference are required"}
        key = headers.get("idempotency-key", "")
        if key and key in self.by_key:
            return 200, self.tickets[self.by_key[key]]
        ticket_id = f"EXT-{next(self._ids)}"
        self.tickets[ticket_id] = {
            "id": ticket_id,
            "status": "open",
            "title": body["title"],
            "reference": body["reference"],
            "priority": body.get("priority"),
            "updates": [],
        }
        if key:
            self.by_key[key] = ticket_id
        return 201, self.tickets[ticket_id]


def _handler(fake: FakeTicketing) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.answer(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

    return Handler
