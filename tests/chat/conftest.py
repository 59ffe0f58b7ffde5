from __future__ import annotations

import json
import socket

import pytest


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def use_models(settings, *, primary: str | None, fallback: str | None = None) -> None:
    """Point the chain at the given base URLs with test-sized timeouts."""
    from chat.llm.chain import reset_chain

    settings.LLM_BASE_URL = primary or ""
    settings.LLM_MODEL = "fake-model" if primary else ""
    settings.LLM_API_KEY = "test-key"
    settings.OPENAI_API_KEY = "test-fallback-key" if fallback else ""
    settings.OPENAI_BASE_URL = fallback or "http://127.0.0.1:9/v1"
    settings.OPENAI_MODEL = "fake-fallback-model"
    settings.LLM_CONNECT_TIMEOUT = 1.0
    settings.LLM_FIRST_TOKEN_TIMEOUT = 1.0
    settings.LLM_INTER_TOKEN_TIMEOUT = 0.5
    settings.LLM_MAX_RETRIES = 1
    settings.LLM_RETRY_BASE_DELAY = 0.01
    settings.LLM_RETRY_MAX_DELAY = 0.05
    reset_chain()


@pytest.fixture
def primary(settings, fake_llm):
    """The fake model as the only configured model (offline assistant behind it)."""
    use_models(settings, primary=fake_llm.base_url)
    return fake_llm


def completions(server) -> list:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


async def new_session(api) -> str:
    response = await api.post("/api/session", data="{}", content_type="application/json")
    assert response.status_code == 201
    return response.json()["sessionId"]


async def send(api, session_id: str, message: str, **extra):
    headers = extra.pop("headers", None) or {}
    body = {"message": message, "sessionId": session_id, **extra}
    return await api.post(
        "/api/chat", data=json.dumps(body), content_type="application/json", headers=headers
    )


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        events.append((name, json.loads(data)))
    return events


async def open_chat_socket(session_id: str):
    """A connected WebSocket of the session (its connection_established frame read), on a
    fresh in-memory channel layer."""
    from channels.layers import channel_layers
    from channels.testing import WebsocketCommunicator

    from supportbot.asgi import application

    channel_layers.backends.clear()
    ws = WebsocketCommunicator(
        application,
        f"/ws?sessionId={session_id}",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    connected, _ = await ws.connect()
    assert connected
    assert (await ws.receive_json_from())["type"] == "connection_established"
    return ws
