"""The fake OpenAI-compatible model of ``bench/ws_bench.py``, in its own process.

Prints its port on the first line. The answer depends on the last user message, so one model
process (and one supportbot process) serves every WebSocket benchmark:

- containing ``STREAM_MARKER``: ``STREAM_WORDS`` words, the first after 200 ms, then one every
  20 ms (50 tokens/s), like a hosted model's prefill then decode;
- anything else: a zero-latency answer of 20 words, one word per chunk.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from tests.fakes.openai_server import Custom, FakeOpenAIServer, Reply

STREAM_MARKER = "[stream]"
STREAM_WORDS = 60
FIRST_DELAY = 0.2
TOKEN_DELAY = 0.02

STREAMED = Reply(
    " ".join(f"token{i}" for i in range(STREAM_WORDS)),
    first_delay=FIRST_DELAY,
    delay=TOKEN_DELAY,
)
INSTANT = Reply(" ".join(["word"] * 20))


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content)
    return ""


def choose(body: dict[str, Any]) -> Reply:
    return STREAMED if STREAM_MARKER in last_user_text(body) else INSTANT


def main() -> None:
    server = FakeOpenAIServer().start()
    server.set_default(Custom(choose))
    print(server.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
